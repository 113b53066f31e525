/*-------------------------------------------------------------------------
 *
 * bgw_pool.c
 *		Module loading: GUCs, shared memory requests, the launcher's
 *		registration.
 *
 * NOTES
 *		bgw_pool only works from shared_preload_libraries: the pool lives in
 *		shared memory sized at postmaster start, and the launcher is a static
 *		background worker.  Loaded any other way, _PG_init raises an error.
 *
 *-------------------------------------------------------------------------
 */
#include "compat.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"

#include "pause.h"
#include "pool.h"

BGWP_MODULE_MAGIC;

void		_PG_init(void);

int			bgw_pool_max_workers = 8;
int			bgw_pool_launcher_restart_s = 1;
int			bgw_pool_startup_timeout_ms = 10000;
bool		bgw_pool_pause_points_enabled = false;

static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

#ifdef BGWP_HAVE_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif

static void
bgw_pool_request_shmem(void)
{
	RequestAddinShmemSpace(add_size(pool_shmem_size(), pause_shmem_size()));
	RequestNamedLWLockTranche("bgw_pool", 1);
}

#ifdef BGWP_HAVE_SHMEM_REQUEST_HOOK
static void
bgw_pool_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	bgw_pool_request_shmem();
}
#endif

static void
bgw_pool_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	pool_shmem_init();
	pause_shmem_init();
}

static void
register_launcher(void)
{
	BackgroundWorker worker;

	pool_init_worker(&worker, BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION,
					 bgw_pool_launcher_restart_s, "bgw_pool_launcher_main", "bgw_pool launcher");
	RegisterBackgroundWorker(&worker);
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bgw_pool must be loaded via shared_preload_libraries"),
				 errhint("Add bgw_pool to shared_preload_libraries and restart the server.")));

	DefineCustomIntVariable("bgw_pool.max_workers",
							"Number of worker slots in the pool.",
							"Each running worker also needs a slot of max_worker_processes.",
							&bgw_pool_max_workers,
							8, 1, 256,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("bgw_pool.launcher_restart_s",
							"Seconds before the postmaster restarts an exited launcher.",
							NULL,
							&bgw_pool_launcher_restart_s,
							1, 1, 3600,
							PGC_POSTMASTER, GUC_UNIT_S,
							NULL, NULL, NULL);
	DefineCustomIntVariable("bgw_pool.startup_timeout_ms",
							"How long a submit waits for its worker to start.",
							NULL,
							&bgw_pool_startup_timeout_ms,
							10000, 100, 600000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomBoolVariable("bgw_pool.pause_points",
							 "Lets a superuser arm the pool's pause points (test servers only).",
							 "An armed point holds every process that reaches it, shutdown included.",
							 &bgw_pool_pause_points_enabled,
							 false,
							 PGC_POSTMASTER, 0,
							 NULL, NULL, NULL);
	BGWP_RESERVE_GUC_PREFIX("bgw_pool");

#ifdef BGWP_HAVE_SHMEM_REQUEST_HOOK
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = bgw_pool_shmem_request;
#else
	bgw_pool_request_shmem();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = bgw_pool_shmem_startup;
	pool_install_dbcommand_hook();

	register_launcher();
}
