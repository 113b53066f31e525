/* zoo_spin: the launcher retries a registration in a busy loop while no slot is free (pg_cron, notes/pg_cron.md). */
#define ZOO_LIBRARY "zoo_spin"
#define ZOO_DEFECT_SPIN
#include "zoo_citizen.c"
