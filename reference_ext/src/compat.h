/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Every difference between the PostgreSQL majors bgw_pool supports
 *		(13, 15, 17, 18).  No other file tests PG_VERSION_NUM.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BGW_POOL_COMPAT_H
#define BGW_POOL_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 130000
#error "bgw_pool requires PostgreSQL 13 or later"
#endif

/* 15+: shared memory and LWLocks are requested from shmem_request_hook. */
#if PG_VERSION_NUM >= 150000
#define BGWP_HAVE_SHMEM_REQUEST_HOOK 1
#endif

/* 15+: MarkGUCPrefixReserved replaces EmitWarningsOnPlaceholders. */
#if PG_VERSION_NUM >= 150000
#define BGWP_RESERVE_GUC_PREFIX(prefix) MarkGUCPrefixReserved(prefix)
#else
#define BGWP_RESERVE_GUC_PREFIX(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/* 18: PG_MODULE_MAGIC_EXT carries the module's name and version. */
#if PG_VERSION_NUM >= 180000
#define BGWP_MODULE_MAGIC PG_MODULE_MAGIC_EXT(.name = "bgw_pool", .version = "1.0")
#else
#define BGWP_MODULE_MAGIC PG_MODULE_MAGIC
#endif

/* 16+: object_aclcheck replaces the per-kind pg_*_aclcheck functions. */
#include "utils/acl.h"
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_database.h"
#define BGWP_DATABASE_ACLCHECK(dboid, roleid, mode) \
	object_aclcheck(DatabaseRelationId, (dboid), (roleid), (mode))
#else
#define BGWP_DATABASE_ACLCHECK(dboid, roleid, mode) \
	pg_database_aclcheck((dboid), (roleid), (mode))
#endif

/* pg_stat_activity's wait event for the pool's own waits. */
#include "pgstat.h"
#define BGWP_WAIT_EVENT PG_WAIT_EXTENSION

#endif							/* BGW_POOL_COMPAT_H */
