/*-------------------------------------------------------------------------
 *
 * pause.h
 *		Named pause points: a process that reaches an armed point waits there
 *		until the point is released.
 *
 * NOTES
 *		They stand at every step of the submit -> launcher -> worker
 *		handshake, so that a test can stop one process in a window, act on
 *		it (terminate the launcher, signal the worker, drop its database,
 *		cancel the submitter) and release it: the race becomes deterministic.
 *		Core's injection points exist only in builds configured with them;
 *		these work in every build, but only on a server started with
 *		bgw_pool.pause_points = on, a setting for test servers: an armed
 *		point holds whoever reaches it, and the first one does so with
 *		signals still blocked, so it holds a shutdown too.  With the setting
 *		off (the default) no point can be armed and none ever waits.  Only a
 *		superuser arms them (bgw_pool.pause_arm); when none is armed a point
 *		costs one atomic read.  A waiting process is listed by
 *		bgw_pool.pause_points() and, but at that first point, still answers
 *		SIGTERM, cancel and postmaster death.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BGW_POOL_PAUSE_H
#define BGW_POOL_PAUSE_H

#include "compat.h"

typedef enum PausePoint
{
	PAUSE_WORKER_BEFORE_EXIT_HOOK = 0,	/* forked; no exit cleanup yet */
	PAUSE_WORKER_BEFORE_CONNECT,	/* job read; signals unblocked */
	PAUSE_WORKER_BEFORE_ATTACH, /* connected; not attached */
	PAUSE_LAUNCHER_BEFORE_REGISTER, /* slot chosen; not registered */
	PAUSE_LAUNCHER_STARTUP_WAIT,	/* registered; startup not awaited */
	PAUSE_LAUNCHER_BEFORE_REAP, /* woken; handles not read */
	PAUSE_SUBMIT_DEADLINE,		/* the submitter's deadline has passed */
	NUM_PAUSE_POINTS
} PausePoint;

/* how many processes can wait at one point at once */
#define PAUSE_MAX_WAITERS 8

extern bool bgw_pool_pause_points_enabled;

extern Size pause_shmem_size(void);
extern void pause_shmem_init(void);
extern void pool_pause(PausePoint point);
extern const char *pause_point_name(PausePoint point);
extern bool pause_point_from_name(const char *name, PausePoint *point);

#endif							/* BGW_POOL_PAUSE_H */
