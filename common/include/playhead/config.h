/*
 * Options: one table per program drives parsing of flags (--name=value or --name value),
 * PLAYHEAD_<NAME> environment variables (flags win), --help and --version. librdkafka properties
 * pass through with -X key=value or PLAYHEAD_KAFKA_<KEY> (dots as underscores).
 *
 * The options several programs share (listen, threads, max-body, auth, jwt-secret-file,
 * cors-origins, log-level, redis) are rows of one table here, ph_shared_options (options.c); a
 * program's table takes one with PH_OPTION_SHARED, giving only where it goes and, when it differs,
 * its default (as nginx modules add their own ngx_command_t rows to the core's).
 */
#ifndef PLAYHEAD_CONFIG_H
#define PLAYHEAD_CONFIG_H

#include <stddef.h>

/* Checks a string value (Redis isValidFn): returns 0, or -1 with `why` saying what the value
 * should be ("is not host:port (port 1..65535)"); the parser adds the option's name, where the
 * value came from and the value. Pure; any thread. */
typedef int (*ph_option_valid_fn)(const char *value, char *why, size_t why_size);

typedef enum {
    PH_OPT_KIND_STR,   /* const char *, checked by `valid` when set */
    PH_OPT_KIND_INT,   /* long long in min..max */
    PH_OPT_KIND_BOOL,  /* int 0/1 */
    PH_OPT_KIND_ENUM,  /* int: the index of the value in `names` (Redis createEnumConfig) */
    PH_OPT_KIND_SHARED /* the row of ph_shared_options with this name (PH_OPTION_SHARED) */
} ph_opt_kind_t;

/* An option's type: its kind, and for an enum its allowed names, for a string its validator. */
typedef struct ph_opt_type_s {
    ph_opt_kind_t kind;
    const char *const *names; /* PH_OPT_KIND_ENUM: the allowed values, NULL-terminated */
    ph_option_valid_fn valid; /* PH_OPT_KIND_STR: NULL, or checked on every value, the default included */
} ph_opt_type_t;

extern const ph_opt_type_t ph_opt_str, ph_opt_int, ph_opt_bool, ph_opt_shared;
#define PH_OPT_STR (&ph_opt_str)
#define PH_OPT_INT (&ph_opt_int)
#define PH_OPT_BOOL (&ph_opt_bool)
#define PH_OPT_SHARED (&ph_opt_shared)
/* one of `names` (a NULL-terminated array of strings) */
#define PH_OPT_ENUM(names) (&(const ph_opt_type_t){PH_OPT_KIND_ENUM, (names), NULL})
/* a string that `fn` (ph_option_valid_fn) accepts */
#define PH_OPT_VALID(fn) (&(const ph_opt_type_t){PH_OPT_KIND_STR, NULL, (fn)})

typedef struct ph_option_s {
    const char *name; /* "listen": flag --listen, env PLAYHEAD_LISTEN */
    const ph_opt_type_t *type;
    const char *defval; /* text form of the default; PH_OPT_SHARED: NULL for the shared row's */
    long long min, max; /* PH_OPT_INT range, inclusive */
    size_t offset;      /* into the program's config struct: char * / long long / int */
    const char *help;
} ph_option_t;

#define PH_OPTIONS_END                                                                                                             \
    {                                                                                                                              \
        NULL, PH_OPT_STR, NULL, 0, 0, 0, NULL                                                                                      \
    }

/* A program's row taking the shared option `name` into `member` of `type`, with the default
 * `defval` (NULL: the shared row's). Type, range, help and validator are the shared row's. */
#define PH_OPTION_SHARED(name, defval, type, member)                                                                               \
    {                                                                                                                              \
        name, PH_OPT_SHARED, defval, 0, 0, offsetof(type, member), NULL                                                            \
    }

/* The shared rows (options.c), terminated by PH_OPTIONS_END; their offsets mean nothing. */
extern const ph_option_t ph_shared_options[];

/* A validator's verdict: 0 when `ok`, else -1 with `reason` copied into why. */
int ph_option_check(int ok, char *why, size_t why_size, const char *reason);

/* The validators of the shared rows, for programs' own rows too. */
int ph_option_valid_hostport(const char *value, char *why, size_t why_size);          /* host:port, port 1..65535 */
int ph_option_valid_hostport_or_empty(const char *value, char *why, size_t why_size); /* same, or "" (disabled) */
int ph_option_valid_nonempty(const char *value, char *why, size_t why_size);          /* anything but "" */
int ph_option_valid_redis_url(const char *value, char *why, size_t why_size);         /* redis://... or redis+cluster://... */

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
