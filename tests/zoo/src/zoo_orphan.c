/* zoo_orphan: a job ignores postmaster death and outlives a killed postmaster (pgrx #1938, neon #10726). */
#define ZOO_LIBRARY "zoo_orphan"
#define ZOO_DEFECT_ORPHAN
#include "zoo_citizen.c"
