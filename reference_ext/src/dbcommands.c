/*-------------------------------------------------------------------------
 *
 * dbcommands.c
 *		Before PostgreSQL 19: stop the pool's workers attached to a database
 *		that a command is about to drop, rename, move to another tablespace
 *		or copy as a template.
 *
 * NOTES
 *		Those commands refuse to run while other processes are connected to
 *		the database: core waits 5 s for them to leave, then fails with
 *		55006 (CountOtherDBBackends).  From 19 on, core terminates the
 *		background workers that declare BGWORKER_INTERRUPTIBLE, as bgw_pool's
 *		do (compat.h), and this file is not built in.  Before 19 a utility
 *		hook does the same for the pool's own workers: it asks the launcher
 *		to stop each job in that database, exactly as terminate() does, and
 *		waits up to DBCOMMAND_WAIT_MS for their workers to exit.  Their exit
 *		cleanup frees the slots, so nothing leaks; a worker still starting
 *		fails to connect to a dropped database and frees its slot the same
 *		way.
 *
 *		Only the database's owner (or a superuser) stops jobs this way: every
 *		one of these commands needs that ownership, except copying a template
 *		that its owner has opened to all, which therefore stops nothing.  The
 *		check comes first, so a command bound to fail on permissions never
 *		stops a job.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/timestamp.h"

#include "pool.h"

#ifndef BGWP_CORE_TERMINATES_FOR_DATABASE

/* as long as core itself waits for other sessions to leave a database */
#define DBCOMMAND_WAIT_MS 5000

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/*
 * The database a statement needs to itself, the command's name, and whether
 * the command refuses to run in a transaction block; NULL for every other
 * statement.
 */
static const char *
exclusive_database(Node *parsetree, const char **command, bool *toplevel_only)
{
	ListCell   *lc;

	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			*command = "DROP DATABASE";
			*toplevel_only = true;
			return ((DropdbStmt *) parsetree)->dbname;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType != OBJECT_DATABASE)
				return NULL;
			*command = "ALTER DATABASE RENAME";
			return ((RenameStmt *) parsetree)->subname;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) parsetree)->options)
			{
				if (strcmp(((DefElem *) lfirst(lc))->defname, "tablespace") == 0)
				{
					*command = "ALTER DATABASE SET TABLESPACE";
					*toplevel_only = true;
					return ((AlterDatabaseStmt *) parsetree)->dbname;
				}
			}
			return NULL;
		case T_CreatedbStmt:
			foreach(lc, ((CreatedbStmt *) parsetree)->options)
			{
				DefElem    *option = (DefElem *) lfirst(lc);

				if (strcmp(option->defname, "template") == 0 && option->arg != NULL)
				{
					*command = "CREATE DATABASE";
					return defGetString(option);
				}
			}
			return NULL;
		default:
			return NULL;
	}
}

/*
 * Ask the launcher to stop every job in 'dboid'; the number of slots whose
 * worker is registered, which are the ones that may be connected.
 */
static int
stop_jobs_in(Oid dboid)
{
	int			registered = 0;
	bool		any = false;

	LWLockAcquire(BgwPool->lock, LW_EXCLUSIVE);
	for (int i = 0; i < BgwPool->capacity; i++)
	{
		PoolSlot   *slot = &BgwPool->slots[i];

		if (slot->state == SLOT_FREE || slot->dboid != dboid)
			continue;
		pool_request_stop(slot);
		any = true;
		if (slot->registered)
			registered++;
	}
	LWLockRelease(BgwPool->lock);
	if (any)
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
	const char *command = NULL;
	bool		toplevel_only = false;
	const char *dbname = exclusive_database(pstmt->utilityStmt, &command, &toplevel_only);
	Oid			dboid = dbname ? get_database_oid(dbname, true) : InvalidOid;

	/*
	 * DROP DATABASE and SET TABLESPACE cannot run in a transaction block:
	 * say so before stopping anything, as core would after.
	 */
	if (OidIsValid(dboid) && toplevel_only)
		PreventInTransactionBlock(context == PROCESS_UTILITY_TOPLEVEL, command);

	if (OidIsValid(dboid) && dboid != MyDatabaseId &&
		BGWP_DATABASE_OWNERCHECK(dboid, GetUserId()))
	{
		int			stopped = stop_jobs_in(dboid);

		if (stopped > 0)
		{
			TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															   DBCOMMAND_WAIT_MS);

			ereport(LOG,
					(errmsg_plural("bgw_pool: stopping %d job in database \"%s\" for %s",
								   "bgw_pool: stopping %d jobs in database \"%s\" for %s",
								   stopped, stopped, dbname, command)));
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

#else							/* BGWP_CORE_TERMINATES_FOR_DATABASE */

void
pool_install_dbcommand_hook(void)
{
	/* core terminates the workers, which declare BGWORKER_INTERRUPTIBLE */
}

#endif
