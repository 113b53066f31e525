/*-------------------------------------------------------------------------
 *
 * jobs.c
 *		What a pool worker does, by job kind.
 *
 * NOTES
 *		sleep {"ms"}: waits, interruptibly, then exits 0.
 *		sql {"query"}: runs a query string (one statement or several)
 *			through SPI in one transaction of its own, as the job's role and
 *			unable to change role: the identity is switched only inside that
 *			transaction, as core does.  The role's statement_timeout bounds
 *			it, as it would bound the same query sent by a client.
 *		exit {"code"}: proc_exit(code); codes other than 0 and 1 make the
 *			postmaster treat the exit as a crash and restart the cluster.
 *		error {"message"}: ereport(ERROR), which ends a worker as FATAL (1).
 *		fatal {"message"}: ereport(FATAL), exit code 1.
 *		crash: abort(); the postmaster crash-restarts the cluster.
 *		ignore_sigterm {"ms"}: ignores SIGTERM until ms after it attached
 *			(default 10 s, at most 30 s: see sql.c), its wait for the
 *			submitting transaction included; it still exits when the
 *			postmaster dies.
 *		exit_at_once: exits 0 right after attaching, without connecting, so
 *			it is usually gone before the launcher's startup wait returns.
 *		fail_to_start: exits 1 before attaching, like a worker whose start
 *			failed after its registration succeeded: submit must fail and the
 *			slot must be freed.
 *		The worker is connected to its database as the job's role (but for
 *		exit_at_once) when a job starts, and its submitter has committed.
 *		Every wait is WaitLatch with WL_EXIT_ON_PM_DEATH.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <signal.h>
#include <stdlib.h>

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "jobs.h"

/* Wait 'ms' milliseconds, waking for interrupts and configuration reloads. */
static void
job_wait(int64 ms)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	for (;;)
	{
		long		remaining;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), end);
		if (remaining <= 0)
			break;
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 remaining, BGWP_WAIT_EVENT);
		ResetLatch(MyLatch);
	}
}

static void
job_sql(const char *query, Oid userid)
{
	Oid			save_userid;
	int			save_sec_context;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/* SET ROLE and SET SESSION AUTHORIZATION are refused under this flag */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(userid, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, query);
	/* a client's statement is bounded by postgres.c; a worker's by us */
	if (StatementTimeout > 0)
		enable_timeout_after(STATEMENT_TIMEOUT, StatementTimeout);
	if (SPI_execute(query, false, 0) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("bgw_pool sql job failed: %s", query)));
	if (StatementTimeout > 0)
		disable_timeout(STATEMENT_TIMEOUT, false);
	SPI_finish();
	PopActiveSnapshot();
	SetUserIdAndSecContext(save_userid, save_sec_context);
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
}

void
pool_run_job(PoolJob *job)
{
	switch (job->kind)
	{
		case JOB_SLEEP:
			job_wait(job->ms);
			break;
		case JOB_SQL:
			job_sql(job->text, job->userid);
			break;
		case JOB_EXIT:
			proc_exit(job->code);
			break;
		case JOB_ERROR:
			ereport(ERROR,
					(errcode(ERRCODE_RAISE_EXCEPTION),
					 errmsg("%s", job->text)));
			break;
		case JOB_FATAL:
			ereport(FATAL,
					(errcode(ERRCODE_RAISE_EXCEPTION),
					 errmsg("%s", job->text)));
			break;
		case JOB_CRASH:
			abort();
			break;
		case JOB_IGNORE_SIGTERM:
			/* SIGTERM is ignored since before signals were unblocked */
			job_wait(Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), job->until), 0));
			break;
		case JOB_EXIT_AT_ONCE:
			proc_exit(0);
			break;
		case JOB_FAIL_TO_START:
			break;				/* exits in worker main, before attaching */
	}
}
