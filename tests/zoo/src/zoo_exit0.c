/* zoo_exit0: the collector exits with code 0 on SIGTERM and is never restarted (pg_cron #188, #99). */
#define ZOO_LIBRARY "zoo_exit0"
#define ZOO_DEFECT_EXIT0
#include "zoo_citizen.c"
