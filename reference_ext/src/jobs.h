/*-------------------------------------------------------------------------
 *
 * jobs.h
 *		The job kinds a pool worker can run.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BGW_POOL_JOBS_H
#define BGW_POOL_JOBS_H

#include "pool.h"

/* A worker's private copy of its slot's job, taken at attach. */
typedef struct PoolJob
{
	PoolJobKind kind;
	Oid			dboid;
	Oid			userid;
	TransactionId submit_xid;
	int64		ms;
	TimestampTz until;			/* ignore_sigterm: when it ends */
	int			code;
	char		text[BGW_POOL_TEXT_LEN];
} PoolJob;

extern void pool_run_job(PoolJob *job);

#endif							/* BGW_POOL_JOBS_H */
