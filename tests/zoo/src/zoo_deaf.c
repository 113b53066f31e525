/* zoo_deaf: a job ignores SIGTERM in a long wait and holds shutdown and DROP DATABASE (pg_cron PR #414). */
#define ZOO_LIBRARY "zoo_deaf"
#define ZOO_DEFECT_DEAF
#include "zoo_citizen.c"
