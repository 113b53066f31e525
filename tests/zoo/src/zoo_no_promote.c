/* zoo_no_promote: the launcher also starts on a hot standby and exits 0 there: never started after promotion (pgnats #25). */
#define ZOO_LIBRARY "zoo_no_promote"
#define ZOO_DEFECT_NO_PROMOTE
#include "zoo_citizen.c"
