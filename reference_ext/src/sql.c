/*-------------------------------------------------------------------------
 *
 * sql.c
 *		SQL-callable functions of bgw_pool: submit, terminate, the status
 *		view, stats, the invariant check, the measurement floor.
 *
 * NOTES
 *		Arguments are validated before any slot is claimed: bad input gets
 *		SQLSTATE 22004 (null) or 22023 (invalid), an unknown database 3D000,
 *		a database that refuses connections 55000.  A submitter waits on the
 *		pool's condition variable for its own outcome; its slot is not reused
 *		before it has read that outcome (PoolSlot.awaiting_ack).
 *
 *		Submit is transactional: the slot records the submitting
 *		(sub)transaction, whose xid is assigned here, and the worker runs the
 *		job only once that has committed (worker.c).  An error later in the
 *		statement, a ROLLBACK or a rollback to a savepoint taken before the
 *		submit leaves a worker that exits without running anything.
 *
 *		No catalog is read under the pool lock: terminate() copies the job's
 *		role and generation, releases the lock to check privileges, and
 *		acts only if the slot still holds that generation.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include <signal.h>
#include <limits.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "pause.h"
#include "pool.h"

PG_FUNCTION_INFO_V1(bgw_pool_submit);
PG_FUNCTION_INFO_V1(bgw_pool_terminate);
PG_FUNCTION_INFO_V1(bgw_pool_status);
PG_FUNCTION_INFO_V1(bgw_pool_launcher_pid);
PG_FUNCTION_INFO_V1(bgw_pool_stats);
PG_FUNCTION_INFO_V1(bgw_pool_check);
PG_FUNCTION_INFO_V1(bgw_pool_direct_launch_us);

/*
 * ignore_sigterm is bounded, from its attach, its wait for the submitting
 * transaction included: a fast shutdown waits for it to end, and must
 * still end well within pg_ctl's default wait of 60 s.
 */
#define DEFAULT_IGNORE_MS INT64CONST(10000)
#define MAX_IGNORE_MS INT64CONST(30000)

static int64
parse_int_arg(const char *job, const char *name, text *value, int64 min, int64 max)
{
	char	   *s = text_to_cstring(value);
	char	   *end;
	long long	v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid \"%s\" for job \"%s\": \"%s\"", name, job, s),
				 errdetail("\"%s\" must be an integer from " INT64_FORMAT " to " INT64_FORMAT ".",
						   name, min, max)));
	return (int64) v;
}

/* Resolve and check the target database before any slot is claimed. */
static Oid
submit_database(Name dbname)
{
	Oid			dboid = get_database_oid(NameStr(*dbname), false);
	HeapTuple	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
	bool		allowconn;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_DATABASE),
				 errmsg("database \"%s\" does not exist", NameStr(*dbname))));
	allowconn = ((Form_pg_database) GETSTRUCT(tup))->datallowconn;
	ReleaseSysCache(tup);

	/*
	 * A background worker's connection is not checked against pg_hba.conf:
	 * only a superuser may have a job run in a database other than the one
	 * it is connected to (as pg_hba.conf let it).
	 */
	if (dboid != MyDatabaseId && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to submit a job in database \"%s\"", NameStr(*dbname)),
				 errdetail("Only a superuser may submit a job in another database than its own: a worker's connection is not checked against pg_hba.conf.")));
	/* the worker connects as our current user, and runs as it */
	if (BGWP_DATABASE_ACLCHECK(dboid, GetUserId(), ACL_CONNECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for database %s", NameStr(*dbname)),
				 errdetail("A job runs as its submitter, who needs the CONNECT privilege on its database.")));
	if (!allowconn)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("database \"%s\" is not accepting connections", NameStr(*dbname)),
				 errhint("A pool worker cannot run in a database with datallowconn = false.")));
	return dboid;
}

/*
 * Before 17 core lets a background worker connect only as a role that may
 * log in (compat.h): refuse any other now rather than fail in the worker.
 */
static void
submit_role(void)
{
#ifndef BGWP_CONNECTS_AS_NOLOGIN
	HeapTuple	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(GetUserId()));
	bool		canlogin;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for role %u", GetUserId());
	canlogin = ((Form_pg_authid) GETSTRUCT(tup))->rolcanlogin;
	ReleaseSysCache(tup);
	if (!canlogin)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" cannot run bgw_pool jobs", GetUserNameFromId(GetUserId(), false)),
				 errdetail("A job's worker connects as the role that submits it, and before PostgreSQL 17 only a role with LOGIN can connect.")));
#endif
}

/* Kinds that crash, hang or restart the cluster: superusers only. */
static bool
job_is_fault(PoolJobKind kind, int code)
{
	return kind == JOB_CRASH || kind == JOB_IGNORE_SIGTERM ||
		(kind == JOB_EXIT && code != 0 && code != 1);
}

/* A submitter's request: its slot and the generation it claimed. */
typedef struct SubmitRequest
{
	int			id;
	uint64		generation;
} SubmitRequest;

/*
 * Wait until the request has an outcome, its deadline passes, or no
 * launcher runs to register it.  Reads the slot under the lock; the
 * answer is decided by the caller.
 */
static void
submit_wait(int id, uint64 generation, TimestampTz deadline)
{
	PoolSlot   *slot = &BgwPool->slots[id];

	ConditionVariablePrepareToSleep(&BgwPool->cv);
	for (;;)
	{
		long		remaining;
		bool		done;

		LWLockAcquire(BgwPool->lock, LW_SHARED);
		Assert(slot->generation == generation);
		done = slot->outcome != OUTCOME_PENDING ||
			(BgwPool->launcher_pid == 0 && !slot->registered);
		LWLockRelease(BgwPool->lock);
		if (done)
			break;
		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining <= 0)
		{
			ConditionVariableCancelSleep();
			pool_pause(PAUSE_SUBMIT_DEADLINE);
			break;
		}
		(void) ConditionVariableTimedSleep(&BgwPool->cv, Min(remaining, 100L), BGWP_WAIT_EVENT);
	}
	ConditionVariableCancelSleep();
}

/*
 * The submitter leaves by ERROR or FATAL (a cancel, its termination) before
 * it could report its request: the request must leave nothing behind.  A
 * worker that has not attached never will (its generation is gone when it
 * tries), so the slot is freed now; one that has attached is stopped, since
 * nobody was told it runs.
 */
static void
submit_give_up(int code, Datum arg)
{
	SubmitRequest *request = (SubmitRequest *) DatumGetPointer(arg);
	PoolSlot   *slot;
	bool		stop = false;

	LWLockAcquire(BgwPool->lock, LW_EXCLUSIVE);
	slot = &BgwPool->slots[request->id];
	if (slot->generation == request->generation)
	{
		if (slot->outcome == OUTCOME_PENDING)
			slot->outcome = OUTCOME_ABANDONED;
		if (slot->state != SLOT_FREE && slot->attached)
		{
			pool_request_stop(slot);
			stop = true;
		}
		else if (slot->state != SLOT_FREE)
			pool_release_slot(slot);
		slot->awaiting_ack = false;
	}
	LWLockRelease(BgwPool->lock);
	ConditionVariableBroadcast(&BgwPool->cv);
	if (stop)
		pool_wake_launcher();
}

/*
 * bgw_pool._submit(job, args_type, ms, code, message, query, dbname)
 * Called by bgw_pool.submit(job, args jsonb, dbname), which unpacks args.
 */
Datum
bgw_pool_submit(PG_FUNCTION_ARGS)
{
	char	   *job_name;
	PoolJobKind kind;
	int64		ms = 0;
	int			code = 0;
	char	   *textarg = NULL;
	Oid			dboid;
	TransactionId xid;
	PoolSlot   *slot;
	SubmitRequest request;
	PoolOutcome outcome;
	bool		no_launcher = false;
	pid_t		pid;
	Tuplestorestate *store;
	TupleDesc	tupdesc;

	/* a call that cannot take the answer starts nothing */
	tupdesc = pool_begin_materialize(fcinfo, &store);

	/*
	 * A hot standby runs no launcher (it starts at the end of recovery) and
	 * cannot assign the transaction id a job waits on: refuse as core refuses
	 * a write there (25006), before anything is claimed.
	 */
	PreventCommandDuringRecovery("bgw_pool.submit()");
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("job must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("args must not be null")));
	if (PG_ARGISNULL(6))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("dbname must not be null")));
	job_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!pool_job_from_name(job_name, &kind))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown job \"%s\"", job_name),
				 errhint("Valid jobs are sleep, sql, exit, error, fatal, crash, ignore_sigterm, exit_at_once and fail_to_start.")));
	if (strcmp(text_to_cstring(PG_GETARG_TEXT_PP(1)), "object") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("args must be a JSON object")));

	switch (kind)
	{
		case JOB_SLEEP:
			if (PG_ARGISNULL(2))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("job \"sleep\" needs \"ms\"")));
			ms = parse_int_arg(job_name, "ms", PG_GETARG_TEXT_PP(2), 0, INT_MAX);
			break;
		case JOB_IGNORE_SIGTERM:
			ms = PG_ARGISNULL(2) ? DEFAULT_IGNORE_MS :
				parse_int_arg(job_name, "ms", PG_GETARG_TEXT_PP(2), 0, MAX_IGNORE_MS);
			break;
		case JOB_EXIT:
			if (PG_ARGISNULL(3))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("job \"exit\" needs \"code\"")));
			code = (int) parse_int_arg(job_name, "code", PG_GETARG_TEXT_PP(3), 0, 255);
			break;
		case JOB_ERROR:
		case JOB_FATAL:
			textarg = PG_ARGISNULL(4) ? psprintf("bgw_pool: %s job", job_name) :
				text_to_cstring(PG_GETARG_TEXT_PP(4));
			break;
		case JOB_SQL:
			if (PG_ARGISNULL(5))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("job \"sql\" needs \"query\"")));
			textarg = text_to_cstring(PG_GETARG_TEXT_PP(5));
			break;
		case JOB_CRASH:
		case JOB_EXIT_AT_ONCE:
		case JOB_FAIL_TO_START:
			break;
	}
	if (textarg != NULL && strlen(textarg) >= BGW_POOL_TEXT_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("job argument is too long"),
				 errdetail("The limit is %d bytes.", BGW_POOL_TEXT_LEN - 1)));
	if (job_is_fault(kind, code) && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to submit job \"%s\"%s", job_name,
						kind == JOB_EXIT ? psprintf(" with code %d", code) : ""),
				 errdetail("Only superusers may submit jobs that crash, hang or restart the cluster.")));
	dboid = submit_database(PG_GETARG_NAME(6));
	submit_role();
	/* the job runs only if this (sub)transaction commits */
	xid = GetCurrentTransactionId();

	/* claim a slot */
	LWLockAcquire(BgwPool->lock, LW_EXCLUSIVE);
	if (BgwPool->launcher_pid == 0)
	{
		LWLockRelease(BgwPool->lock);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bgw_pool launcher is not running"),
				 errhint("The postmaster restarts it within bgw_pool.launcher_restart_s; retry then.")));
	}
	slot = pool_claim_slot();
	if (slot == NULL)
	{
		BgwPool->rejected++;
		LWLockRelease(BgwPool->lock);
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("bgw_pool is full: all %d slots are in use", BgwPool->capacity),
				 errhint("Wait for a worker to finish, or raise \"%s\".", "bgw_pool.max_workers")));
	}
	slot->dboid = dboid;
	slot->userid = GetUserId();
	slot->submit_xid = xid;
	slot->job = kind;
	slot->arg_ms = ms;
	slot->arg_code = code;
	strlcpy(slot->arg_text, textarg ? textarg : "", sizeof(slot->arg_text));
	request.id = slot->id;
	request.generation = slot->generation;
	LWLockRelease(BgwPool->lock);

	/*
	 * Wait for our own outcome.  However this wait ends (ERROR, cancel,
	 * FATAL), the request is given up so that it leaves nothing behind.
	 */
	PG_ENSURE_ERROR_CLEANUP(submit_give_up, PointerGetDatum(&request));
	{
		pool_wake_launcher();
		submit_wait(request.id, request.generation,
					TimestampTzPlusMilliseconds(GetCurrentTimestamp(), bgw_pool_startup_timeout_ms));
	}
	PG_END_ENSURE_ERROR_CLEANUP(submit_give_up, PointerGetDatum(&request));

	/*
	 * The answer is what the slot says now, under the lock: a worker that
	 * attached while we stood at the deadline is a success, and a request
	 * still pending is given up before we say it did not start.
	 */
	LWLockAcquire(BgwPool->lock, LW_EXCLUSIVE);
	slot = &BgwPool->slots[request.id];
	Assert(slot->generation == request.generation);
	if (slot->outcome == OUTCOME_PENDING)
	{
		Assert(!slot->attached);
		no_launcher = BgwPool->launcher_pid == 0 && !slot->registered;
		slot->outcome = OUTCOME_ABANDONED;
		if (slot->state != SLOT_FREE)
			pool_release_slot(slot);
	}
	outcome = slot->outcome;
	pid = slot->outcome_pid;
	slot->awaiting_ack = false;
	LWLockRelease(BgwPool->lock);
	ConditionVariableBroadcast(&BgwPool->cv);

	switch (outcome)
	{
		case OUTCOME_RUNNING:
			break;
		case OUTCOME_REFUSED:
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("could not register a background worker for bgw_pool slot %d", request.id),
					 errdetail("Every one of the server's %d background worker slots is taken, and none by a worker of the pool that is about to exit.",
							   max_worker_processes),
					 errhint("Increase \"%s\" (it counts the pool's launcher and workers, and every other background worker).",
							 "max_worker_processes")));
			break;
		case OUTCOME_NOT_STARTED:
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("bgw_pool worker for slot %d could not start", request.id),
					 errhint("More details may be available in the server log.")));
			break;
		case OUTCOME_PENDING:
		case OUTCOME_ABANDONED:
			if (no_launcher)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("bgw_pool launcher exited before it started the worker for slot %d", request.id),
						 errhint("The postmaster restarts it within bgw_pool.launcher_restart_s; retry then. The slot has been released.")));
			pool_wake_launcher();
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("bgw_pool worker for slot %d did not start within %d ms",
							request.id, bgw_pool_startup_timeout_ms),
					 errhint("Check that the bgw_pool launcher runs; the slot has been released.")));
			break;
	}
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		values[0] = Int32GetDatum(request.id);
		values[1] = Int64GetDatum((int64) request.generation);
		values[2] = Int32GetDatum(pid);
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * bgw_pool.terminate(slot int, generation bigint): ask the job of that
 * handle to stop.  A handle names one job: a stop never acts on whatever
 * holds the slot now.  The job's role is checked outside the pool lock.
 */
Datum
bgw_pool_terminate(PG_FUNCTION_ARGS)
{
	int			id;
	uint64		generation;
	PoolSlot   *slot;
	Oid			role = InvalidOid;
	bool		result = false;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", PG_ARGISNULL(0) ? "slot" : "generation"),
				 errhint("A job is named by its handle (slot, generation), as submit returns it.")));
	id = PG_GETARG_INT32(0);
	if (id < 0 || id >= BgwPool->capacity)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("slot %d is out of range", id),
				 errdetail("Slots are numbered from 0 to %d.", BgwPool->capacity - 1)));
	if (PG_GETARG_INT64(1) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("generation must not be negative")));
	generation = (uint64) PG_GETARG_INT64(1);

	LWLockAcquire(BgwPool->lock, LW_SHARED);
	slot = pool_slot_if_current(id, generation);
	if (slot != NULL)
		role = slot->userid;
	LWLockRelease(BgwPool->lock);
	if (!OidIsValid(role))
		PG_RETURN_BOOL(false);

	/* core's rule, as pg_terminate_backend; never under the pool lock */
	if (!pool_may_stop(role))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to terminate the job in bgw_pool slot %d", id),
				 errdetail("A superuser's job only a superuser may stop; any other, a role with the privileges of the job's role or of pg_signal_backend.")));

	LWLockAcquire(BgwPool->lock, LW_EXCLUSIVE);
	slot = pool_slot_if_current(id, generation);
	if (slot != NULL)
	{
		pool_request_stop(slot);
		result = true;
	}
	LWLockRelease(BgwPool->lock);
	if (result)
		pool_wake_launcher();
	PG_RETURN_BOOL(result);
}

/* bgw_pool._status(): the rows of the bgw_pool.status view */
Datum
bgw_pool_status(PG_FUNCTION_ARGS)
{
	Tuplestorestate *store;
	TupleDesc	tupdesc = pool_begin_materialize(fcinfo, &store);
	PoolSlot   *copy = palloc(sizeof(PoolSlot) * BgwPool->capacity);
	int			n;

	LWLockAcquire(BgwPool->lock, LW_SHARED);
	n = BgwPool->capacity;
	memcpy(copy, BgwPool->slots, sizeof(PoolSlot) * n);
	LWLockRelease(BgwPool->lock);

	for (int i = 0; i < n; i++)
	{
		PoolSlot   *s = &copy[i];
		Datum		values[11];
		bool		nulls[11];
		bool		busy = s->state != SLOT_FREE;
		char	   *dbname = busy ? get_database_name(s->dboid) : NULL;
		char	   *role = busy ? GetUserNameFromId(s->userid, true) : NULL;

		memset(nulls, 0, sizeof(nulls));
		values[0] = Int32GetDatum(s->id);
		values[1] = CStringGetTextDatum(pool_state_name(s->state));
		values[2] = Int64GetDatum((int64) s->generation);
		nulls[3] = dbname == NULL;
		if (dbname != NULL)
		{
			Name		nm = palloc0(NAMEDATALEN);

			namestrcpy(nm, dbname);
			values[3] = NameGetDatum(nm);
		}
		nulls[4] = role == NULL;
		if (role != NULL)
		{
			Name		nm = palloc0(NAMEDATALEN);

			namestrcpy(nm, role);
			values[4] = NameGetDatum(nm);
		}
		values[5] = Int32GetDatum(s->pid);
		nulls[5] = !busy || s->pid == 0;
		nulls[6] = !busy || s->handle_status == HANDLE_NONE;
		if (!nulls[6])
			values[6] = CStringGetTextDatum(pool_handle_status_name(s->handle_status));
		nulls[7] = !busy;
		if (busy)
			values[7] = CStringGetTextDatum(pool_job_name(s->job));
		values[8] = TimestampTzGetDatum(s->started_at);
		nulls[8] = !busy || s->started_at == 0;
		values[9] = Int32GetDatum(s->last_exit_code);
		nulls[9] = !s->has_exit || s->last_exit_crash;
		values[10] = TimestampTzGetDatum(s->last_exit_at);
		nulls[10] = !s->has_exit;
		tuplestore_putvalues(store, tupdesc, values, nulls);
	}
	return (Datum) 0;
}

Datum
bgw_pool_launcher_pid(PG_FUNCTION_ARGS)
{
	pid_t		pid;

	LWLockAcquire(BgwPool->lock, LW_SHARED);
	pid = BgwPool->launcher_pid;
	LWLockRelease(BgwPool->lock);
	if (pid == 0)
		PG_RETURN_NULL();
	PG_RETURN_INT32(pid);
}

Datum
bgw_pool_stats(PG_FUNCTION_ARGS)
{
	Tuplestorestate *store;
	TupleDesc	tupdesc = pool_begin_materialize(fcinfo, &store);
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};

	LWLockAcquire(BgwPool->lock, LW_SHARED);
	values[0] = Int64GetDatum((int64) BgwPool->launched);
	values[1] = Int64GetDatum((int64) BgwPool->exited);
	values[2] = Int64GetDatum((int64) BgwPool->failed);
	values[3] = Int64GetDatum((int64) BgwPool->crashed);
	values[4] = Int64GetDatum((int64) BgwPool->rejected);
	values[5] = Int64GetDatum((int64) (BgwPool->launcher_starts > 0 ? BgwPool->launcher_starts - 1 : 0));
	values[6] = Int32GetDatum(BgwPool->capacity);
	LWLockRelease(BgwPool->lock);
	tuplestore_putvalues(store, tupdesc, values, nulls);
	return (Datum) 0;
}

static void
violation(Tuplestorestate *store, TupleDesc tupdesc, const char *invariant, char *detail)
{
	Datum		values[2];
	bool		nulls[2] = {false, false};

	values[0] = CStringGetTextDatum(invariant);
	values[1] = CStringGetTextDatum(detail);
	tuplestore_putvalues(store, tupdesc, values, nulls);
}

/* bgw_pool.check(): one row per violated invariant */
Datum
bgw_pool_check(PG_FUNCTION_ARGS)
{
	Tuplestorestate *store;
	TupleDesc	tupdesc = pool_begin_materialize(fcinfo, &store);
	int			n = BgwPool->capacity;
	int		   *on_list = palloc0(sizeof(int) * n);	/* 1 free, 2 running, -1 both */
	PoolSlot   *copy = palloc(sizeof(PoolSlot) * n);
	int			nfree = 0,
				nrunning = 0;
	dlist_iter	iter;

	LWLockAcquire(BgwPool->lock, LW_SHARED);
	dlist_foreach(iter, &BgwPool->free_list)
	{
		PoolSlot   *s = dlist_container(PoolSlot, node, iter.cur);

		on_list[s->id] = on_list[s->id] ? -1 : 1;
		nfree++;
	}
	dlist_foreach(iter, &BgwPool->running_list)
	{
		PoolSlot   *s = dlist_container(PoolSlot, node, iter.cur);

		on_list[s->id] = on_list[s->id] ? -1 : 2;
		nrunning++;
	}
	memcpy(copy, BgwPool->slots, sizeof(PoolSlot) * n);
	LWLockRelease(BgwPool->lock);

	if (nfree + nrunning != n)
		violation(store, tupdesc, "free plus running equals capacity",
				  psprintf("%d free + %d running != %d", nfree, nrunning, n));
	for (int i = 0; i < n; i++)
	{
		PoolSlot   *s = &copy[i];

		if (on_list[i] == -1 || on_list[i] == 0)
			violation(store, tupdesc, "lists are disjoint and complete",
					  psprintf("slot %d is on %s list", i, on_list[i] ? "both" : "no"));
		else if ((on_list[i] == 1) != (s->state == SLOT_FREE))
			violation(store, tupdesc, "lists agree with slot states",
					  psprintf("slot %d is %s but on the %s list", i, pool_state_name(s->state),
							   on_list[i] == 1 ? "free" : "running"));
		if (s->state != SLOT_FREE && s->pid != 0 && kill(s->pid, 0) != 0)
			violation(store, tupdesc, "running pids are alive",
					  psprintf("slot %d holds pid %d, which is not alive", i, (int) s->pid));
		if (s->state == SLOT_FREE && s->pid != 0)
			violation(store, tupdesc, "free slots hold no pid",
					  psprintf("free slot %d holds pid %d", i, (int) s->pid));
		for (int j = 0; j < i; j++)
			if (s->pid != 0 && copy[j].pid == s->pid)
				violation(store, tupdesc, "no pid appears twice",
						  psprintf("slots %d and %d both hold pid %d", j, i, (int) s->pid));
		if (s->state != SLOT_FREE &&
			s->attached != (s->state == SLOT_RUNNING || s->state == SLOT_STOPPING))
			violation(store, tupdesc, "a slot is running or stopping exactly when its worker attached",
					  psprintf("slot %d is %s, its worker %s", i, pool_state_name(s->state),
							   s->attached ? "attached" : "not attached"));
		if (s->state != SLOT_FREE && s->attached != (s->pid != 0))
			violation(store, tupdesc, "an attached worker's pid is known",
					  psprintf("slot %d: worker %s, pid %d", i,
							   s->attached ? "attached" : "not attached", (int) s->pid));
	}
	return (Datum) 0;
}

/*
 * bgw_pool.direct_launch_us(): the floor submit is measured against.  From
 * this backend, register a worker that exits at once and wait for it to
 * start; returns the microseconds that took.  Waits for it to stop too, so
 * that no worker slot is left taken.
 */
Datum
bgw_pool_direct_launch_us(PG_FUNCTION_ARGS)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz started;
	pid_t		pid;

	pool_init_worker(&worker, BGWORKER_SHMEM_ACCESS, BGW_NEVER_RESTART,
					 "bgw_pool_noop_main", "bgw_pool direct launch");
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("could not register background worker"),
				 errhint("You might need to increase \"%s\".", "max_worker_processes")));
	if (WaitForBackgroundWorkerStartup(handle, &pid) == BGWH_POSTMASTER_DIED)
		ereport(ERROR,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("postmaster died while a background worker was starting")));
	started = GetCurrentTimestamp();
	(void) WaitForBackgroundWorkerShutdown(handle);
	PG_RETURN_FLOAT8((double) (started - start));
}
