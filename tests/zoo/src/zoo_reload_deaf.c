/* zoo_reload_deaf: the collector's SIGHUP handler sets a flag nothing reads: a reload never takes effect (gp_relsizes_stats #32). */
#define ZOO_LIBRARY "zoo_reload_deaf"
#define ZOO_DEFECT_RELOAD_DEAF
#include "zoo_citizen.c"
