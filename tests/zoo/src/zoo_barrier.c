/* zoo_barrier: the launcher waits without CHECK_FOR_INTERRUPTS, so DROP DATABASE waits on its ProcSignalBarrier (pg_cron #318, pg_net #78). */
#define ZOO_LIBRARY "zoo_barrier"
#define ZOO_DEFECT_BARRIER
#include "zoo_citizen.c"
