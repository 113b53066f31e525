/*-------------------------------------------------------------------------
 *
 * worker.c
 *		A pool worker: attach to its slot, run its job, free the slot on exit.
 *
 * NOTES
 *		The exit cleanup is registered first thing, while signals are still
 *		blocked (a background worker starts with them blocked), so there is
 *		no window in which a SIGTERM could end the worker with its slot
 *		taken.  The cleanup checks the generation: a worker never frees a
 *		slot that has moved on to another occupant.
 *
 *		The worker reads its job, sets its SIGTERM handling before unblocking
 *		signals, connects to its database as the role the job runs as (so
 *		that role's own settings apply, and never those of a session user
 *		it was submitted under), and only then attaches: a submit returns a
 *		worker that is connected (visible in pg_stat_activity).  A stop asked
 *		before the worker attached is honoured at attach: it exits without
 *		running its job.
 *
 *		Submit is transactional: once attached, the worker waits for the
 *		submitting (sub)transaction to end, and runs its job only if it
 *		committed.  A worker whose submitter rolled back exits, having done
 *		nothing.  A worker that dies before attaching (its database
 *		was dropped, it was terminated while starting) leaves the slot to the
 *		launcher, which sees it stopped without attaching and fails the
 *		request, or to its submitter, which frees it when it stops waiting.
 *		A worker whose submitter has given up finds its generation gone when
 *		it tries to attach, and exits without running its job.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <signal.h>

#include "access/transam.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/procarray.h"
#include "tcop/tcopprot.h"
#include "utils/timestamp.h"

#include "jobs.h"
#include "pause.h"
#include "pool.h"

PGDLLEXPORT void bgw_pool_worker_main(Datum main_arg);
PGDLLEXPORT void bgw_pool_noop_main(Datum main_arg);

static PoolSlot *MySlot = NULL;
static uint64 MyGeneration = 0;

/*
 * before_shmem_exit callback: move the slot back to the free list and record
 * how the worker ended.
 */
static void
worker_exit_cleanup(int code, Datum arg)
{
	PoolSlot   *slot;
	Latch	   *launcher_latch;

	if (MySlot == NULL)
		return;

	/* a FATAL may come while we hold it: these callbacks run before core releases it */
	LWLockReleaseAll();
	LWLockAcquire(BgwPool->lock, LW_EXCLUSIVE);
	slot = pool_slot_if_current(MySlot->id, MyGeneration);
	if (slot != NULL && slot->pid == MyProcPid)
	{
		pool_release_slot(slot);
		slot->has_exit = true;
		slot->last_exit_crash = false;
		slot->last_exit_code = code;
		slot->last_exit_at = GetCurrentTimestamp();
		BgwPool->exited++;
	}
	launcher_latch = BgwPool->launcher_latch;
	LWLockRelease(BgwPool->lock);
	MySlot = NULL;

	ConditionVariableBroadcast(&BgwPool->cv);
	if (launcher_latch != NULL)
		SetLatch(launcher_latch);
}

/*
 * Copy the job of our slot, if the slot still belongs to our generation.
 */
static bool
worker_read_job(int id, uint64 generation, PoolJob *job)
{
	PoolSlot   *slot;

	LWLockAcquire(BgwPool->lock, LW_SHARED);
	slot = pool_slot_if_current(id, generation);
	if (slot != NULL)
	{
		job->kind = slot->job;
		job->dboid = slot->dboid;
		job->userid = slot->userid;
		job->submit_xid = slot->submit_xid;
		job->ms = slot->arg_ms;
		job->code = slot->arg_code;
		strlcpy(job->text, slot->arg_text, sizeof(job->text));
	}
	LWLockRelease(BgwPool->lock);
	return slot != NULL;
}

/*
 * Attach to the slot given by the launcher, if it still belongs to our
 * generation, and tell the submitter the worker runs.  Returns false when
 * the slot moved on (we then exit without touching it).  *stop_asked says
 * whether terminate() asked for a stop before we attached.
 */
static bool
worker_attach(int id, uint64 generation, bool *stop_asked)
{
	PoolSlot   *slot;

	LWLockAcquire(BgwPool->lock, LW_EXCLUSIVE);
	slot = pool_slot_if_current(id, generation);
	if (slot == NULL || slot->attached)
	{
		LWLockRelease(BgwPool->lock);
		return false;
	}
	slot->pid = MyProcPid;
	slot->attached = true;
	slot->handle_status = HANDLE_STARTED;	/* attaching proves it */
	slot->started_at = GetCurrentTimestamp();
	*stop_asked = slot->terminate_requested;
	slot->state = *stop_asked ? SLOT_STOPPING : SLOT_RUNNING;
	if (slot->outcome == OUTCOME_PENDING)
	{
		slot->outcome = OUTCOME_RUNNING;
		slot->outcome_pid = MyProcPid;
	}
	MySlot = slot;
	MyGeneration = generation;
	LWLockRelease(BgwPool->lock);

	ConditionVariableBroadcast(&BgwPool->cv);
	return true;
}

/*
 * Wait until the (sub)transaction that submitted the job has ended; true if
 * it committed.  XactLockTableWait follows a subtransaction to its parent,
 * and returns at once for a submitter that has already ended (also one
 * that died: it then neither committed nor aborted, and counts as aborted).
 * A worker that ignores SIGTERM waits only until 'deadline' (it is not
 * interruptible then): past it, the job counts as not committed.
 */
static bool
worker_submitter_committed(TransactionId xid, TimestampTz deadline)
{
	bool		committed = false;

	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, "waiting for the submitting transaction to end");
	if (deadline == 0)
		XactLockTableWait(xid, NULL, NULL, XLTW_None);
	else
	{
		while (TransactionIdIsInProgress(xid) && GetCurrentTimestamp() < deadline)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 10L, BGWP_WAIT_EVENT);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	if (!TransactionIdIsInProgress(xid))
		committed = TransactionIdDidCommit(xid);
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return committed;
}

void
bgw_pool_worker_main(Datum main_arg)
{
	int			id = DatumGetInt32(main_arg);
	uint64		generation;
	PoolJob		job;
	bool		stop_asked = false;

	memcpy(&generation, MyBgworkerEntry->bgw_extra, sizeof(generation));

	pool_pause(PAUSE_WORKER_BEFORE_EXIT_HOOK);
	before_shmem_exit(worker_exit_cleanup, (Datum) 0);

	if (!worker_read_job(id, generation, &job))
		proc_exit(1);
	if (job.kind == JOB_FAIL_TO_START)
		proc_exit(1);			/* as if it never ran: it does not attach */

	pqsignal(SIGTERM, job.kind == JOB_IGNORE_SIGTERM ? BGWP_SIG_IGN : die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	pool_pause(PAUSE_WORKER_BEFORE_CONNECT);

	/*
	 * Connect as the role the job runs as: its own settings apply, as at a
	 * login of it.  The job's transaction also forbids changing role
	 * (jobs.c), so a job never has more rights than its submitter had.
	 */
	if (job.kind != JOB_EXIT_AT_ONCE)
		BackgroundWorkerInitializeConnectionByOid(job.dboid, job.userid, BGWP_CONNECT_FLAGS);

	pool_pause(PAUSE_WORKER_BEFORE_ATTACH);
	if (!worker_attach(id, generation, &stop_asked))
		proc_exit(1);
	if (stop_asked)
		ereport(FATAL,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("terminating bgw_pool worker for slot %d: stopped before it started its job", id)));

	/*
	 * exit_at_once is not connected: its job is to exit, at once.
	 * ignore_sigterm's bound counts from here, its wait included.
	 */
	if (job.kind == JOB_IGNORE_SIGTERM)
	{
		job.until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), job.ms);
		if (!worker_submitter_committed(job.submit_xid, job.until))
			proc_exit(0);
	}
	else if (job.kind != JOB_EXIT_AT_ONCE && !worker_submitter_committed(job.submit_xid, 0))
	{
		ereport(DEBUG1,
				(errmsg("bgw_pool worker for slot %d: the submitting transaction did not commit", id)));
		proc_exit(0);
	}

	pool_run_job(&job);
	proc_exit(0);
}

/*
 * The measurement floor of bgw_pool.direct_launch_us(): a worker that
 * exits as soon as it starts.
 */
void
bgw_pool_noop_main(Datum main_arg)
{
	proc_exit(0);
}
