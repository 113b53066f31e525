/* zoo_slot_giveup: the launcher gives up on its jobs for good when a registration finds no slot (pg_partman #180). */
#define ZOO_LIBRARY "zoo_slot_giveup"
#define ZOO_DEFECT_SLOT_GIVEUP
#include "zoo_citizen.c"
