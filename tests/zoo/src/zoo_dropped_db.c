/* zoo_dropped_db: the launcher retries a dropped database every second for ever (pg_cron, omnigres #727). */
#define ZOO_LIBRARY "zoo_dropped_db"
#define ZOO_DEFECT_DROPPED_DB
#include "zoo_citizen.c"
