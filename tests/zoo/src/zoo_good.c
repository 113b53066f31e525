/* zoo_good: the good citizen, with no defect: every clause passes. */
#define ZOO_LIBRARY "zoo_good"
#include "zoo_citizen.c"
