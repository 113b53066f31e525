/* zoo_never_restart: the launcher is BGW_NEVER_RESTART, forgotten at a crash-restart (pg_cron #12). */
#define ZOO_LIBRARY "zoo_never_restart"
#define ZOO_DEFECT_NEVER_RESTART
#include "zoo_citizen.c"
