/*-------------------------------------------------------------------------
 *
 * dbcommands.c
 *		Stop the pool's workers attached to a database that a command is
 *		about to drop, rename, move to another tablespace or copy as a
 *		template.
 *
 * NOTES
 *		Those commands refuse to run while other processes are connected to
 *		the database: core waits 5 s for them to leave, then fails with
 *		55006 (CountOtherDBBackends).  19 can terminate background workers
 *		for them (BGWORKER_INTERRUPTIBLE), but for anyone who may run the
 *		command, so bgw_pool's workers do not declare it (compat.h): on every
 *		major a utility hook asks the launcher to stop each job in that
 *		database, exactly as terminate() does, and waits up to
 *		DBCOMMAND_WAIT_MS for their workers to exit.  Their exit cleanup
 *		frees the slots, so nothing leaks; a worker still starting fails to
 *		connect to a dropped database, and the launcher frees its slot.
 *
 *		The hook stops jobs only for a command that will get past core's own
 *		checks of existence and permission (it makes them first: the
 *		command's target and the caller's ownership, CREATEDB where core
 *		asks for it, the tablespace and its CREATE privilege, the new name),
 *		so a command bound to fail on those stops nothing.  And it follows
 *		core's rule for whom a session may terminate
 *		(TerminateOtherDBBackends, used by DROP DATABASE WITH (FORCE)): a
 *		superuser's job only for a superuser, any other only for a role with
 *		the privileges of the job's role or of pg_signal_backend.  When one
 *		job in the database may not be stopped, none is, and core's own wait
 *		then reports the database in use, as it would without the pool.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_database.h"
#include "catalog/pg_subscription.h"
#include "catalog/pg_tablespace.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/tablespace.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "replication/slot.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "pool.h"

/* as long as core itself waits for other sessions to leave a database */
#define DBCOMMAND_WAIT_MS 5000

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* What a statement does to a database that other sessions must leave. */
typedef struct DbCommand
{
	const char *name;			/* for messages */
	const char *dbname;			/* the database it needs to itself */
	bool		toplevel_only;	/* refused in a transaction block */
	const char *newname;		/* RENAME TO, CREATE DATABASE: the new name */
	const char *tablespace;		/* SET TABLESPACE: the tablespace */
	bool		copy;			/* CREATE DATABASE ... TEMPLATE */
} DbCommand;

/* Fill in 'cmd' for a statement that needs a database to itself; false for any other. */
static bool
exclusive_database(Node *parsetree, DbCommand *cmd)
{
	ListCell   *lc;

	memset(cmd, 0, sizeof(DbCommand));
	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			cmd->name = "DROP DATABASE";
			cmd->toplevel_only = true;
			cmd->dbname = ((DropdbStmt *) parsetree)->dbname;
			return true;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType != OBJECT_DATABASE)
				return false;
			cmd->name = "ALTER DATABASE RENAME";
			cmd->dbname = ((RenameStmt *) parsetree)->subname;
			cmd->newname = ((RenameStmt *) parsetree)->newname;
			return true;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) parsetree)->options)
			{
				DefElem    *option = (DefElem *) lfirst(lc);

				if (strcmp(option->defname, "tablespace") == 0)
				{
					cmd->name = "ALTER DATABASE SET TABLESPACE";
					cmd->toplevel_only = true;
					cmd->dbname = ((AlterDatabaseStmt *) parsetree)->dbname;
					cmd->tablespace = defGetString(option);
					return true;
				}
			}
			return false;
		case T_CreatedbStmt:
			/* every CREATE DATABASE copies a template: template1 by default */
			cmd->name = "CREATE DATABASE";
			cmd->dbname = "template1";
			cmd->newname = ((CreatedbStmt *) parsetree)->dbname;
			cmd->copy = true;
			foreach(lc, ((CreatedbStmt *) parsetree)->options)
			{
				DefElem    *option = (DefElem *) lfirst(lc);

				if (strcmp(option->defname, "template") == 0 && option->arg != NULL)
					cmd->dbname = defGetString(option);
			}
			return true;
		default:
			return false;
	}
}

/* Whether the current user has CREATEDB (a superuser has). */
static bool
may_create_databases(void)
{
	HeapTuple	tup;
	bool		result;

	if (superuser())
		return true;
	tup = SearchSysCache1(AUTHOID, ObjectIdGetDatum(GetUserId()));
	if (!HeapTupleIsValid(tup))
		return false;
	result = ((Form_pg_authid) GETSTRUCT(tup))->rolcreatedb;
	ReleaseSysCache(tup);
	return result;
}

/*
 * Whether 'cmd' on 'dboid' gets past core's checks of existence and
 * permission, and so reaches core's wait for other sessions to leave.
 * Only the database's owner stops jobs: copying a template that its
 * owner opened to all needs no ownership, and stops nothing.
 */
static bool
passes_core_checks(const DbCommand *cmd, Oid dboid)
{
	HeapTuple	tup;
	Form_pg_database db;
	bool		istemplate;
	Oid			spcoid;

	if (dboid == MyDatabaseId || !BGWP_DATABASE_OWNERCHECK(dboid, GetUserId()))
		return false;
	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
	if (!HeapTupleIsValid(tup))
		return false;
	db = (Form_pg_database) GETSTRUCT(tup);
	istemplate = db->datistemplate;
	spcoid = db->dattablespace;
	ReleaseSysCache(tup);

	if (cmd->newname != NULL && OidIsValid(get_database_oid(cmd->newname, true)))
		return false;			/* the new name is taken */
	if (cmd->copy)
		return may_create_databases();
	if (cmd->newname != NULL)	/* RENAME needs CREATEDB too */
		return may_create_databases();
	if (cmd->tablespace != NULL)
	{
		Oid			dest = get_tablespace_oid(cmd->tablespace, true);

		/* a move to where it is already is done without waiting for anyone */
		return OidIsValid(dest) && dest != spcoid && dest != GLOBALTABLESPACE_OID &&
			BGWP_TABLESPACE_ACLCHECK(dest, GetUserId(), ACL_CREATE) == ACLCHECK_OK;
	}
	/* DROP DATABASE */
	{
		int			nslots,
					nactive;

		if (istemplate || CountDBSubscriptions(dboid) > 0)
			return false;
		(void) ReplicationSlotsCountDBSlots(dboid, &nslots, &nactive);
		return nslots == 0;
	}
}

/* A job in the database, as copied from its slot. */
typedef struct DbJob
{
	int			id;
	uint64		generation;
	Oid			role;
} DbJob;

/*
 * Ask the launcher to stop every job in 'dboid', if the current user may
 * stop each of them; the number of those whose worker is registered (the
 * ones that may be connected).  Privileges are checked outside the pool
 * lock, on a copy; a job that ended meanwhile needs no stop.
 */
static int
stop_jobs_in(Oid dboid)
{
	DbJob	   *jobs = palloc(sizeof(DbJob) * BgwPool->capacity);
	int			njobs = 0;
	int			registered = 0;

	LWLockAcquire(BgwPool->lock, LW_SHARED);
	for (int i = 0; i < BgwPool->capacity; i++)
	{
		PoolSlot   *slot = &BgwPool->slots[i];

		if (slot->state == SLOT_FREE || slot->dboid != dboid)
			continue;
		jobs[njobs].id = i;
		jobs[njobs].generation = slot->generation;
		jobs[njobs].role = slot->userid;
		njobs++;
	}
	LWLockRelease(BgwPool->lock);

	for (int j = 0; j < njobs; j++)
		if (!pool_may_stop(jobs[j].role))
			return 0;			/* as core: all or none */
	if (njobs == 0)
		return 0;

	LWLockAcquire(BgwPool->lock, LW_EXCLUSIVE);
	for (int j = 0; j < njobs; j++)
	{
		PoolSlot   *slot = pool_slot_if_current(jobs[j].id, jobs[j].generation);

		if (slot == NULL)
			continue;
		pool_request_stop(slot);
		if (slot->registered)
			registered++;
	}
	LWLockRelease(BgwPool->lock);
	pool_wake_launcher();
	return registered;
}

/* Whether a registered worker of a job in 'dboid' still holds its slot. */
static bool
jobs_remain_in(Oid dboid)
{
	bool		remain = false;

	LWLockAcquire(BgwPool->lock, LW_SHARED);
	for (int i = 0; i < BgwPool->capacity && !remain; i++)
	{
		PoolSlot   *slot = &BgwPool->slots[i];

		remain = slot->state != SLOT_FREE && slot->dboid == dboid && slot->registered;
	}
	LWLockRelease(BgwPool->lock);
	return remain;
}

static void
bgw_pool_ProcessUtility(BGWP_UTILITY_PARAMS)
{
	DbCommand	cmd;
	Oid			dboid = InvalidOid;

	if (exclusive_database(pstmt->utilityStmt, &cmd))
		dboid = get_database_oid(cmd.dbname, true);

	/*
	 * DROP DATABASE and SET TABLESPACE cannot run in a transaction block:
	 * say so before stopping anything, as core would after.
	 */
	if (OidIsValid(dboid) && cmd.toplevel_only)
		PreventInTransactionBlock(context == PROCESS_UTILITY_TOPLEVEL, cmd.name);

	if (OidIsValid(dboid) && passes_core_checks(&cmd, dboid))
	{
		int			stopped = stop_jobs_in(dboid);

		if (stopped > 0)
		{
			TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															   DBCOMMAND_WAIT_MS);

			ereport(LOG,
					(errmsg_plural("bgw_pool: stopping %d job in database \"%s\" for %s",
								   "bgw_pool: stopping %d jobs in database \"%s\" for %s",
								   stopped, stopped, cmd.dbname, cmd.name)));
			ConditionVariablePrepareToSleep(&BgwPool->cv);
			while (jobs_remain_in(dboid))
			{
				long		remaining = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
																		deadline);

				if (remaining <= 0)
					break;		/* core's own wait then reports who is left */
				(void) ConditionVariableTimedSleep(&BgwPool->cv, Min(remaining, 100L),
												   BGWP_WAIT_EVENT);
			}
			ConditionVariableCancelSleep();
		}
	}

	if (prev_ProcessUtility)
		prev_ProcessUtility(BGWP_UTILITY_ARGS);
	else
		standard_ProcessUtility(BGWP_UTILITY_ARGS);
}

void
pool_install_dbcommand_hook(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = bgw_pool_ProcessUtility;
}
