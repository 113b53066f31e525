/* zoo_fork_wedge: a job whose start failed to fork stays "starting" for ever (pg_lake PR #570). */
#define ZOO_LIBRARY "zoo_fork_wedge"
#define ZOO_DEFECT_FORK_WEDGE
#include "zoo_citizen.c"
