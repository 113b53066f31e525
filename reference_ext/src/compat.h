/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Every difference between the PostgreSQL majors bgw_pool supports
 *		(13, 15, 17, 18, 19).  No other file tests PG_VERSION_NUM.
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

/* 16+: object_aclcheck and object_ownercheck replace the per-kind functions. */
#include "utils/acl.h"
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_database.h"
#define BGWP_DATABASE_ACLCHECK(dboid, roleid, mode) \
	object_aclcheck(DatabaseRelationId, (dboid), (roleid), (mode))
#define BGWP_DATABASE_OWNERCHECK(dboid, roleid) \
	object_ownercheck(DatabaseRelationId, (dboid), (roleid))
#else
#define BGWP_DATABASE_ACLCHECK(dboid, roleid, mode) \
	pg_database_aclcheck((dboid), (roleid), (mode))
#define BGWP_DATABASE_OWNERCHECK(dboid, roleid) \
	pg_database_ownercheck((dboid), (roleid))
#endif

/*
 * 19: signal handlers also get the signal's info (SIGNAL_ARGS changed), so
 * the C library's SIG_IGN no longer has pqsignal's type; PG_SIG_IGN does.
 */
#if PG_VERSION_NUM >= 190000
#define BGWP_SIG_IGN PG_SIG_IGN
#else
#define BGWP_SIG_IGN SIG_IGN
#endif

/*
 * A pool worker's flags, the same on every major.  19's
 * BGWORKER_INTERRUPTIBLE is not declared: core would then terminate a job
 * for anyone who may drop, rename, move or copy its database, a
 * superuser's job for a database owner too, whom core's own rule for
 * terminating a process (TerminateOtherDBBackends) would refuse.  The
 * pool's utility hook stops its jobs itself, by that rule (dbcommands.c).
 */
#define BGWP_WORKER_FLAGS \
	(BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION)

/*
 * 17+: a worker may connect as a role that cannot log in
 * (BGWORKER_BYPASS_ROLELOGINCHECK).  Before 17 core refuses such a role to
 * a background worker as to a client, so submit refuses it first (sql.c).
 */
#if PG_VERSION_NUM >= 170000
#define BGWP_CONNECT_FLAGS BGWORKER_BYPASS_ROLELOGINCHECK
#define BGWP_CONNECTS_AS_NOLOGIN 1
#else
#define BGWP_CONNECT_FLAGS 0
#endif

/* 14+: the predefined role pg_signal_backend has its own OID symbol. */
#if PG_VERSION_NUM >= 140000
#define BGWP_ROLE_SIGNAL_BACKEND ROLE_PG_SIGNAL_BACKEND
#else
#define BGWP_ROLE_SIGNAL_BACKEND DEFAULT_ROLE_SIGNAL_BACKENDID
#endif

/* 16+: object_aclcheck for tablespaces too. */
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_tablespace.h"
#define BGWP_TABLESPACE_ACLCHECK(spcoid, roleid, mode) \
	object_aclcheck(TableSpaceRelationId, (spcoid), (roleid), (mode))
#else
#define BGWP_TABLESPACE_ACLCHECK(spcoid, roleid, mode) \
	pg_tablespace_aclcheck((spcoid), (roleid), (mode))
#endif

/* 14+: ProcessUtility_hook takes readOnlyTree. */
#if PG_VERSION_NUM >= 140000
#define BGWP_UTILITY_PARAMS \
	PlannedStmt *pstmt, const char *queryString, bool readOnlyTree, \
	ProcessUtilityContext context, ParamListInfo params, \
	QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc
#define BGWP_UTILITY_ARGS \
	pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc
#else
#define BGWP_UTILITY_PARAMS \
	PlannedStmt *pstmt, const char *queryString, \
	ProcessUtilityContext context, ParamListInfo params, \
	QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc
#define BGWP_UTILITY_ARGS \
	pstmt, queryString, context, params, queryEnv, dest, qc
#endif

/* pg_stat_activity's wait event for the pool's own waits. */
#include "pgstat.h"
#define BGWP_WAIT_EVENT PG_WAIT_EXTENSION

#endif							/* BGW_POOL_COMPAT_H */
