/*
 * bgwc_slow.c
 *		A minimal background worker restarted only 60 s after it exits, for the
 *		tests of bgw-conformance init: one static worker that waits on its latch,
 *		exits with code 1 when terminated (core's SIGTERM handler) and with the
 *		postmaster, and has a bgw_restart_time of 60 s.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"

PG_MODULE_MAGIC;

void		_PG_init(void);
PGDLLEXPORT void bgwc_slow_main(Datum arg);

void
bgwc_slow_main(Datum arg)
{
	BackgroundWorkerUnblockSignals();
	for (;;)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

void
_PG_init(void)
{
	BackgroundWorker worker;

	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bgwc_slow must be loaded via shared_preload_libraries")));

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 60;
	snprintf(worker.bgw_library_name, sizeof(worker.bgw_library_name), "bgwc_slow");
	snprintf(worker.bgw_function_name, sizeof(worker.bgw_function_name), "bgwc_slow_main");
	snprintf(worker.bgw_name, sizeof(worker.bgw_name), "bgwc_slow worker");
	snprintf(worker.bgw_type, sizeof(worker.bgw_type), "bgwc_slow worker");
	RegisterBackgroundWorker(&worker);
}
