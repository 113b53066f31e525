/*-------------------------------------------------------------------------
 *
 * pool.h
 *		The pool of worker slots in shared memory.
 *
 * NOTES
 *		Every field of PoolShared and PoolSlot is read and written only while
 *		holding pool->lock (shared to read, exclusive to write), except
 *		'lock', 'capacity' and 'cv', which are fixed at initialisation.
 *		A slot is on exactly one of free_list and running_list: free slots on
 *		the first, every other state on the second.
 *
 *		A handle is (slot, generation).  The generation is incremented each
 *		time a submitter claims the slot and never goes backwards, not even
 *		across a crash-restart (it starts from the clock), so a stale handle
 *		can never act on a later occupant of its slot.
 *
 *		No catalog is read and no heavyweight lock is taken while pool->lock
 *		is held: a caller copies what it needs, releases the lock, checks
 *		privileges, and retakes the lock to act on the same generation.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BGW_POOL_POOL_H
#define BGW_POOL_POOL_H

#include "compat.h"

#include "access/transam.h"
#include "fmgr.h"
#include "lib/ilist.h"
#include "postmaster/bgworker.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#define BGW_POOL_TEXT_LEN 1024

typedef enum PoolSlotState
{
	SLOT_FREE = 0,				/* on the free list */
	SLOT_STARTING,				/* claimed; worker not attached yet */
	SLOT_RUNNING,				/* worker attached: runs its job once the
								 * submitting transaction has committed */
	SLOT_STOPPING				/* termination asked, worker still alive */
} PoolSlotState;

typedef enum PoolJobKind
{
	JOB_SLEEP = 0,
	JOB_SQL,
	JOB_EXIT,
	JOB_ERROR,
	JOB_FATAL,
	JOB_CRASH,
	JOB_IGNORE_SIGTERM,
	JOB_EXIT_AT_ONCE,
	JOB_FAIL_TO_START
} PoolJobKind;

/* The launcher's last reading of a slot's BackgroundWorkerHandle. */
typedef enum PoolHandleStatus
{
	HANDLE_NONE = 0,			/* free slot, or not registered yet */
	HANDLE_NOT_YET_STARTED,
	HANDLE_STARTED,
	HANDLE_STOPPED,
	HANDLE_POSTMASTER_DIED
} PoolHandleStatus;

/* What a submitter learns about its own request. */
typedef enum PoolOutcome
{
	OUTCOME_PENDING = 0,
	OUTCOME_RUNNING,			/* the worker attached: success */
	OUTCOME_REFUSED,			/* RegisterDynamicBackgroundWorker refused */
	OUTCOME_NOT_STARTED,		/* registered, but it never ran */
	OUTCOME_ABANDONED			/* the submitter gave up waiting */
} PoolOutcome;

typedef struct PoolSlot
{
	int			id;				/* index in PoolShared.slots, fixed */
	PoolSlotState state;		/* see PoolSlotState */
	uint64		generation;		/* incremented at every claim */
	Oid			dboid;			/* database the worker connects to */
	Oid			userid;			/* the submitter's current user: the worker
								 * connects as it and runs the job as it */
	TransactionId submit_xid;	/* the (sub)transaction that submitted: the
								 * job runs only if it commits */
	pid_t		pid;			/* worker pid once attached, else 0 */
	PoolJobKind job;			/* what the worker runs */
	int64		arg_ms;			/* sleep, ignore_sigterm */
	int			arg_code;		/* exit */
	char		arg_text[BGW_POOL_TEXT_LEN];	/* sql query, error message */
	TimestampTz started_at;		/* when the worker attached */
	bool		registered;		/* the launcher registered the worker */
	bool		attached;		/* the worker attached to this generation */
	bool		adopted;		/* running under a launcher with no handle */
	bool		terminate_requested;	/* terminate() asked for a stop */
	bool		terminate_sent; /* the launcher acted on that */
	PoolHandleStatus handle_status; /* published by the launcher */
	PoolOutcome outcome;		/* answer to the submitter */
	pid_t		outcome_pid;	/* the worker pid reported with RUNNING */
	bool		awaiting_ack;	/* submitter has not read the outcome yet */
	pid_t		submitter_pid;	/* who claimed the slot; until it stops
								 * waiting, an unattached slot is its own */
	bool		has_exit;		/* last_exit_* are set */
	bool		last_exit_crash;	/* last worker died without its cleanup */
	int			last_exit_code; /* proc_exit code of the last worker */
	TimestampTz last_exit_at;	/* when it exited */
	dlist_node	node;			/* link in free_list or running_list */
} PoolSlot;

typedef struct PoolShared
{
	LWLock	   *lock;			/* protects everything below */
	int			capacity;		/* bgw_pool.max_workers at start */
	ConditionVariable cv;		/* broadcast whenever an outcome changes */
	pid_t		launcher_pid;	/* 0 when no launcher runs */
	Latch	   *launcher_latch; /* set to wake the launcher */
	uint64		launcher_starts;	/* launcher incarnations since startup */
	dlist_head	free_list;		/* FIFO: freed at tail, claimed at head */
	dlist_head	running_list;	/* every slot that is not free */
	uint64		launched;		/* workers registered */
	uint64		exited;			/* workers that ran their exit cleanup */
	uint64		failed;			/* workers that never ran */
	uint64		crashed;		/* workers that died without cleanup */
	uint64		rejected;		/* submits refused: pool full or no slot */
	PoolSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} PoolShared;

extern PGDLLIMPORT PoolShared *BgwPool;
extern int	bgw_pool_max_workers;
extern int	bgw_pool_launcher_restart_s;
extern int	bgw_pool_startup_timeout_ms;

extern Size pool_shmem_size(void);
extern void pool_shmem_init(void);

extern PoolSlot *pool_claim_slot(void);
extern void pool_release_slot(PoolSlot *slot);
extern void pool_request_stop(PoolSlot *slot);
extern PoolSlot *pool_slot_if_current(int id, uint64 generation);
extern bool pool_may_stop(Oid role);
extern void pool_wake_launcher(void);
extern void pool_init_worker(BackgroundWorker *worker, int flags, int restart_time,
							 const char *function, const char *type);
extern void pool_install_dbcommand_hook(void);
extern TupleDesc pool_begin_materialize(FunctionCallInfo fcinfo, Tuplestorestate **store);

extern const char *pool_state_name(PoolSlotState state);
extern const char *pool_job_name(PoolJobKind job);
extern bool pool_job_from_name(const char *name, PoolJobKind *job);
extern const char *pool_handle_status_name(PoolHandleStatus status);

#endif							/* BGW_POOL_POOL_H */
