/* zoo_no_adopt: a restarted launcher does not adopt the running jobs: it starts new ones beside them (timescaledb, citus PR #4222). */
#define ZOO_LIBRARY "zoo_no_adopt"
#define ZOO_DEFECT_NO_ADOPT
#include "zoo_citizen.c"
