/*-------------------------------------------------------------------------
 *
 * launcher.c
 *		The pool's launcher: the only process that registers pool workers.
 *
 * NOTES
 *		SQL backends claim a slot (STARTING), then wake the launcher, which
 *		registers a dynamic worker for it with bgw_notify_pid set to itself,
 *		keeps the BackgroundWorkerHandle in its own memory, and waits for the
 *		start.  The worker attaches to its slot and answers the submitter.
 *		The postmaster signals the launcher when a worker it launched ends,
 *		but not which: so on every wake the launcher reads the pool and its
 *		handles (GetBackgroundWorkerPid) to learn that.
 *
 *		The launcher never exits with code 0 (a static worker exiting 0 is
 *		not restarted): SIGTERM ends it through die(), exit code 1, and the
 *		postmaster starts it again after bgw_pool.launcher_restart_s.
 *
 *		A new launcher reconciles the pool: it ADOPTS running workers (they
 *		keep running and keep their slots; lacking their handles, it stops
 *		them with SIGTERM by pid, which is safe under the lock because a
 *		worker clears its pid before exiting), and fails the requests the old
 *		launcher never registered.  It never registers a worker for a slot
 *		that already has one, so no duplicate can arise.  An adopted slot
 *		whose worker has not attached has neither handle nor pid here: it is
 *		its submitter's, which frees it when it stops waiting (see sql.c).
 *
 *		A worker frees its pool slot in its exit callback, before the
 *		postmaster has reaped it and freed its bgworker slot.  So the
 *		launcher keeps every handle until GetBackgroundWorkerPid says
 *		BGWH_STOPPED (a handle whose pool slot has moved on is "retiring"),
 *		and a registration refused while one of its own workers is still
 *		retiring is retried when the postmaster reports that worker gone:
 *		a slot the status view shows free can be used at once.  Workers
 *		adopted from an earlier launcher have no handle here: their pids are
 *		kept until the processes are gone, and one that has left its pool
 *		slot but still exists (not reaped yet) counts as retiring too; the
 *		postmaster does not signal us about it, so that retry comes at the
 *		next wake, within a second.  Only a refusal with none retiring fails
 *		the request.  Every handle is freed exactly once, when it is stopped.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <signal.h>

#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "pause.h"
#include "pool.h"

PGDLLEXPORT void bgw_pool_launcher_main(Datum main_arg);

/* Handles of the workers this launcher registered, by slot. */
static BackgroundWorkerHandle **handles = NULL;
static uint64 *handle_generation = NULL;

/* Handles whose pool slot moved on, until the postmaster has reaped them. */
static List *retiring = NIL;

/* Workers of ours seen reaped during the current retiring_workers() call. */
static int	reaped_now = 0;

/*
 * Core shows a worker stopped (its slot's pid 0) a moment before it frees the
 * worker's background-worker slot (ReportBackgroundWorkerExit, whose comment
 * admits the window): a registration refused right after we saw one of ours
 * reaped is tried again this many times, a millisecond apart.
 */
#define REAPED_RETRIES 10

/* Pids of adopted workers, by slot (0: none), until the processes are gone. */
static pid_t *adopted_pids = NULL;

/* Keep 'handle' until its worker is reaped, or free it if it already is. */
static void
retire(BackgroundWorkerHandle *handle)
{
	pid_t		pid;
	MemoryContext oldcxt;

	if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
	{
		pfree(handle);
		reaped_now++;
		return;
	}
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	retiring = lappend(retiring, handle);
	MemoryContextSwitchTo(oldcxt);
}

/* Free the retiring handles of reaped workers; how many are still alive. */
static int
prune_retiring(void)
{
	ListCell   *lc;

	foreach(lc, retiring)
	{
		BackgroundWorkerHandle *handle = (BackgroundWorkerHandle *) lfirst(lc);
		pid_t		pid;

		if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
		{
			pfree(handle);
			retiring = foreach_delete_current(retiring, lc);
			reaped_now++;
		}
	}
	return list_length(retiring);
}

/*
 * Retire the handles whose pool slot has moved on since the last reap;
 * how many of our workers the postmaster has not reaped yet, adopted ones
 * that left their slot but still exist included.
 */
static int
retiring_workers(void)
{
	int			adopted = 0;

	reaped_now = 0;
	LWLockAcquire(BgwPool->lock, LW_SHARED);
	for (int i = 0; i < BgwPool->capacity; i++)
	{
		PoolSlot   *slot = &BgwPool->slots[i];

		if (handles[i] != NULL &&
			(slot->state == SLOT_FREE || slot->generation != handle_generation[i]))
		{
			retire(handles[i]);
			handles[i] = NULL;
		}
		if (adopted_pids[i] != 0)
		{
			if (kill(adopted_pids[i], 0) != 0)
				adopted_pids[i] = 0;	/* gone, reaped */
			else if (slot->state == SLOT_FREE || slot->pid != adopted_pids[i])
				adopted++;		/* left the pool, not reaped yet */
		}
	}
	LWLockRelease(BgwPool->lock);
	return prune_retiring() + adopted;
}

static void
launcher_exit_cleanup(int code, Datum arg)
{
	/* a FATAL may come while we hold it: these callbacks run before core releases it */
	LWLockReleaseAll();
	LWLockAcquire(BgwPool->lock, LW_EXCLUSIVE);
	if (BgwPool->launcher_pid == MyProcPid)
	{
		BgwPool->launcher_pid = 0;
		BgwPool->launcher_latch = NULL;
	}
	LWLockRelease(BgwPool->lock);
	ConditionVariableBroadcast(&BgwPool->cv);
}

/*
 * Fail a request that never got a worker: free the slot and tell the
 * submitter.  Caller must hold the pool lock exclusively.
 */
static void
fail_request(PoolSlot *slot, PoolOutcome outcome)
{
	Assert(LWLockHeldByMeInMode(BgwPool->lock, LW_EXCLUSIVE));
	if (slot->outcome == OUTCOME_PENDING)
		slot->outcome = outcome;
	pool_release_slot(slot);
}

/* Take over the pool left by an earlier launcher of this postmaster. */
static void
launcher_reconcile(void)
{
	LWLockAcquire(BgwPool->lock, LW_EXCLUSIVE);
	BgwPool->launcher_starts++;
	BgwPool->launcher_pid = MyProcPid;
	BgwPool->launcher_latch = MyLatch;
	for (int i = 0; i < BgwPool->capacity; i++)
	{
		PoolSlot   *slot = &BgwPool->slots[i];

		if (slot->state == SLOT_FREE)
			continue;
		if (!slot->registered)
		{
			/* claimed, but the old launcher never registered it */
			BgwPool->failed++;
			fail_request(slot, OUTCOME_NOT_STARTED);
			continue;
		}
		/* registered by the old launcher: adopt it */
		slot->adopted = true;
		slot->terminate_sent = false;
		adopted_pids[i] = slot->pid;	/* 0 until it attaches: see reap */
	}
	LWLockRelease(BgwPool->lock);
	ConditionVariableBroadcast(&BgwPool->cv);
}

/*
 * Register the worker of a STARTING slot and wait for it to start.  Returns
 * false when the registration was refused while a worker of ours is still
 * retiring: the slot stays pending, to be retried once that one is reaped.
 */
static bool
launch(int id, uint64 generation)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	BgwHandleStatus status;
	MemoryContext oldcxt;
	PoolSlot   *slot;
	pid_t		pid;
	bool		ok;
	int			unreaped;

	pool_init_worker(&worker, BGWP_WORKER_FLAGS,
					 BGW_NEVER_RESTART, "bgw_pool_worker_main", "bgw_pool worker");
	snprintf(worker.bgw_name, sizeof(worker.bgw_name),
			 "bgw_pool worker slot %d gen " UINT64_FORMAT, id, generation);
	worker.bgw_main_arg = Int32GetDatum(id);
	memcpy(worker.bgw_extra, &generation, sizeof(generation));
	worker.bgw_notify_pid = MyProcPid;

	pool_pause(PAUSE_LAUNCHER_BEFORE_REGISTER);
	/*
	 * Counted before registering: each worker we registered signals us once
	 * reaped (bgw_notify_pid); an adopted one is looked at again at the next
	 * wake, within a second.
	 */
	unreaped = retiring_workers();
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, &handle);
	for (int retry = 0; !ok && reaped_now > 0 && retry < REAPED_RETRIES; retry++)
	{
		(void) WaitLatch(MyLatch, WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1L, BGWP_WAIT_EVENT);
		ok = RegisterDynamicBackgroundWorker(&worker, &handle);
	}
	MemoryContextSwitchTo(oldcxt);

	if (!ok && unreaped > 0)
		return false;			/* retried at the next wake */

	LWLockAcquire(BgwPool->lock, LW_EXCLUSIVE);
	slot = pool_slot_if_current(id, generation);
	if (!ok)
	{
		BgwPool->rejected++;
		if (slot != NULL)
			fail_request(slot, OUTCOME_REFUSED);
		LWLockRelease(BgwPool->lock);
		ConditionVariableBroadcast(&BgwPool->cv);
		ereport(LOG,
				(errmsg("bgw_pool: could not register a worker for slot %d: out of background worker slots",
						id),
				 errhint("You might need to increase \"%s\".", "max_worker_processes")));
		return true;
	}
	BgwPool->launched++;
	if (slot != NULL)
	{
		slot->registered = true;
		slot->handle_status = HANDLE_NOT_YET_STARTED;
	}
	LWLockRelease(BgwPool->lock);

	Assert(handles[id] == NULL);	/* an earlier occupant's was retired */
	handles[id] = handle;
	handle_generation[id] = generation;

	pool_pause(PAUSE_LAUNCHER_STARTUP_WAIT);
	status = WaitForBackgroundWorkerStartup(handle, &pid);
	if (status == BGWH_POSTMASTER_DIED)
		proc_exit(1);

	LWLockAcquire(BgwPool->lock, LW_EXCLUSIVE);
	slot = pool_slot_if_current(id, generation);
	if (slot != NULL)
	{
		if (status == BGWH_STARTED)
			slot->handle_status = HANDLE_STARTED;
		else if (status == BGWH_STOPPED && !slot->attached)
		{
			/* it never ran: the fork failed, or it was stopped before */
			BgwPool->failed++;
			fail_request(slot, OUTCOME_NOT_STARTED);
		}
		/* stopped after attaching: it started and already finished */
	}
	LWLockRelease(BgwPool->lock);
	ConditionVariableBroadcast(&BgwPool->cv);
	return true;
}

/* Register every slot waiting for a worker, until one must wait for a reap. */
static void
launch_pending(void)
{
	for (;;)
	{
		int			id = -1;
		uint64		generation = 0;

		LWLockAcquire(BgwPool->lock, LW_SHARED);
		for (int i = 0; i < BgwPool->capacity; i++)
		{
			PoolSlot   *slot = &BgwPool->slots[i];

			if (slot->state == SLOT_STARTING && !slot->registered &&
				slot->outcome == OUTCOME_PENDING)
			{
				id = i;
				generation = slot->generation;
				break;
			}
		}
		LWLockRelease(BgwPool->lock);
		if (id < 0 || !launch(id, generation))
			return;
	}
}

/*
 * Read every handle: publish its status, retire the handles whose slot has
 * moved on, and free the slot of a worker that died without its cleanup.
 * Then act on termination requests.
 */
static void
reap_and_terminate(void)
{
	LWLockAcquire(BgwPool->lock, LW_EXCLUSIVE);
	for (int i = 0; i < BgwPool->capacity; i++)
	{
		PoolSlot   *slot = &BgwPool->slots[i];
		BackgroundWorkerHandle *handle = handles[i];
		bool		current = handle != NULL && slot->generation == handle_generation[i];

		if (handle != NULL)
		{
			pid_t		pid;
			BgwHandleStatus status = GetBackgroundWorkerPid(handle, &pid);

			if (current && slot->state != SLOT_FREE)
			{
				if (status == BGWH_STOPPED && slot->attached)
				{
					/* gone without freeing its slot: it died without its cleanup */
					slot->has_exit = true;
					slot->last_exit_crash = true;
					slot->last_exit_at = GetCurrentTimestamp();
					BgwPool->crashed++;
					fail_request(slot, OUTCOME_NOT_STARTED);
				}
				else if (status == BGWH_STOPPED)
				{
					/* ended before it attached: it never started its job */
					slot->has_exit = false;
					BgwPool->failed++;
					fail_request(slot, OUTCOME_NOT_STARTED);
				}
				else
					slot->handle_status = (status == BGWH_STARTED) ? HANDLE_STARTED :
						(status == BGWH_NOT_YET_STARTED) ? HANDLE_NOT_YET_STARTED :
						HANDLE_POSTMASTER_DIED;
			}
			if (status == BGWH_STOPPED)
				pfree(handle);
			else if (!current || slot->state == SLOT_FREE)
				retire(handle);
			if (status == BGWH_STOPPED || !current || slot->state == SLOT_FREE)
			{
				handles[i] = NULL;
				handle = NULL;
			}
		}

		if (slot->state != SLOT_FREE && slot->adopted && slot->pid != 0)
			adopted_pids[i] = slot->pid;

		if (slot->state != SLOT_FREE && slot->terminate_requested && !slot->terminate_sent)
		{
			if (handle != NULL)
			{
				TerminateBackgroundWorker(handle);
				slot->terminate_sent = true;
			}
			else if (slot->adopted && slot->pid != 0)
			{
				/* no handle: the pid is current while its slot holds it */
				(void) kill(slot->pid, SIGTERM);
				slot->terminate_sent = true;
			}
		}
	}
	LWLockRelease(BgwPool->lock);
	ConditionVariableBroadcast(&BgwPool->cv);
	(void) prune_retiring();
}

void
bgw_pool_launcher_main(Datum main_arg)
{
	before_shmem_exit(launcher_exit_cleanup, (Datum) 0);

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	/* no database: shared catalogs only, but visible in pg_stat_activity */
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	handles = MemoryContextAllocZero(TopMemoryContext,
									 sizeof(BackgroundWorkerHandle *) * BgwPool->capacity);
	handle_generation = MemoryContextAllocZero(TopMemoryContext,
											   sizeof(uint64) * BgwPool->capacity);
	adopted_pids = MemoryContextAllocZero(TopMemoryContext, sizeof(pid_t) * BgwPool->capacity);

	if (BgwPool->capacity + 1 > max_worker_processes)
		ereport(WARNING,
				(errmsg("bgw_pool: %d workers and the launcher exceed max_worker_processes (%d)",
						BgwPool->capacity, max_worker_processes),
				 errhint("Raise \"%s\" or lower \"%s\".", "max_worker_processes",
						 "bgw_pool.max_workers")));

	launcher_reconcile();
	ereport(LOG,
			(errmsg("bgw_pool launcher started with %d slots", BgwPool->capacity)));

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		launch_pending();
		pool_pause(PAUSE_LAUNCHER_BEFORE_REAP);
		reap_and_terminate();

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, BGWP_WAIT_EVENT);
		ResetLatch(MyLatch);
	}
}
