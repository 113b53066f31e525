/*-------------------------------------------------------------------------
 *
 * pause.c
 *		Named pause points (see pause.h) and their SQL functions.
 *
 * NOTES
 *		PauseShared.narmed is an atomic counter, read without a lock on the
 *		fast path; every other field is read and written only while holding
 *		PauseShared.mutex (a spinlock: nothing is done under it but copying
 *		a few words).  A waiter sleeps on PauseShared.cv and removes itself
 *		from the waiter list when it leaves, also when it leaves by ERROR or
 *		FATAL.  The caller of pool_pause must hold no LWLock.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <signal.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "pause.h"
#include "pool.h"

typedef struct PauseState
{
	bool		armed;
	uint64		hits;			/* processes that stopped here */
	pid_t		waiters[PAUSE_MAX_WAITERS]; /* 0: empty */
} PauseState;

typedef struct PauseShared
{
	pg_atomic_uint32 narmed;	/* armed points; read without the mutex */
	slock_t		mutex;			/* protects points[] */
	ConditionVariable cv;		/* broadcast when a point is released */
	PauseState	points[NUM_PAUSE_POINTS];
} PauseShared;

static PauseShared *Pause = NULL;

static const char *const pause_names[NUM_PAUSE_POINTS] = {
	"worker-before-exit-hook",
	"worker-before-connect",
	"worker-before-attach",
	"launcher-before-register",
	"launcher-startup-wait",
	"launcher-before-reap",
	"submit-deadline",
};

PG_FUNCTION_INFO_V1(bgw_pool_pause_arm);
PG_FUNCTION_INFO_V1(bgw_pool_pause_release);
PG_FUNCTION_INFO_V1(bgw_pool_pause_points);

Size
pause_shmem_size(void)
{
	return sizeof(PauseShared);
}

/* Called from shmem_startup_hook; after a crash-restart every point is disarmed. */
void
pause_shmem_init(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	Pause = ShmemInitStruct("bgw_pool pause points", sizeof(PauseShared), &found);
	if (!found)
	{
		memset(Pause, 0, sizeof(PauseShared));
		pg_atomic_init_u32(&Pause->narmed, 0);
		SpinLockInit(&Pause->mutex);
		ConditionVariableInit(&Pause->cv);
	}
	LWLockRelease(AddinShmemInitLock);
}

const char *
pause_point_name(PausePoint point)
{
	return pause_names[point];
}

bool
pause_point_from_name(const char *name, PausePoint *point)
{
	for (int i = 0; i < NUM_PAUSE_POINTS; i++)
	{
		if (strcmp(name, pause_names[i]) == 0)
		{
			*point = (PausePoint) i;
			return true;
		}
	}
	return false;
}

/* Take our pid off the waiters of a point (also on ERROR and FATAL). */
static void
pause_leave(int code, Datum arg)
{
	PauseState *state = &Pause->points[DatumGetInt32(arg)];

	SpinLockAcquire(&Pause->mutex);
	for (int i = 0; i < PAUSE_MAX_WAITERS; i++)
		if (state->waiters[i] == MyProcPid)
			state->waiters[i] = 0;
	SpinLockRelease(&Pause->mutex);
}

/*
 * Wait here while 'point' is armed.  Interrupts are served while waiting
 * (where the process has unblocked them), and postmaster death ends the
 * wait and the process.
 */
void
pool_pause(PausePoint point)
{
	PauseState *state = &Pause->points[point];
	bool		listed = false;

	if (pg_atomic_read_u32(&Pause->narmed) == 0)
		return;

	SpinLockAcquire(&Pause->mutex);
	if (state->armed)
	{
		state->hits++;
		for (int i = 0; i < PAUSE_MAX_WAITERS && !listed; i++)
		{
			if (state->waiters[i] == 0)
			{
				state->waiters[i] = MyProcPid;
				listed = true;
			}
		}
	}
	SpinLockRelease(&Pause->mutex);
	if (!listed)
		return;					/* not armed, or too many waiters already */

	PG_ENSURE_ERROR_CLEANUP(pause_leave, Int32GetDatum(point));
	{
		ConditionVariablePrepareToSleep(&Pause->cv);
		for (;;)
		{
			bool		armed;

			SpinLockAcquire(&Pause->mutex);
			armed = state->armed;
			SpinLockRelease(&Pause->mutex);
			if (!armed)
				break;
			(void) ConditionVariableTimedSleep(&Pause->cv, 1000L, BGWP_WAIT_EVENT);
		}
		ConditionVariableCancelSleep();
	}
	PG_END_ENSURE_ERROR_CLEANUP(pause_leave, Int32GetDatum(point));
	pause_leave(0, Int32GetDatum(point));
}

static PausePoint
point_arg(FunctionCallInfo fcinfo)
{
	PausePoint	point;
	char	   *name;

	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("only superusers can arm or release bgw_pool pause points")));
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("point must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!pause_point_from_name(name, &point))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown pause point \"%s\"", name),
				 errhint("See bgw_pool.pause_points() for their names.")));
	return point;
}

/*
 * Arm or disarm a point; returns whether it was armed.  narmed changes
 * under the mutex too, so that it never says none while one is armed.
 */
static bool
pause_set(PausePoint point, bool armed)
{
	bool		was;

	SpinLockAcquire(&Pause->mutex);
	was = Pause->points[point].armed;
	Pause->points[point].armed = armed;
	if (armed && !was)
		pg_atomic_fetch_add_u32(&Pause->narmed, 1);
	else if (!armed && was)
		pg_atomic_fetch_sub_u32(&Pause->narmed, 1);
	SpinLockRelease(&Pause->mutex);
	return was;
}

/*
 * bgw_pool.pause_arm(point text): every process reaching it waits there.
 * Refused unless the server was started with bgw_pool.pause_points = on.
 */
Datum
bgw_pool_pause_arm(PG_FUNCTION_ARGS)
{
	PausePoint	point = point_arg(fcinfo);

	if (!bgw_pool_pause_points_enabled)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bgw_pool pause points are disabled"),
				 errhint("Start a test server with \"%s\" = on.", "bgw_pool.pause_points")));
	PG_RETURN_BOOL(!pause_set(point, true));
}

/* bgw_pool.pause_release(point text): disarm it and wake its waiters */
Datum
bgw_pool_pause_release(PG_FUNCTION_ARGS)
{
	bool		was = pause_set(point_arg(fcinfo), false);

	ConditionVariableBroadcast(&Pause->cv);
	PG_RETURN_BOOL(was);
}

/* bgw_pool.pause_points(): point, armed, hits, waiting pids */
Datum
bgw_pool_pause_points(PG_FUNCTION_ARGS)
{
	PauseState	copy[NUM_PAUSE_POINTS];
	Tuplestorestate *store;
	TupleDesc	tupdesc = pool_begin_materialize(fcinfo, &store);

	SpinLockAcquire(&Pause->mutex);
	memcpy(copy, Pause->points, sizeof(copy));
	SpinLockRelease(&Pause->mutex);

	for (int p = 0; p < NUM_PAUSE_POINTS; p++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};
		Datum		pids[PAUSE_MAX_WAITERS];
		int			n = 0;

		for (int i = 0; i < PAUSE_MAX_WAITERS; i++)
			if (copy[p].waiters[i] != 0)
				pids[n++] = Int32GetDatum(copy[p].waiters[i]);
		values[0] = CStringGetTextDatum(pause_names[p]);
		values[1] = BoolGetDatum(copy[p].armed);
		values[2] = Int64GetDatum((int64) copy[p].hits);
		values[3] = PointerGetDatum(construct_array(pids, n, INT4OID, sizeof(int32), true, TYPALIGN_INT));
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	return (Datum) 0;
}
