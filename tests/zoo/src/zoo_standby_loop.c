/* zoo_standby_loop: the launcher also starts on a hot standby and takes a transaction id there: a crash loop (citus #3144). */
#define ZOO_LIBRARY "zoo_standby_loop"
#define ZOO_DEFECT_STANDBY_LOOP
#include "zoo_citizen.c"
