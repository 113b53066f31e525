/* zoo_rest_crash: the launcher errors out while the collector never started (no slot for it): restarted for ever (citus #3798). */
#define ZOO_LIBRARY "zoo_rest_crash"
#define ZOO_DEFECT_REST_CRASH
#include "zoo_citizen.c"
