/*
 * Options: one table per program drives parsing of flags (--name=value or --name value),
 * PLAYHEAD_<NAME> environment variables (flags win), --help and --version. librdkafka properties
 * pass through with -X key=value or PLAYHEAD_KAFKA_<KEY> (dots as underscores).
 */
#ifndef PLAYHEAD_CONFIG_H
#define PLAYHEAD_CONFIG_H

#include <stddef.h>

typedef enum { PH_OPT_STR, PH_OPT_INT, PH_OPT_BOOL } ph_opt_type_t;

typedef struct ph_option_s {
    const char *name; /* "listen": flag --listen, env PLAYHEAD_LISTEN */
    ph_opt_type_t type;
    const char *defval; /* text form of the default */
    long long min, max; /* PH_OPT_INT range, inclusive */
    size_t offset;      /* into the program's config struct: char * / long long / int */
    const char *help;
} ph_option_t;

#define PH_OPTIONS_END                                                                                                             \
    {                                                                                                                              \
        NULL, PH_OPT_STR, NULL, 0, 0, 0, NULL                                                                                      \
    }

#define PH_KAFKA_PROPS_MAX 64
typedef struct ph_kafka_props_s {
    size_t count;
    const char *keys[PH_KAFKA_PROPS_MAX];
    const char *values[PH_KAFKA_PROPS_MAX];
} ph_kafka_props_t;

typedef enum { PH_CONFIG_OK = 0, PH_CONFIG_EXIT = 1, PH_CONFIG_ERROR = -1 } ph_config_result_t;

/* Fills `cfg` from defaults, then the environment, then argv. `kafka_props` may be NULL when the
 * program has no Kafka client (then -X is refused). Strings stored into cfg point into argv,
 * environ or the table's defaults (never freed). Returns PH_CONFIG_EXIT after printing --help or
 * --version, PH_CONFIG_ERROR with errstr naming the option and the reason. */
ph_config_result_t ph_config_parse(const ph_option_t *opts, void *cfg, ph_kafka_props_t *kafka_props, int argc, char **argv,
                                   const char *prog, const char *summary, char *errstr, size_t errstr_size);

/* Splits "host:port" (port 1..65535). host is written into host_buf. Returns 0 or -1. */
int ph_parse_hostport(const char *s, char *host_buf, size_t host_cap, int *port);

#endif
