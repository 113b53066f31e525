/* zoo_reload_exit: the collector exits with code 0 on a configuration reload and is never restarted (pgvecto.rs #387). */
#define ZOO_LIBRARY "zoo_reload_exit"
#define ZOO_DEFECT_RELOAD_EXIT
#include "zoo_citizen.c"
