/* zoo_config_fatal: once zoo.database is dropped the launcher FATALs at connect every second for ever (pg_cron, pg_partman_bgw). */
#define ZOO_LIBRARY "zoo_config_fatal"
#define ZOO_DEFECT_CONFIG_FATAL
#include "zoo_citizen.c"
