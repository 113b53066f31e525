/*-------------------------------------------------------------------------
 *
 * pool.c
 *		Shared memory of the pool: the slots, the free and running lists.
 *
 * NOTES
 *		Functions that change the lists state their lock contract and assert
 *		it.  Slots are claimed from the head of the free list and returned to
 *		its tail, so a freed slot is the last to be reused.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <signal.h>

#include "catalog/pg_authid.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/acl.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "pool.h"

PoolShared *BgwPool = NULL;

Size
pool_shmem_size(void)
{
	return add_size(offsetof(PoolShared, slots),
					mul_size(bgw_pool_max_workers, sizeof(PoolSlot)));
}

/*
 * Create or attach to the pool.  Called from shmem_startup_hook, also after
 * a crash-restart, when the postmaster has created shared memory anew: the
 * pool is then fresh, and nothing of the old one is trusted.
 */
void
pool_shmem_init(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	BgwPool = ShmemInitStruct("bgw_pool", pool_shmem_size(), &found);
	if (!found)
	{
		/*
		 * Generations start from the clock, not from zero: a handle taken
		 * before a crash-restart must not match a worker started after it.
		 * Each claim takes far longer than the microsecond a generation
		 * stands for, so later pools start above earlier ones, as long as
		 * the system clock is not set back across a crash-restart.
		 */
		uint64		base = (uint64) GetCurrentTimestamp();

		memset(BgwPool, 0, pool_shmem_size());
		BgwPool->lock = &(GetNamedLWLockTranche("bgw_pool"))->lock;
		BgwPool->capacity = bgw_pool_max_workers;
		ConditionVariableInit(&BgwPool->cv);
		dlist_init(&BgwPool->free_list);
		dlist_init(&BgwPool->running_list);
		for (int i = 0; i < BgwPool->capacity; i++)
		{
			PoolSlot   *slot = &BgwPool->slots[i];

			slot->id = i;
			slot->state = SLOT_FREE;
			slot->generation = base;
			dlist_push_tail(&BgwPool->free_list, &slot->node);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Is a slot on the free list still held by a submitter that has not read
 * its outcome?  Such a slot is not reused, so that the submitter learns the
 * outcome of its own request and not of a later one.  A submitter that died
 * without reading it no longer holds the slot.
 */
static bool
slot_held_by_submitter(PoolSlot *slot)
{
	if (!slot->awaiting_ack)
		return false;
	if (slot->submitter_pid == MyProcPid)
		return false;
	return kill(slot->submitter_pid, 0) == 0;
}

/*
 * Take a free slot, move it to the running list as STARTING with a new
 * generation, and return it; NULL when the pool is full.
 *
 * Caller must hold the pool lock exclusively.
 */
PoolSlot *
pool_claim_slot(void)
{
	dlist_mutable_iter iter;

	Assert(LWLockHeldByMeInMode(BgwPool->lock, LW_EXCLUSIVE));

	dlist_foreach_modify(iter, &BgwPool->free_list)
	{
		PoolSlot   *slot = dlist_container(PoolSlot, node, iter.cur);

		Assert(slot->state == SLOT_FREE);
		if (slot_held_by_submitter(slot))
			continue;
		dlist_delete(&slot->node);
		dlist_push_tail(&BgwPool->running_list, &slot->node);

		slot->state = SLOT_STARTING;
		slot->generation++;
		slot->dboid = InvalidOid;
		slot->userid = InvalidOid;
		slot->submit_xid = InvalidTransactionId;
		slot->pid = 0;
		slot->started_at = 0;
		slot->registered = false;
		slot->attached = false;
		slot->adopted = false;
		slot->terminate_requested = false;
		slot->terminate_sent = false;
		slot->handle_status = HANDLE_NONE;
		slot->outcome = OUTCOME_PENDING;
		slot->outcome_pid = 0;
		slot->awaiting_ack = true;
		slot->submitter_pid = MyProcPid;
		return slot;
	}
	return NULL;
}

/*
 * Return a slot to the tail of the free list.  Its generation, outcome and
 * last exit stay, for the submitter and for the status view.
 *
 * Caller must hold the pool lock exclusively.
 */
void
pool_release_slot(PoolSlot *slot)
{
	Assert(LWLockHeldByMeInMode(BgwPool->lock, LW_EXCLUSIVE));
	Assert(slot->state != SLOT_FREE);

	dlist_delete(&slot->node);
	dlist_push_tail(&BgwPool->free_list, &slot->node);
	slot->state = SLOT_FREE;
	slot->pid = 0;
	slot->handle_status = HANDLE_NONE;
	slot->adopted = false;
	slot->terminate_requested = false;
	slot->terminate_sent = false;
}

/*
 * Ask the launcher to stop a slot's worker: now if it has attached, or as
 * soon as it has been registered.  Caller must hold the pool lock
 * exclusively, and wakes the launcher once it has released it.
 */
void
pool_request_stop(PoolSlot *slot)
{
	Assert(LWLockHeldByMeInMode(BgwPool->lock, LW_EXCLUSIVE));
	Assert(slot->state != SLOT_FREE);

	slot->terminate_requested = true;
	if (slot->attached)
		slot->state = SLOT_STOPPING;
}

/*
 * The slot 'id' if it still belongs to 'generation' and is not free.
 *
 * Caller must hold the pool lock.
 */
PoolSlot *
pool_slot_if_current(int id, uint64 generation)
{
	PoolSlot   *slot;

	Assert(LWLockHeldByMe(BgwPool->lock));
	if (id < 0 || id >= BgwPool->capacity)
		return NULL;
	slot = &BgwPool->slots[id];
	if (slot->generation != generation || slot->state == SLOT_FREE)
		return NULL;
	return slot;
}

/*
 * Whether the current user may stop a job of 'role': core's rule for
 * terminating a process (pg_terminate_backend, TerminateOtherDBBackends).
 * A superuser's job only for a superuser; any other for a role with the
 * privileges of the job's role or of pg_signal_backend.  Reads
 * pg_auth_members: never call it under the pool lock.
 */
bool
pool_may_stop(Oid role)
{
	Assert(!LWLockHeldByMe(BgwPool->lock));
	if (superuser_arg(role))
		return superuser();
	return has_privs_of_role(GetUserId(), role) ||
		has_privs_of_role(GetUserId(), BGWP_ROLE_SIGNAL_BACKEND);
}

/* Wake the launcher, if one runs.  Takes the lock in shared mode. */
void
pool_wake_launcher(void)
{
	Latch	   *latch;

	LWLockAcquire(BgwPool->lock, LW_SHARED);
	latch = BgwPool->launcher_latch;
	LWLockRelease(BgwPool->lock);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * Fill in a BackgroundWorker of this library: 'function' is its entry point,
 * 'type' its bgw_type and (until the caller changes it) its bgw_name.
 */
void
pool_init_worker(BackgroundWorker *worker, int flags, int restart_time,
				 const char *function, const char *type)
{
	memset(worker, 0, sizeof(BackgroundWorker));
	worker->bgw_flags = flags;
	worker->bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker->bgw_restart_time = restart_time;
	snprintf(worker->bgw_library_name, sizeof(worker->bgw_library_name), "bgw_pool");
	snprintf(worker->bgw_function_name, sizeof(worker->bgw_function_name), "%s", function);
	snprintf(worker->bgw_name, sizeof(worker->bgw_name), "%s", type);
	snprintf(worker->bgw_type, sizeof(worker->bgw_type), "%s", type);
}

/* Set up a materialized result set; returns its tuple descriptor. */
TupleDesc
pool_begin_materialize(FunctionCallInfo fcinfo, Tuplestorestate **store)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TupleDesc	tupdesc;
	MemoryContext oldcxt;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	oldcxt = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	tupdesc = CreateTupleDescCopy(tupdesc);
	*store = tuplestore_begin_heap(true, false, work_mem);
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = *store;
	rsinfo->setDesc = tupdesc;
	MemoryContextSwitchTo(oldcxt);
	return tupdesc;
}

static const char *const state_names[] = {"free", "starting", "running", "stopping"};
static const char *const job_names[] = {"sleep", "sql", "exit", "error", "fatal", "crash",
"ignore_sigterm", "exit_at_once", "fail_to_start"};
static const char *const handle_names[] = {NULL, "not_yet_started", "started", "stopped",
"postmaster_died"};

const char *
pool_state_name(PoolSlotState state)
{
	return state_names[state];
}

const char *
pool_job_name(PoolJobKind job)
{
	return job_names[job];
}

bool
pool_job_from_name(const char *name, PoolJobKind *job)
{
	for (int i = 0; i < lengthof(job_names); i++)
	{
		if (strcmp(name, job_names[i]) == 0)
		{
			*job = (PoolJobKind) i;
			return true;
		}
	}
	return false;
}

const char *
pool_handle_status_name(PoolHandleStatus status)
{
	return handle_names[status];
}
