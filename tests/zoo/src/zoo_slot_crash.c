/* zoo_slot_crash: the launcher errors out when no slot is free: a crash loop that floods the log (timescaledb, pg_partman #180). */
#define ZOO_LIBRARY "zoo_slot_crash"
#define ZOO_DEFECT_SLOT_CRASH
#include "zoo_citizen.c"
