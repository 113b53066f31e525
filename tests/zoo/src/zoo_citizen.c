/*-------------------------------------------------------------------------
 *
 * zoo_citizen.c
 *		A background-worker extension that is a good citizen of the
 *		postmaster, and the one source of every member of the zoo.
 *
 * Loaded through shared_preload_libraries, it runs three kinds of worker:
 *
 *	"zoo launcher"	static, connected to the database zoo.database names
 *					("postgres" by default), restarted 1 s
 *					after an exit: it keeps the job workers that zoo_start()
 *					asked for running; it starts once recovery has finished,
 *					so on a hot standby only after its promotion;
 *	"zoo collector"	static, shared memory only (it never connects), started
 *					as soon as the server is consistent: on a hot standby too;
 *	"zoo job"		dynamic, one per requested job, connected to the
 *					requested database, never restarted by the postmaster.
 *
 * NOTES
 *		Every wait is on the process latch with WL_EXIT_ON_PM_DEATH, followed
 *		by CHECK_FOR_INTERRUPTS(), so that SIGTERM (die), postmaster death and
 *		ProcSignalBarriers are all honoured.  The request lives in a small
 *		shared struct under one LWLock (tranche "zoo"), held only to copy or
 *		set it: never across catalog access or a heavyweight lock.
 *
 *		The launcher registers a job with bgw_notify_pid set to itself and
 *		keeps its handle in local memory; a job that exited is registered
 *		again no sooner than 1 s later.  Before it registers one it looks up
 *		the database in a transaction: one that is gone is given up (the
 *		request is cleared, one LOG line); one being dropped or closed to
 *		connections is looked at again a second later.  With no worker slot
 *		free it warns at most once per 10 s and retries on its next wake-up.
 *		Jobs hold a slot of the request in shared memory, so that a
 *		restarted launcher adopts the jobs of its predecessor.  The idle
 *		launcher does nothing but wait: no transaction, no log line.
 *
 *		The launcher's own database (zoo.database, set at server start) may
 *		be dropped under it.  A launcher that could not connect to it waits
 *		for it instead, connected to no database: one LOG line, a look at
 *		pg_database every second, and an exit (code 1) as soon as it can be
 *		connected to, so that the postmaster starts it again there.
 *
 *		Each member of the zoo is a three-line file (zoo_<member>.c) that
 *		defines ZOO_LIBRARY, its own library name, and at most one
 *		ZOO_DEFECT_<NAME>, and then includes this file.  Each defect is a
 *		compile-time switch around the smallest piece of code that
 *		reproduces a bug seen in the wild:
 *
 *	ZOO_DEFECT_EXIT0			the collector exits with code 0 on SIGTERM
 *	ZOO_DEFECT_DEAF				a job ignores SIGTERM during a long wait
 *	ZOO_DEFECT_BARRIER			the launcher waits without CHECK_FOR_INTERRUPTS
 *	ZOO_DEFECT_ORPHAN			a job's wait ignores postmaster death
 *	ZOO_DEFECT_SLOT_CRASH		the launcher errors out when no slot is free
 *	ZOO_DEFECT_DROPPED_DB		the launcher never checks that the database exists
 *	ZOO_DEFECT_SPIN				the launcher retries a registration in a busy loop
 *	ZOO_DEFECT_NEVER_RESTART	the launcher is registered BGW_NEVER_RESTART
 *	ZOO_DEFECT_STANDBY_LOOP		the launcher also starts on a hot standby, where
 *								its first transaction takes a transaction id
 *	ZOO_DEFECT_NO_PROMOTE		the launcher also starts on a hot standby, where
 *								it exits with code 0: it never runs after promotion
 *	ZOO_DEFECT_RELOAD_EXIT		the collector exits with code 0 on a reload (SIGHUP)
 *	ZOO_DEFECT_SYNC_HOLD		the launcher commits every time round, and its
 *								SIGTERM only sets a flag: a fast shutdown waits
 *								for a synchronous standby that is gone
 *	ZOO_DEFECT_FORK_WEDGE		a job the launcher never saw running is "still
 *								starting" for ever, even once its start failed
 *	ZOO_DEFECT_REST_CRASH		the launcher errors out when the collector never
 *								started (it got no slot): restarted for ever
 *	ZOO_DEFECT_SLOT_GIVEUP		the launcher gives up on a request for good when
 *								a registration finds no slot free
 *	ZOO_DEFECT_STALLED			the collector, once restarted after a termination,
 *								runs but never does its work again
 *	ZOO_DEFECT_RELOAD_DEAF		the collector's SIGHUP handler sets a flag that
 *								nothing reads: a reload never takes effect
 *	ZOO_DEFECT_NO_ADOPT			a starting launcher clears the job table, so it
 *								starts new jobs beside its predecessor's
 *	ZOO_DEFECT_CONFIG_FATAL		the launcher connects to zoo.database whether it
 *								exists or not: once it is dropped, a FATAL every
 *								second for ever
 *
 * IDENTIFICATION
 *		tests/zoo/src/zoo_citizen.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/htup_details.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#ifndef ZOO_LIBRARY
#error "define ZOO_LIBRARY, the member's library name, before including zoo_citizen.c"
#endif

#if PG_VERSION_NUM >= 180000
PG_MODULE_MAGIC_EXT(.name = ZOO_LIBRARY, .version = "1.0");
#else
PG_MODULE_MAGIC;
#endif

#define ZOO_MAX_JOBS		32		/* the most jobs zoo_start() accepts */
#define ZOO_NAPTIME_MS		1000L	/* every worker wakes up at least this often */
#define ZOO_RESTART_MS		1000	/* a job that exited is re-registered no sooner */
#define ZOO_WARNING_MS		10000	/* at most one "out of slots" warning per this */
#define ZOO_DEAF_WAIT_S		300		/* ZOO_DEFECT_DEAF: the wait deaf to SIGTERM */

#ifdef ZOO_DEFECT_NEVER_RESTART
/*
 * Defect: the launcher is never restarted.  That is what its documentation
 * says after a termination, but the postmaster also forgets a
 * BGW_NEVER_RESTART worker at a crash-restart (pg_cron #12).
 */
#define ZOO_LAUNCHER_RESTART_S	BGW_NEVER_RESTART
#else
#define ZOO_LAUNCHER_RESTART_S	1
#endif

#if defined(ZOO_DEFECT_STANDBY_LOOP) || defined(ZOO_DEFECT_NO_PROMOTE)
/*
 * Defect (of both): the launcher is registered to start as soon as the server
 * is consistent, so on a hot standby too, and does not cope with recovery
 * there (see zoo_launcher_main).  The two start times are the same on a
 * primary.
 */
#define ZOO_LAUNCHER_START		BgWorkerStart_ConsistentState
#else
#define ZOO_LAUNCHER_START		BgWorkerStart_RecoveryFinished
#endif

/* What the SQL functions ask for and who serves it, in shared memory. */
typedef struct ZooShared
{
	LWLock	   *lock;			/* protects everything below */
	char		dbname[NAMEDATALEN];	/* the jobs' database; "" for none */
	int			njobs;			/* how many jobs should run */
	uint32		generation;		/* advanced by every change of the request */
	pid_t		launcher_pid;	/* the running launcher, or 0 */
	Latch	   *launcher_latch; /* its latch, set on every change */
	pid_t		job_pid[ZOO_MAX_JOBS];	/* the job holding each slot, or 0 */
#ifdef ZOO_DEFECT_REST_CRASH
	bool		collector_started;	/* a collector ran since shared memory was made */
#endif
	bool		launcher_connecting;	/* a launcher began connecting to
										 * zoo.database and has not got there */
} ZooShared;

/* What a job is told at registration, in bgw_extra. */
typedef struct ZooJobArgs
{
	char		dbname[NAMEDATALEN];
	uint32		generation;
} ZooJobArgs;

/* The launcher's own view of its jobs, in local memory. */
typedef struct ZooLauncherState
{
	uint32		generation;		/* of the request being served */
	char		dbname[NAMEDATALEN];
	int			njobs;
	BackgroundWorkerHandle *handle[ZOO_MAX_JOBS];
	TimestampTz stopped_at[ZOO_MAX_JOBS];	/* when a slot's job was seen gone */
	TimestampTz next_warning;	/* no "out of slots" warning before this */
#ifdef ZOO_DEFECT_FORK_WEDGE
	bool		seen_running[ZOO_MAX_JOBS]; /* a slot's job was seen with a pid */
#endif
} ZooLauncherState;

static ZooShared *zoo = NULL;

/* ------------------------------------------------------------------------
 * The collector's work and its setting (PROGRESS-1, RELOAD-1)
 *
 * The collector's work is a counter in shared memory, advanced every
 * zoo.naptime milliseconds (zoo_progress()).  zoo.naptime is a PGC_SIGHUP
 * setting: the collector reads it again after a reload and publishes the
 * value it uses (zoo_naptime_seen()).  A shared struct of its own, so that
 * this block stands apart from the launcher's.
 * ------------------------------------------------------------------------
 */
#define ZOO_COLLECTOR_NAPTIME_MS	100	/* zoo.naptime's default */

typedef struct ZooProgress
{
	pg_atomic_uint64 work;		/* the collector's rounds of work */
	pg_atomic_uint32 naptime_seen;	/* the zoo.naptime the collector uses */
	pg_atomic_uint32 collector_starts;	/* since shared memory was made */
} ZooProgress;

static ZooProgress *zoo_progress_state = NULL;
static int	zoo_naptime = ZOO_COLLECTOR_NAPTIME_MS;

PG_FUNCTION_INFO_V1(zoo_progress);
PG_FUNCTION_INFO_V1(zoo_naptime_seen);

static void
zoo_progress_shmem_request(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(ZooProgress)));
}

static void
zoo_progress_shmem_startup(void)
{
	bool		found;

	/* called with AddinShmemInitLock held */
	zoo_progress_state = ShmemInitStruct("zoo progress", sizeof(ZooProgress), &found);
	if (!found)
	{
		pg_atomic_init_u64(&zoo_progress_state->work, 0);
		pg_atomic_init_u32(&zoo_progress_state->naptime_seen, 0);
		pg_atomic_init_u32(&zoo_progress_state->collector_starts, 0);
	}
}

static void
zoo_progress_define_settings(void)
{
	DefineCustomIntVariable("zoo.naptime",
							"How long the zoo collector sleeps between rounds of work.",
							"Read again by the collector on a configuration reload.",
							&zoo_naptime,
							ZOO_COLLECTOR_NAPTIME_MS, 10, 60000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
}

/* The collector uses the current zoo.naptime: say so. */
static void
zoo_progress_publish_naptime(void)
{
	pg_atomic_write_u32(&zoo_progress_state->naptime_seen, (uint32) zoo_naptime);
}

/*
 * A collector starts; returns whether it does its work.
 */
static bool
zoo_progress_collector_starts(void)
{
	uint32		before = pg_atomic_fetch_add_u32(&zoo_progress_state->collector_starts, 1);

	zoo_progress_publish_naptime();
#ifdef ZOO_DEFECT_STALLED
	/*
	 * Defect: a restarted collector finds state its predecessor left in
	 * shared memory and takes it for a round of work still in progress: it
	 * runs, answers signals, and never works again until shared memory is
	 * made anew (a crash-restart or a server restart).  pg_net PR #211: once
	 * the server recovered from a postmaster crash, its worker ran but no
	 * longer processed the request queue.
	 */
	return before == 0;
#else
	(void) before;
	return true;
#endif
}

#ifdef ZOO_DEFECT_RELOAD_DEAF
/*
 * Defect: the collector's SIGHUP handler sets a flag of its own, and
 * nothing ever reads it: ProcessConfigFile() is never called, so a reload
 * never takes effect (gp_relsizes_stats #32: its SIGHUP settings were never
 * applied; pg_net's ttl and batch_size needed a worker restart until PR
 * #196).
 */
static volatile sig_atomic_t zoo_got_sighup = false;

static void
zoo_sighup_deaf(SIGNAL_ARGS)
{
	int			save_errno = errno;

	zoo_got_sighup = true;
	SetLatch(MyLatch);

	errno = save_errno;
}
#endif

/* zoo_progress(): the collector's rounds of work since shared memory was made. */
Datum
zoo_progress(PG_FUNCTION_ARGS)
{
	if (zoo_progress_state == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s is not loaded", ZOO_LIBRARY)));
	PG_RETURN_INT64((int64) pg_atomic_read_u64(&zoo_progress_state->work));
}

/* zoo_naptime_seen(): the zoo.naptime (ms) the collector uses. */
Datum
zoo_naptime_seen(PG_FUNCTION_ARGS)
{
	if (zoo_progress_state == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s is not loaded", ZOO_LIBRARY)));
	PG_RETURN_INT32((int32) pg_atomic_read_u32(&zoo_progress_state->naptime_seen));
}

/* ------------------------------------------------------------------------
 * End of the collector's work and its setting
 * ------------------------------------------------------------------------
 */

/* zoo.database: the launcher's database, set at server start */
static char *zoo_database = NULL;

#if PG_VERSION_NUM >= 150000
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

#if PG_VERSION_NUM < 160000
void		_PG_init(void);
#endif
PGDLLEXPORT void zoo_launcher_main(Datum main_arg);
PGDLLEXPORT void zoo_collector_main(Datum main_arg);
PGDLLEXPORT void zoo_job_main(Datum main_arg);

PG_FUNCTION_INFO_V1(zoo_start);
PG_FUNCTION_INFO_V1(zoo_stop);

#if defined(ZOO_DEFECT_EXIT0) || defined(ZOO_DEFECT_BARRIER) || defined(ZOO_DEFECT_SYNC_HOLD)
/*
 * A SIGTERM handler of its own, instead of die(): it only sets a flag and
 * the latch, so nothing happens until the main loop looks at the flag.
 */
static volatile sig_atomic_t zoo_got_sigterm = false;

static void
zoo_sigterm(SIGNAL_ARGS)
{
	int			save_errno = errno;

	zoo_got_sigterm = true;
	SetLatch(MyLatch);

	errno = save_errno;
}
#endif

/* ------------------------------------------------------------------------
 * Shared memory
 * ------------------------------------------------------------------------
 */
static void
zoo_shmem_request(void)
{
#if PG_VERSION_NUM >= 150000
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif
	RequestAddinShmemSpace(MAXALIGN(sizeof(ZooShared)));
	RequestNamedLWLockTranche("zoo", 1);
	zoo_progress_shmem_request();
}

static void
zoo_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	zoo = ShmemInitStruct("zoo", sizeof(ZooShared), &found);
	if (!found)
	{
		memset(zoo, 0, sizeof(ZooShared));
		zoo->lock = &(GetNamedLWLockTranche("zoo"))->lock;
	}
	zoo_progress_shmem_startup();
	LWLockRelease(AddinShmemInitLock);
}

/* Set the request and wake the launcher. */
static void
zoo_set_request(const char *dbname, int njobs)
{
	LWLockAcquire(zoo->lock, LW_EXCLUSIVE);
	if (strcmp(zoo->dbname, dbname) != 0 || zoo->njobs != njobs)
	{
		strlcpy(zoo->dbname, dbname, NAMEDATALEN);
		zoo->njobs = njobs;
		zoo->generation++;
	}
	if (zoo->launcher_latch != NULL)
		SetLatch(zoo->launcher_latch);
	LWLockRelease(zoo->lock);
}

/* ------------------------------------------------------------------------
 * Module load
 * ------------------------------------------------------------------------
 */
static void
zoo_fill_worker(BackgroundWorker *worker, const char *name, const char *function,
				int flags, BgWorkerStartTime start_time, int restart_time)
{
	memset(worker, 0, sizeof(BackgroundWorker));
	worker->bgw_flags = flags;
	worker->bgw_start_time = start_time;
	worker->bgw_restart_time = restart_time;
	strlcpy(worker->bgw_library_name, ZOO_LIBRARY, sizeof(worker->bgw_library_name));
	strlcpy(worker->bgw_function_name, function, sizeof(worker->bgw_function_name));
	strlcpy(worker->bgw_name, name, sizeof(worker->bgw_name));
	strlcpy(worker->bgw_type, name, sizeof(worker->bgw_type));
}

void
_PG_init(void)
{
	BackgroundWorker worker;

	if (!process_shared_preload_libraries_in_progress)
		return;

	zoo_progress_define_settings();

#if PG_VERSION_NUM >= 150000
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = zoo_shmem_request;
#else
	zoo_shmem_request();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = zoo_shmem_startup;

	DefineCustomStringVariable("zoo.database",
							   "The database the zoo launcher connects to.",
							   NULL,
							   &zoo_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);

	zoo_fill_worker(&worker, "zoo launcher", "zoo_launcher_main",
					BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION,
					ZOO_LAUNCHER_START, ZOO_LAUNCHER_RESTART_S);
	RegisterBackgroundWorker(&worker);

	/* shared memory only, so it can run on a hot standby as well */
	zoo_fill_worker(&worker, "zoo collector", "zoo_collector_main",
					BGWORKER_SHMEM_ACCESS, BgWorkerStart_ConsistentState, 1);
	RegisterBackgroundWorker(&worker);
}

/* ------------------------------------------------------------------------
 * The launcher
 * ------------------------------------------------------------------------
 */
static void
zoo_launcher_detach(int code, Datum arg)
{
	LWLockAcquire(zoo->lock, LW_EXCLUSIVE);
	if (zoo->launcher_pid == MyProcPid)
	{
		zoo->launcher_pid = 0;
		zoo->launcher_latch = NULL;
	}
	LWLockRelease(zoo->lock);
}

/* Terminate every job this launcher registered. */
static void
zoo_terminate_jobs(ZooLauncherState *st)
{
	int			i;

	for (i = 0; i < ZOO_MAX_JOBS; i++)
	{
		if (st->handle[i] != NULL)
		{
			TerminateBackgroundWorker(st->handle[i]);
			pfree(st->handle[i]);
			st->handle[i] = NULL;
		}
		st->stopped_at[i] = 0;
	}
}

/*
 * Can a job connect to the database?  Asked in a transaction of its own.
 * *exists is false when it is gone.  One that exists but does not accept
 * connections, or is invalid (being dropped, or left by an interrupted
 * DROP DATABASE), is not given up on: it is looked at again a second later.
 */
static bool
zoo_database_usable(const char *dbname, bool *exists)
{
	Oid			dboid;
	HeapTuple	tuple;
	bool		usable = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	dboid = get_database_oid(dbname, true);
	*exists = OidIsValid(dboid);
	if (*exists)
	{
		tuple = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
		if (HeapTupleIsValid(tuple))
		{
			Form_pg_database form = (Form_pg_database) GETSTRUCT(tuple);

			usable = form->datallowconn;
#ifdef DATCONNLIMIT_INVALID_DB
			usable = usable && form->datconnlimit != DATCONNLIMIT_INVALID_DB;
#endif
			ReleaseSysCache(tuple);
		}
	}
	CommitTransactionCommand();
	return usable;
}

#ifndef ZOO_DEFECT_DROPPED_DB
/* The requested database is gone: clear the request, unless it changed. */
static void
zoo_give_up(ZooLauncherState *st)
{
	LWLockAcquire(zoo->lock, LW_EXCLUSIVE);
	if (zoo->generation == st->generation)
	{
		zoo->dbname[0] = '\0';
		zoo->njobs = 0;
		zoo->generation++;
	}
	LWLockRelease(zoo->lock);

	ereport(LOG,
			(errmsg("zoo jobs stopped: database \"%s\" no longer exists",
					st->dbname)));
	zoo_terminate_jobs(st);
	st->njobs = 0;
}
#endif

/* No slot was free for a job: say so, at most once per ZOO_WARNING_MS. */
static void
zoo_no_slot(ZooLauncherState *st, TimestampTz now)
{
	int			elevel = WARNING;

#ifdef ZOO_DEFECT_SLOT_CRASH
	/*
	 * Defect: an ERROR ends the launcher (exit code 1); the postmaster starts
	 * it again a second later, and it fails again: a crash loop for as long
	 * as slots are short (timescaledb's storm, pg_partman #180).
	 */
	elevel = ERROR;
#endif
	if (elevel == WARNING && now < st->next_warning)
		return;
	st->next_warning = TimestampTzPlusMilliseconds(now, ZOO_WARNING_MS);
	ereport(elevel,
			(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
			 errmsg("out of background worker slots"),
			 errdetail("A zoo job could not be registered; it is retried every second."),
			 errhint("You might need to increase %s.", "max_worker_processes")));
}

/* Register the job of one slot; false if no slot was free. */
static bool
zoo_register_job(ZooLauncherState *st, int slot)
{
	BackgroundWorker worker;
	ZooJobArgs	args;
	bool		registered;

	StaticAssertStmt(sizeof(ZooJobArgs) <= BGW_EXTRALEN, "ZooJobArgs does not fit bgw_extra");

	zoo_fill_worker(&worker, "zoo job", "zoo_job_main",
					BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION,
					BgWorkerStart_RecoveryFinished, BGW_NEVER_RESTART);
	worker.bgw_main_arg = Int32GetDatum(slot);
	worker.bgw_notify_pid = MyProcPid;
	memset(&args, 0, sizeof(args));
	strlcpy(args.dbname, st->dbname, NAMEDATALEN);
	args.generation = st->generation;
	memcpy(worker.bgw_extra, &args, sizeof(args));

	registered = RegisterDynamicBackgroundWorker(&worker, &st->handle[slot]);
#ifdef ZOO_DEFECT_FORK_WEDGE
	st->seen_running[slot] = false;
#endif
#ifdef ZOO_DEFECT_SPIN
	/*
	 * Defect: no slot free, so try again at once, with no wait and no log
	 * line: a core burnt for as long as slots are short (pg_cron's launcher).
	 * Only a termination ends the loop.
	 */
	while (!registered)
	{
		CHECK_FOR_INTERRUPTS();
		registered = RegisterDynamicBackgroundWorker(&worker, &st->handle[slot]);
	}
#endif
	if (!registered)
		st->handle[slot] = NULL;
	return registered;
}

/*
 * Keep exactly the requested number of jobs running in the requested
 * database.  The request is copied under the lock; everything else is done
 * without it.
 */
static void
zoo_reconcile(ZooLauncherState *st)
{
	ZooShared	req;
	TimestampTz now;
	bool		needed[ZOO_MAX_JOBS];
	bool		any = false;
#ifndef ZOO_DEFECT_DROPPED_DB
	bool		exists;
#endif
	int			i;

	LWLockAcquire(zoo->lock, LW_SHARED);
	memcpy(&req, zoo, sizeof(ZooShared));
	LWLockRelease(zoo->lock);

	if (req.generation != st->generation)
	{
		/* a new request (or none): the old one's jobs go */
		zoo_terminate_jobs(st);
		st->generation = req.generation;
		strlcpy(st->dbname, req.dbname, NAMEDATALEN);
		st->njobs = req.njobs;
	}

	now = GetCurrentTimestamp();
	for (i = 0; i < st->njobs; i++)
	{
		pid_t		pid;

		needed[i] = false;
		if (st->handle[i] != NULL)
		{
			BgwHandleStatus status = GetBackgroundWorkerPid(st->handle[i], &pid);

#ifdef ZOO_DEFECT_FORK_WEDGE
			/*
			 * Defect: a job counts as started only once it was seen with a
			 * pid; one that stopped before that is taken for one still
			 * starting, for ever.  A start whose fork failed is never asked
			 * for again (pg_lake PR #570: a pool "starting" for three days).
			 */
			if (status == BGWH_STARTED)
				st->seen_running[i] = true;
			else if (!st->seen_running[i])
				continue;
#endif
			if (status != BGWH_STOPPED)
				continue;		/* starting or running */
			pfree(st->handle[i]);
			st->handle[i] = NULL;
			st->stopped_at[i] = now;
		}
		if (req.job_pid[i] != 0)
			continue;			/* a job that an earlier launcher started */
		if (st->stopped_at[i] != 0 &&
			!TimestampDifferenceExceeds(st->stopped_at[i], now, ZOO_RESTART_MS))
			continue;			/* exited less than a second ago */
		needed[i] = true;
		any = true;
	}
	if (!any)
		return;

#ifndef ZOO_DEFECT_DROPPED_DB
	if (!zoo_database_usable(st->dbname, &exists))
	{
		if (!exists)
			zoo_give_up(st);
		return;
	}
#endif

	for (i = 0; i < st->njobs; i++)
	{
		if (!needed[i])
			continue;
		if (!zoo_register_job(st, i))
		{
#ifdef ZOO_DEFECT_SLOT_GIVEUP
			/*
			 * Defect: no slot free, so the request is given up for good: one
			 * WARNING, and nothing is started again until the request changes,
			 * however many slots come free (pg_partman #180: out of slots, its
			 * worker gave up for good).
			 */
			ereport(WARNING,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("out of background worker slots, giving up on the zoo jobs")));
			st->njobs = 0;
			return;
#endif
			/* retried on the next wake-up, a second from now */
			zoo_no_slot(st, now);
			return;
		}
		st->stopped_at[i] = 0;
	}
}

/* ------------------------------------------------------------------------
 * The launcher's own database (zoo.database)
 * ------------------------------------------------------------------------
 */
#ifndef ZOO_DEFECT_CONFIG_FATAL
/*
 * The previous launcher never got past its connect to zoo.database (it is
 * gone, or cannot be connected to): wait for it, connected to no database,
 * looking at pg_database (a shared catalog) every second.  Once it can be
 * connected to, exit with code 1: the postmaster starts the launcher again
 * after its restart interval, and that one connects there.  Never returns.
 */
static void
zoo_wait_for_database(void)
{
	bool		exists;

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	ereport(LOG,
			(errmsg("zoo launcher waits for database \"%s\" (zoo.database)",
					zoo_database)));
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (zoo_database_usable(zoo_database, &exists))
		{
			LWLockAcquire(zoo->lock, LW_EXCLUSIVE);
			zoo->launcher_connecting = false;
			LWLockRelease(zoo->lock);
			proc_exit(1);
		}
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ZOO_NAPTIME_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
#endif

/* Connect the launcher to zoo.database, or wait for it to be there. */
static void
zoo_launcher_connect(void)
{
	bool		failed_before;

	LWLockAcquire(zoo->lock, LW_EXCLUSIVE);
	failed_before = zoo->launcher_connecting;
	zoo->launcher_connecting = true;
	LWLockRelease(zoo->lock);
#ifdef ZOO_DEFECT_CONFIG_FATAL
	/*
	 * Defect: connect whatever happened to the last try.  Once zoo.database
	 * is dropped every start fails with FATAL: database does not exist, and
	 * the postmaster starts the launcher again a second later, for ever
	 * (pg_cron and pg_partman_bgw once cron.database_name or
	 * pg_partman_bgw.dbname is dropped).
	 */
	(void) failed_before;
#else
	if (failed_before)
		zoo_wait_for_database();
#endif
	BackgroundWorkerInitializeConnection(zoo_database, NULL, 0);
	LWLockAcquire(zoo->lock, LW_EXCLUSIVE);
	zoo->launcher_connecting = false;
	LWLockRelease(zoo->lock);
}

void
zoo_launcher_main(Datum main_arg)
{
	ZooLauncherState st;
#ifdef ZOO_DEFECT_REST_CRASH
	TimestampTz launcher_started;
#endif

#if defined(ZOO_DEFECT_BARRIER) || defined(ZOO_DEFECT_SYNC_HOLD)
	pqsignal(SIGTERM, zoo_sigterm);
#else
	pqsignal(SIGTERM, die);
#endif
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	zoo_launcher_connect();

#ifdef ZOO_DEFECT_NO_PROMOTE
	/*
	 * Defect: on a hot standby the launcher leaves at once, with exit code 0,
	 * which unregisters it: after a promotion nothing starts it again
	 * (pgnats #25: its worker, disabled on replicas, did not start on a
	 * promoted one).
	 */
	if (RecoveryInProgress())
		proc_exit(0);
#endif
#ifdef ZOO_DEFECT_STANDBY_LOOP
	/*
	 * Defect: its first transaction takes a transaction id (as one that
	 * records the launcher's start in a table would), and nothing looks at
	 * RecoveryInProgress() first.  Harmless on a primary; on a hot standby it
	 * fails with "cannot assign TransactionIds during recovery", exit code 1,
	 * and the postmaster starts it again every second: a crash loop for as
	 * long as the standby runs (citus #3144: its maintenance daemon wrote on
	 * a standby and was restarted every 5 s).
	 */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetCurrentTransactionId();
	CommitTransactionCommand();
#endif

	memset(&st, 0, sizeof(st));
	LWLockAcquire(zoo->lock, LW_EXCLUSIVE);
	zoo->launcher_pid = MyProcPid;
	zoo->launcher_latch = &MyProc->procLatch;
	st.generation = zoo->generation - 1;	/* serve whatever is requested */
#ifdef ZOO_DEFECT_NO_ADOPT
	/*
	 * Defect: a starting launcher "initializes" the job table, which is its
	 * predecessor's record of the jobs still running.  It starts a new job
	 * for every slot, beside the old ones, which keep running: after a
	 * launcher restart every job runs twice (timescaledb kills stale
	 * schedulers at launcher start; citus PR #4222: duplicate daemons).
	 */
	memset(zoo->job_pid, 0, sizeof(zoo->job_pid));
#endif
	LWLockRelease(zoo->lock);
	before_shmem_exit(zoo_launcher_detach, (Datum) 0);
#ifdef ZOO_DEFECT_REST_CRASH
	launcher_started = GetCurrentTimestamp();
#endif

	for (;;)
	{
#ifdef ZOO_DEFECT_BARRIER
		/*
		 * Defect: no CHECK_FOR_INTERRUPTS() in the launcher's loop, only its
		 * own SIGTERM flag.  So it never absorbs a ProcSignalBarrier, and from
		 * PostgreSQL 15 on DROP DATABASE of any database waits for it for
		 * ever (pg_cron #318, pg_net #78/#217, powa-archivist #53).
		 */
		if (zoo_got_sigterm)
			ereport(FATAL,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("terminating background worker \"%s\" due to administrator command",
							MyBgworkerEntry->bgw_type)));
#else
		CHECK_FOR_INTERRUPTS();
#endif
#ifdef ZOO_DEFECT_REST_CRASH
		/*
		 * Defect: the launcher needs the collector, and errors out when none
		 * has started a second after its own start.  With fewer slots than
		 * run at rest the collector got none when the server started: the
		 * launcher fails, is restarted a second later and fails again, for as
		 * long as the server runs (citus #3798: a daemon without its slot,
		 * every command failing).
		 */
		if (TimestampDifferenceExceeds(launcher_started, GetCurrentTimestamp(), 1000))
		{
			bool		collector_started;

			LWLockAcquire(zoo->lock, LW_SHARED);
			collector_started = zoo->collector_started;
			LWLockRelease(zoo->lock);
			if (!collector_started)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
						 errmsg("the zoo collector is not running"),
						 errhint("You might need to increase %s.", "max_worker_processes")));
		}
#endif
#ifdef ZOO_DEFECT_SYNC_HOLD
		/*
		 * Defect: SIGTERM only sets a flag, looked at here, and the launcher
		 * commits a transaction that wrote (its heartbeat, a row) every time
		 * round.
		 * With synchronous_standby_names naming a standby that is gone, the
		 * commit waits for it; core ends that wait for a process whose
		 * ProcDiePending is set, which a flag of its own never sets, so a fast
		 * shutdown waits for ever (pg_cron PR #414).
		 */
		if (zoo_got_sigterm)
			ereport(FATAL,
					(errcode(ERRCODE_ADMIN_SHUTDOWN),
					 errmsg("terminating background worker \"%s\" due to administrator command",
							MyBgworkerEntry->bgw_type)));
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		SPI_execute("CREATE TABLE IF NOT EXISTS zoo_heartbeat (at timestamptz);"
					" INSERT INTO zoo_heartbeat VALUES (now())", false, 0);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
#endif
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		zoo_reconcile(&st);

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ZOO_NAPTIME_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* ------------------------------------------------------------------------
 * The collector
 * ------------------------------------------------------------------------
 */
void
zoo_collector_main(Datum main_arg)
{
	bool		works;

#ifdef ZOO_DEFECT_EXIT0
	pqsignal(SIGTERM, zoo_sigterm);
#else
	pqsignal(SIGTERM, die);
#endif
#ifdef ZOO_DEFECT_RELOAD_DEAF
	pqsignal(SIGHUP, zoo_sighup_deaf);
#else
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
#endif
	BackgroundWorkerUnblockSignals();
#ifdef ZOO_DEFECT_REST_CRASH
	LWLockAcquire(zoo->lock, LW_EXCLUSIVE);
	zoo->collector_started = true;
	LWLockRelease(zoo->lock);
#endif

	works = zoo_progress_collector_starts();
	for (;;)
	{
		int			rc;

		rc = WaitLatch(MyLatch,
					   WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   zoo_naptime, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		/* a round of work every zoo.naptime */
		if ((rc & WL_TIMEOUT) && works)
			pg_atomic_fetch_add_u64(&zoo_progress_state->work, 1);
#ifdef ZOO_DEFECT_EXIT0
		/*
		 * Defect: a clean exit when terminated.  Exit code 0 tells the
		 * postmaster to unregister the worker: it is never started again
		 * (pg_cron #188, #99).
		 */
		if (zoo_got_sigterm)
		{
			ereport(LOG, (errmsg("zoo collector shutting down")));
			proc_exit(0);
		}
#endif
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
#ifdef ZOO_DEFECT_RELOAD_EXIT
			/*
			 * Defect: new settings are "applied" by exiting, to be started again
			 * with them.  Exit code 0 tells the postmaster to unregister the
			 * worker: the first configuration reload ends the collector for good
			 * (pgvecto.rs #387: its worker exited with code 0 on SIGHUP).
			 */
			ereport(LOG, (errmsg("zoo collector restarting to apply new settings")));
			proc_exit(0);
#endif
			ProcessConfigFile(PGC_SIGHUP);
			zoo_progress_publish_naptime();
		}
	}
}

/* ------------------------------------------------------------------------
 * A job
 * ------------------------------------------------------------------------
 */
static void
zoo_job_detach(int code, Datum arg)
{
	int			slot = DatumGetInt32(arg);

	LWLockAcquire(zoo->lock, LW_EXCLUSIVE);
	if (zoo->job_pid[slot] == MyProcPid)
		zoo->job_pid[slot] = 0;
	LWLockRelease(zoo->lock);
}

/* Is this job still wanted: its request unchanged, its slot still in it? */
static bool
zoo_job_wanted(int slot, uint32 generation)
{
	bool		wanted;

	LWLockAcquire(zoo->lock, LW_SHARED);
	wanted = zoo->generation == generation && slot < zoo->njobs;
	LWLockRelease(zoo->lock);
	return wanted;
}

void
zoo_job_main(Datum main_arg)
{
	int			slot = DatumGetInt32(main_arg);
	ZooJobArgs	args;
	bool		claimed;
#ifdef ZOO_DEFECT_DEAF
	int			i;
#endif
#ifdef ZOO_DEFECT_ORPHAN
	int			naps;
#endif

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));

	pqsignal(SIGTERM, die);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(args.dbname, NULL, 0);

	/* hold the slot, unless the request changed or another job holds it */
	LWLockAcquire(zoo->lock, LW_EXCLUSIVE);
	claimed = slot >= 0 && slot < zoo->njobs &&
		zoo->generation == args.generation && zoo->job_pid[slot] == 0;
	if (claimed)
		zoo->job_pid[slot] = MyProcPid;
	LWLockRelease(zoo->lock);
	if (!claimed)
		proc_exit(0);
	before_shmem_exit(zoo_job_detach, Int32GetDatum(slot));

#ifdef ZOO_DEFECT_DEAF
	/*
	 * Defect: a long wait deaf to SIGTERM.  It sleeps without
	 * CHECK_FOR_INTERRUPTS(), minding only postmaster death, so a fast or
	 * smart shutdown and DROP DATABASE ... WITH (FORCE) wait for it.
	 */
	for (i = 0; i < ZOO_DEAF_WAIT_S * 10; i++)
	{
		pg_usleep(100 * 1000L);
		if (!PostmasterIsAlive())
			proc_exit(1);
	}
#endif

	for (;;)
	{
#ifdef ZOO_DEFECT_ORPHAN
		/*
		 * Defect: the wait polls its SIGTERM flag only, no latch and no
		 * postmaster-death check: the job outlives a postmaster killed by
		 * SIGKILL and holds its shared memory (pgrx #1938, neon #10726).
		 */
		for (naps = 0; naps < 10 && !ProcDiePending; naps++)
			pg_usleep(100 * 1000L);
#else
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ZOO_NAPTIME_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
#endif
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (!zoo_job_wanted(slot, args.generation))
			proc_exit(0);
	}
}

/* ------------------------------------------------------------------------
 * SQL functions
 * ------------------------------------------------------------------------
 */
static void
zoo_check_loaded(void)
{
	if (zoo == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s is not loaded", ZOO_LIBRARY),
				 errhint("Add %s to shared_preload_libraries and restart the server.",
						 ZOO_LIBRARY)));
}

/* zoo_start(db text, n int): keep n jobs running in database db. */
Datum
zoo_start(PG_FUNCTION_ARGS)
{
	char	   *dbname;
	int32		njobs;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("database name and job count must not be null")));
	dbname = text_to_cstring(PG_GETARG_TEXT_PP(0));
	njobs = PG_GETARG_INT32(1);

	zoo_check_loaded();
	if (njobs < 0 || njobs > ZOO_MAX_JOBS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("job count must be between 0 and %d", ZOO_MAX_JOBS)));
	if (strlen(dbname) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("database name \"%s\" is too long", dbname)));
	/* an error (3D000) for a database that does not exist */
	(void) get_database_oid(dbname, false);

	zoo_set_request(dbname, njobs);
	PG_RETURN_VOID();
}

/* zoo_stop(): no jobs. */
Datum
zoo_stop(PG_FUNCTION_ARGS)
{
	zoo_check_loaded();
	zoo_set_request("", 0);
	PG_RETURN_VOID();
}
