/* zoo_sync_hold: the launcher's commits wait for a synchronous standby that is gone, deaf to SIGTERM (pg_cron PR #414). */
#define ZOO_LIBRARY "zoo_sync_hold"
#define ZOO_DEFECT_SYNC_HOLD
#include "zoo_citizen.c"
