/* zoo_stalled: the collector, once restarted after a termination, runs but never works again (pg_net PR #211). */
#define ZOO_LIBRARY "zoo_stalled"
#define ZOO_DEFECT_STALLED
#include "zoo_citizen.c"
