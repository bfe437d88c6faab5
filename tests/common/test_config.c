/*
 * Unit tests of common/src/config.c (table-driven options: defaults, PLAYHEAD_* variables, flags,
 * -X Kafka properties, --help) and of the address parsers ph_parse_hostport and
 * ph_redis_url_parse (common/src/redis_.c).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include "playhead/config.h"
#include "playhead/log.h"
#include "playhead/redis_.h"

extern char **environ;

typedef struct test_config_s {
    const char *listen;
    long long workers;
    int verbose;
    const char *log_level;
    long long timeout_ms;
} test_config_t;

static const ph_option_t options[] = {
    {"listen", PH_OPT_STR, "127.0.0.1:8080", 0, 0, offsetof(test_config_t, listen), "HTTP listen address host:port"},
    {"workers", PH_OPT_INT, "4", 1, 64, offsetof(test_config_t, workers), "worker threads"},
    {"verbose", PH_OPT_BOOL, "false", 0, 0, offsetof(test_config_t, verbose), "log more"},
    {"log-level", PH_OPT_STR, "info", 0, 0, offsetof(test_config_t, log_level), "debug, info, warn or error"},
    {"timeout-ms", PH_OPT_INT, "1000", 0, 600000, offsetof(test_config_t, timeout_ms), "a timeout"},
    PH_OPTIONS_END,
};

static char errstr[256];

/* Every test starts from an environment without PLAYHEAD_* variables. */
static int clear_env(void **state)
{
    (void)state;
    for (;;) {
        char name[256] = "";
        for (char **e = environ; *e != NULL; ++e) {
            if (strncmp(*e, "PLAYHEAD_", 9) == 0) {
                size_t len = strcspn(*e, "=");
                if (len < sizeof(name)) {
                    memcpy(name, *e, len);
                    name[len] = '\0';
                    break;
                }
            }
        }
        if (name[0] == '\0')
            return 0;
        unsetenv(name);
    }
}

static void props_free(ph_kafka_props_t *props)
{
    for (size_t i = 0; i < props->count; ++i)
        free((char *)props->keys[i]); /* strndup'ed by ph_config_parse, never freed by it */
    props->count = 0;
}

/* argv is NULL-terminated, without the program name. */
static ph_config_result_t parse_argv(test_config_t *cfg, ph_kafka_props_t *props, char **args)
{
    char *argv[80] = {"prog"};
    int argc = 1;
    while (args != NULL && args[argc - 1] != NULL) {
        assert_true(argc < 79);
        argv[argc] = args[argc - 1];
        ++argc;
    }
    memset(cfg, 0x5A, sizeof(*cfg));
    errstr[0] = '\0';
    return ph_config_parse(options, cfg, props, argc, argv, "prog", "A test program.", errstr, sizeof(errstr));
}
#define PARSE(cfg, props, ...) parse_argv((cfg), (props), (char *[]){__VA_ARGS__, NULL})

/* Expects PH_CONFIG_ERROR with exactly `message`. */
#define assert_parse_error(expected_message, ...)                                                                                  \
    do {                                                                                                                           \
        test_config_t c_;                                                                                                          \
        ph_kafka_props_t p_ = {0};                                                                                                 \
        assert_int_equal(PARSE(&c_, &p_, __VA_ARGS__), PH_CONFIG_ERROR);                                                           \
        assert_string_equal(errstr, (expected_message));                                                                           \
        props_free(&p_);                                                                                                           \
    } while (0)

/* ---------------------------------------------------------------- options */

static void test_defaults(void **state)
{
    (void)state;
    test_config_t cfg;
    ph_kafka_props_t props = {.count = 7};
    assert_int_equal(parse_argv(&cfg, &props, NULL), PH_CONFIG_OK);
    assert_string_equal(cfg.listen, "127.0.0.1:8080");
    assert_int_equal(cfg.workers, 4);
    assert_int_equal(cfg.verbose, 0);
    assert_string_equal(cfg.log_level, "info");
    assert_int_equal(cfg.timeout_ms, 1000);
    assert_int_equal(props.count, 0);
    /* without a Kafka client too */
    assert_int_equal(parse_argv(&cfg, NULL, NULL), PH_CONFIG_OK);
    assert_int_equal(cfg.workers, 4);
}

static void test_env_overrides_default(void **state)
{
    (void)state;
    test_config_t cfg;
    setenv("PLAYHEAD_WORKERS", "8", 1);
    setenv("PLAYHEAD_LOG_LEVEL", "debug", 1); /* dashes become underscores */
    setenv("PLAYHEAD_VERBOSE", "yes", 1);
    setenv("PLAYHEAD_TIMEOUT_MS", "0", 1);
    setenv("PLAYHEAD_LISTEN_X", "ignored", 1);
    setenv("playhead_listen", "ignored", 1);
    assert_int_equal(parse_argv(&cfg, NULL, NULL), PH_CONFIG_OK);
    assert_int_equal(cfg.workers, 8);
    assert_string_equal(cfg.log_level, "debug");
    assert_int_equal(cfg.verbose, 1);
    assert_int_equal(cfg.timeout_ms, 0);
    assert_string_equal(cfg.listen, "127.0.0.1:8080");
    unsetenv("playhead_listen");
    /* an empty variable is a value, not an absence */
    setenv("PLAYHEAD_LISTEN", "", 1);
    assert_int_equal(parse_argv(&cfg, NULL, NULL), PH_CONFIG_OK);
    assert_string_equal(cfg.listen, "");
}

static void test_flag_overrides_env(void **state)
{
    (void)state;
    test_config_t cfg;
    setenv("PLAYHEAD_WORKERS", "8", 1);
    setenv("PLAYHEAD_LISTEN", "env:1", 1);
    setenv("PLAYHEAD_VERBOSE", "true", 1);
    assert_int_equal(PARSE(&cfg, NULL, "--workers=16", "--listen", "flag:2", "--verbose=off"), PH_CONFIG_OK);
    assert_int_equal(cfg.workers, 16);
    assert_string_equal(cfg.listen, "flag:2");
    assert_int_equal(cfg.verbose, 0);
    assert_string_equal(cfg.log_level, "info");
    /* the last flag wins */
    assert_int_equal(PARSE(&cfg, NULL, "--workers=2", "--workers", "3"), PH_CONFIG_OK);
    assert_int_equal(cfg.workers, 3);
    /* a bad variable stops the start even when a flag would override it */
    setenv("PLAYHEAD_WORKERS", "many", 1);
    assert_int_equal(PARSE(&cfg, NULL, "--workers=2"), PH_CONFIG_ERROR);
    assert_string_equal(errstr, "option workers (from PLAYHEAD_WORKERS): 'many' is not an integer");
}

static void test_flag_forms(void **state)
{
    (void)state;
    test_config_t cfg;
    assert_int_equal(PARSE(&cfg, NULL, "--listen=0.0.0.0:80", "--log-level", "warn", "--timeout-ms", "600000"), PH_CONFIG_OK);
    assert_string_equal(cfg.listen, "0.0.0.0:80");
    assert_string_equal(cfg.log_level, "warn");
    assert_int_equal(cfg.timeout_ms, 600000);
    /* everything after the first '=' is the value */
    assert_int_equal(PARSE(&cfg, NULL, "--listen=a=b"), PH_CONFIG_OK);
    assert_string_equal(cfg.listen, "a=b");
    assert_int_equal(PARSE(&cfg, NULL, "--listen="), PH_CONFIG_OK);
    assert_string_equal(cfg.listen, "");
    /* range boundaries are inclusive */
    assert_int_equal(PARSE(&cfg, NULL, "--workers=1", "--timeout-ms=0"), PH_CONFIG_OK);
    assert_int_equal(cfg.workers, 1);
    assert_int_equal(cfg.timeout_ms, 0);
    assert_int_equal(PARSE(&cfg, NULL, "--workers", "64"), PH_CONFIG_OK);
    assert_int_equal(cfg.workers, 64);
    assert_parse_error("option listen needs a value", "--listen");
    assert_parse_error("option workers needs a value", "--verbose", "--workers");
}

static void test_bool_flags(void **state)
{
    (void)state;
    test_config_t cfg;
    assert_int_equal(PARSE(&cfg, NULL, "--verbose"), PH_CONFIG_OK);
    assert_int_equal(cfg.verbose, 1);
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; ++i) {
        char flag[32];
        snprintf(flag, sizeof(flag), "--verbose=%s", yes[i]);
        assert_int_equal(PARSE(&cfg, NULL, flag), PH_CONFIG_OK);
        assert_int_equal(cfg.verbose, 1);
        snprintf(flag, sizeof(flag), "--verbose=%s", no[i]);
        assert_int_equal(PARSE(&cfg, NULL, "--verbose", flag), PH_CONFIG_OK);
        assert_int_equal(cfg.verbose, 0);
    }
    setenv("PLAYHEAD_VERBOSE", "on", 1);
    assert_int_equal(PARSE(&cfg, NULL, "--verbose=no"), PH_CONFIG_OK);
    assert_int_equal(cfg.verbose, 0);
    assert_parse_error("option verbose (from command line): 'maybe' is not a boolean (true/false)", "--verbose=maybe");
    assert_parse_error("option verbose (from command line): '' is not a boolean (true/false)", "--verbose=");
    /* a bare bool flag does not take the next argument */
    assert_parse_error("unexpected argument 'false' (see --help)", "--verbose", "false");
    setenv("PLAYHEAD_VERBOSE", "2", 1);
    assert_int_equal(parse_argv(&cfg, NULL, NULL), PH_CONFIG_ERROR);
    assert_string_equal(errstr, "option verbose (from PLAYHEAD_VERBOSE): '2' is not a boolean (true/false)");
}

static void test_int_errors(void **state)
{
    (void)state;
    test_config_t cfg;
    assert_parse_error("option workers (from command line): 65 is out of range 1..64", "--workers=65");
    assert_parse_error("option workers (from command line): 0 is out of range 1..64", "--workers", "0");
    assert_parse_error("option workers (from command line): -1 is out of range 1..64", "--workers=-1");
    assert_parse_error("option timeout-ms (from command line): 600001 is out of range 0..600000", "--timeout-ms=600001");
    assert_parse_error("option workers (from command line): 'abc' is not an integer", "--workers=abc");
    assert_parse_error("option workers (from command line): '' is not an integer", "--workers=");
    assert_parse_error("option workers (from command line): '5x' is not an integer", "--workers=5x");
    assert_parse_error("option workers (from command line): '2.5' is not an integer", "--workers=2.5");
    assert_parse_error("option workers (from command line): '99999999999999999999' is not an integer",
                       "--workers=99999999999999999999");
    setenv("PLAYHEAD_WORKERS", "100", 1);
    assert_int_equal(parse_argv(&cfg, NULL, NULL), PH_CONFIG_ERROR);
    assert_string_equal(errstr, "option workers (from PLAYHEAD_WORKERS): 100 is out of range 1..64");
    unsetenv("PLAYHEAD_WORKERS");

    /* a bad default in the table is reported too */
    static const ph_option_t bad_default[] = {
        {"port", PH_OPT_INT, "0", 1, 65535, 0, "a port"},
        PH_OPTIONS_END,
    };
    long long port;
    assert_int_equal(ph_config_parse(bad_default, &port, NULL, 1, (char *[]){"prog", NULL}, "prog", "", errstr, sizeof(errstr)),
                     PH_CONFIG_ERROR);
    assert_string_equal(errstr, "option port (from default): 0 is out of range 1..65535");
}

/* --help of a table with nothing else set, as a malloc'ed string. */
static char *capture_help(const ph_option_t *opts)
{
    char buf[4096];
    fflush(stdout);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDOUT_FILENO) >= 0);
    char cfg[256];
    ph_config_result_t r =
        ph_config_parse(opts, cfg, NULL, 2, (char *[]){"prog", "--help", NULL}, "prog", "", errstr, sizeof(errstr));
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    assert_int_equal(r, PH_CONFIG_EXIT);
    rewind(tmp);
    size_t n = fread(buf, 1, sizeof(buf) - 1, tmp);
    buf[n] = '\0';
    fclose(tmp);
    return strdup(buf);
}

static const char *const colours[] = {"red", "green", "blue", NULL};
static const ph_option_t enum_opts[] = {
    {"colour", PH_OPT_ENUM(colours), "green", 0, 0, 0, "a colour"},
    PH_OPTIONS_END,
};

/* An enum option takes one of its names (any case) and stores its index; anything else is refused
 * naming the option and every allowed value. --help lists them. */
static void test_enum(void **state)
{
    (void)state;
    int colour = -1;
    assert_int_equal(ph_config_parse(enum_opts, &colour, NULL, 1, (char *[]){"prog", NULL}, "prog", "", errstr, sizeof(errstr)),
                     PH_CONFIG_OK);
    assert_int_equal(colour, 1);
    assert_int_equal(
        ph_config_parse(enum_opts, &colour, NULL, 2, (char *[]){"prog", "--colour=BLUE", NULL}, "prog", "", errstr, sizeof(errstr)),
        PH_CONFIG_OK);
    assert_int_equal(colour, 2);
    setenv("PLAYHEAD_COLOUR", "mauve", 1);
    assert_int_equal(ph_config_parse(enum_opts, &colour, NULL, 1, (char *[]){"prog", NULL}, "prog", "", errstr, sizeof(errstr)),
                     PH_CONFIG_ERROR);
    assert_string_equal(errstr, "option colour (from PLAYHEAD_COLOUR): 'mauve' is not one of red, green, blue");
    unsetenv("PLAYHEAD_COLOUR");
    char *help = capture_help(enum_opts);
    assert_non_null(strstr(help, "default: green (one of red, green, blue)\n"));
    free(help);
}

static int valid_even_length(const char *value, char *why, size_t why_size)
{
    if (strlen(value) % 2 == 0)
        return 0;
    snprintf(why, why_size, "has an odd length");
    return -1;
}

/* A validator checks every value of a string option, the default included, and its reason is
 * shown after the option's name, where the value came from, and the value. */
static const ph_option_t word_opts[] = {
    {"word", PH_OPT_VALID(valid_even_length), "ab", 0, 0, 0, "a word"},
    PH_OPTIONS_END,
};
static const ph_option_t word_bad_default[] = {
    {"word", PH_OPT_VALID(valid_even_length), "abc", 0, 0, 0, "a word"},
    PH_OPTIONS_END,
};

static void test_validator(void **state)
{
    (void)state;
    const char *word = NULL;
    assert_int_equal(
        ph_config_parse(word_opts, &word, NULL, 2, (char *[]){"prog", "--word=abcd", NULL}, "prog", "", errstr, sizeof(errstr)),
        PH_CONFIG_OK);
    assert_string_equal(word, "abcd");
    assert_int_equal(
        ph_config_parse(word_opts, &word, NULL, 2, (char *[]){"prog", "--word=abc", NULL}, "prog", "", errstr, sizeof(errstr)),
        PH_CONFIG_ERROR);
    assert_string_equal(errstr, "option word (from command line): 'abc' has an odd length");
    assert_int_equal(
        ph_config_parse(word_bad_default, &word, NULL, 1, (char *[]){"prog", NULL}, "prog", "", errstr, sizeof(errstr)),
        PH_CONFIG_ERROR);
    assert_string_equal(errstr, "option word (from default): 'abc' has an odd length");

    /* the shared validators */
    char why[128];
    assert_int_equal(ph_option_valid_hostport("127.0.0.1:8080", why, sizeof(why)), 0);
    assert_int_equal(ph_option_valid_hostport("127.0.0.1:0", why, sizeof(why)), -1);
    assert_int_equal(ph_option_valid_hostport("", why, sizeof(why)), -1);
    assert_int_equal(ph_option_valid_hostport_or_empty("", why, sizeof(why)), 0);
    assert_int_equal(ph_option_valid_hostport_or_empty("nope", why, sizeof(why)), -1);
    assert_int_equal(ph_option_valid_nonempty("x", why, sizeof(why)), 0);
    assert_int_equal(ph_option_valid_nonempty("", why, sizeof(why)), -1);
    assert_int_equal(ph_option_valid_redis_url("redis://127.0.0.1:6379/2", why, sizeof(why)), 0);
    assert_int_equal(ph_option_valid_redis_url("http://x", why, sizeof(why)), -1);
}

typedef struct shared_config_s {
    const char *listen;
    long long threads;
    int log_level;
} shared_config_t;

/* A program's row naming a shared option gets the shared row's type, range, help and validator at
 * its own offset, with its own default when it gives one. */
static void test_shared_rows(void **state)
{
    (void)state;
    static const ph_option_t opts[] = {
        PH_OPTION_SHARED("listen", "127.0.0.1:9999", shared_config_t, listen),
        PH_OPTION_SHARED("threads", NULL, shared_config_t, threads),
        PH_OPTION_SHARED("log-level", NULL, shared_config_t, log_level),
        PH_OPTIONS_END,
    };
    shared_config_t cfg;
    assert_int_equal(ph_config_parse(opts, &cfg, NULL, 1, (char *[]){"prog", NULL}, "prog", "", errstr, sizeof(errstr)),
                     PH_CONFIG_OK);
    assert_string_equal(cfg.listen, "127.0.0.1:9999");
    assert_int_equal(cfg.threads, 0);
    assert_int_equal(cfg.log_level, PH_LOG_INFO);
    assert_int_equal(
        ph_config_parse(opts, &cfg, NULL, 2, (char *[]){"prog", "--log-level=warn", NULL}, "prog", "", errstr, sizeof(errstr)),
        PH_CONFIG_OK);
    assert_int_equal(cfg.log_level, PH_LOG_WARN);
    assert_int_equal(
        ph_config_parse(opts, &cfg, NULL, 2, (char *[]){"prog", "--threads=257", NULL}, "prog", "", errstr, sizeof(errstr)),
        PH_CONFIG_ERROR);
    assert_string_equal(errstr, "option threads (from command line): 257 is out of range 0..256");
    assert_int_equal(ph_config_parse(opts, &cfg, NULL, 2, (char *[]){"prog", "--listen=127.0.0.1:99999", NULL}, "prog", "", errstr,
                                     sizeof(errstr)),
                     PH_CONFIG_ERROR);
    assert_string_equal(errstr, "option listen (from command line): '127.0.0.1:99999' is not host:port (port 1..65535)");
    char *help = capture_help(opts);
    assert_non_null(strstr(help, "--listen=VALUE"));
    assert_non_null(strstr(help, "default: 127.0.0.1:9999\n"));
    assert_non_null(strstr(help, "default: 0 (range 0..256)\n"));
    free(help);
    static const ph_option_t unknown[] = {
        PH_OPTION_SHARED("no-such-option", NULL, shared_config_t, listen),
        PH_OPTIONS_END,
    };
    assert_int_equal(ph_config_parse(unknown, &cfg, NULL, 1, (char *[]){"prog", NULL}, "prog", "", errstr, sizeof(errstr)),
                     PH_CONFIG_ERROR);
    assert_string_equal(errstr, "option no-such-option: no shared option of that name");
}

static void test_unknown_options(void **state)
{
    (void)state;
    assert_parse_error("unknown option '--nope' (see --help)", "--nope=1");
    assert_parse_error("unknown option '--nope' (see --help)", "--nope");
    assert_parse_error("unknown option '--work' (see --help)", "--work=1"); /* no prefix matching */
    assert_parse_error("unknown option '--workers-x' (see --help)", "--workers-x", "1");
    assert_parse_error("unknown option '--Workers' (see --help)", "--Workers=1");
    assert_parse_error("unknown option '--' (see --help)", "--");
    assert_parse_error("unexpected argument 'positional' (see --help)", "positional");
    assert_parse_error("unexpected argument '-v' (see --help)", "-v");
    assert_parse_error("unexpected argument '-workers=1' (see --help)", "-workers=1");
    /* parsing stops at the first error, in argv order */
    assert_parse_error("unknown option '--nope' (see --help)", "--workers=2", "--nope", "--workers=99");
}

/* ---------------------------------------------------------------- Kafka properties */

static void test_kafka_props(void **state)
{
    (void)state;
    test_config_t cfg;
    ph_kafka_props_t props = {0};
    assert_int_equal(PARSE(&cfg, &props, "-X", "socket.timeout.ms=1000", "-Xacks=all", "-X", "sasl.jaas.config=a=b", "-X", "k="),
                     PH_CONFIG_OK);
    assert_int_equal(props.count, 4);
    assert_string_equal(props.keys[0], "socket.timeout.ms");
    assert_string_equal(props.values[0], "1000");
    assert_string_equal(props.keys[1], "acks");
    assert_string_equal(props.values[1], "all");
    assert_string_equal(props.keys[2], "sasl.jaas.config");
    assert_string_equal(props.values[2], "a=b");
    assert_string_equal(props.keys[3], "k");
    assert_string_equal(props.values[3], "");
    props_free(&props);

    /* from the environment, dots written as underscores; they come before -X so that -X wins */
    setenv("PLAYHEAD_KAFKA_SOCKET_TIMEOUT_MS", "1000", 1);
    assert_int_equal(PARSE(&cfg, &props, "-X", "socket.timeout.ms=2000"), PH_CONFIG_OK);
    assert_int_equal(props.count, 2);
    assert_string_equal(props.keys[0], "socket.timeout.ms");
    assert_string_equal(props.values[0], "1000");
    assert_string_equal(props.keys[1], "socket.timeout.ms");
    assert_string_equal(props.values[1], "2000");
    props_free(&props);
    unsetenv("PLAYHEAD_KAFKA_SOCKET_TIMEOUT_MS");

    setenv("PLAYHEAD_KAFKA_", "no key", 1);
    assert_int_equal(parse_argv(&cfg, &props, NULL), PH_CONFIG_OK);
    assert_int_equal(props.count, 0);
    unsetenv("PLAYHEAD_KAFKA_");

    /* the count restarts on every parse */
    props.count = 0;
    assert_int_equal(PARSE(&cfg, &props, "-Xa=1"), PH_CONFIG_OK);
    assert_int_equal(props.count, 1);
    props_free(&props);

    assert_parse_error("-X needs KEY=VALUE", "-X", "novalue");
    assert_parse_error("-X needs KEY=VALUE", "-X", "=x");
    assert_parse_error("-X needs KEY=VALUE", "-X=x");
    assert_parse_error("-X needs KEY=VALUE", "-X");

    /* a program without Kafka refuses -X and ignores PLAYHEAD_KAFKA_* */
    assert_int_equal(PARSE(&cfg, NULL, "-X", "acks=all"), PH_CONFIG_ERROR);
    assert_string_equal(errstr, "-X: this program has no Kafka client");
    setenv("PLAYHEAD_KAFKA_ACKS", "all", 1);
    assert_int_equal(parse_argv(&cfg, NULL, NULL), PH_CONFIG_OK);
    unsetenv("PLAYHEAD_KAFKA_ACKS");

    /* at most PH_KAFKA_PROPS_MAX */
    char *many[PH_KAFKA_PROPS_MAX + 2] = {0};
    for (int i = 0; i < PH_KAFKA_PROPS_MAX; ++i)
        many[i] = "-Xk=v";
    assert_int_equal(parse_argv(&cfg, &props, many), PH_CONFIG_OK);
    assert_int_equal(props.count, PH_KAFKA_PROPS_MAX);
    props_free(&props);
    many[PH_KAFKA_PROPS_MAX] = "-Xk=v";
    assert_int_equal(parse_argv(&cfg, &props, many), PH_CONFIG_ERROR);
    assert_string_equal(errstr, "-X: more than 64 Kafka properties");
    props_free(&props);
}

/* ---------------------------------------------------------------- --help, --version */

/* Runs the parse with stdout redirected to a temporary file; returns what was printed. */
static ph_config_result_t parse_capturing(ph_kafka_props_t *props, char **args, char *out, size_t cap)
{
    test_config_t cfg;
    fflush(stdout);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(STDOUT_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(tmp), STDOUT_FILENO) >= 0);
    ph_config_result_t r = parse_argv(&cfg, props, args);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, cap - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
    return r;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (strstr(haystack, needle) == NULL)
        fail_msg("\"%s\" not found in:\n%s", needle, haystack);
}

static void test_help_and_version(void **state)
{
    (void)state;
    static char out[8192];
    ph_kafka_props_t props = {0};
    assert_int_equal(parse_capturing(&props, (char *[]){"--help", NULL}, out, sizeof(out)), PH_CONFIG_EXIT);
    assert_contains(out, "Usage: prog [OPTIONS]\nA test program.\n");
    assert_contains(out, "--listen=VALUE");
    assert_contains(out, "HTTP listen address host:port");
    assert_contains(out, "PLAYHEAD_LISTEN");
    assert_contains(out, "default: 127.0.0.1:8080\n");
    assert_contains(out, "PLAYHEAD_WORKERS");
    assert_contains(out, "default: 4 (range 1..64)\n");
    assert_contains(out, "--verbose[=BOOL]");
    assert_contains(out, "PLAYHEAD_LOG_LEVEL");
    assert_contains(out, "PLAYHEAD_TIMEOUT_MS");
    assert_contains(out, "-X KEY=VALUE");
    assert_contains(out, "PLAYHEAD_KAFKA_<KEY>");
    assert_contains(out, "--version");
    props_free(&props);

    /* without Kafka, no -X in the help */
    assert_int_equal(parse_capturing(NULL, (char *[]){"-h", NULL}, out, sizeof(out)), PH_CONFIG_EXIT);
    assert_contains(out, "Usage: prog [OPTIONS]");
    assert_null(strstr(out, "-X KEY=VALUE"));

    /* --help wins over the options after it */
    assert_int_equal(parse_capturing(NULL, (char *[]){"--workers=2", "--help", "--nope", NULL}, out, sizeof(out)), PH_CONFIG_EXIT);
    assert_contains(out, "Usage:");

    assert_int_equal(parse_capturing(NULL, (char *[]){"--version", NULL}, out, sizeof(out)), PH_CONFIG_EXIT);
    assert_string_equal(out, "prog " PH_VERSION "\n");

    /* a normal start prints nothing */
    assert_int_equal(parse_capturing(NULL, (char *[]){"--workers=2", NULL}, out, sizeof(out)), PH_CONFIG_OK);
    assert_string_equal(out, "");
}

/* ---------------------------------------------------------------- ph_parse_hostport */

static void test_parse_hostport(void **state)
{
    (void)state;
    char host[16];
    int port = -1;
    assert_int_equal(ph_parse_hostport("h:1234", host, sizeof(host), &port), 0);
    assert_string_equal(host, "h");
    assert_int_equal(port, 1234);
    assert_int_equal(ph_parse_hostport("127.0.0.1:8080", host, sizeof(host), &port), 0);
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 8080);
    assert_int_equal(ph_parse_hostport("localhost:1", host, sizeof(host), &port), 0);
    assert_int_equal(port, 1);
    assert_int_equal(ph_parse_hostport("localhost:65535", host, sizeof(host), &port), 0);
    assert_int_equal(port, 65535);
    /* the longest host that fits host_cap */
    assert_int_equal(ph_parse_hostport("123456789012345:80", host, sizeof(host), &port), 0);
    assert_string_equal(host, "123456789012345");

    static const char *const bad[] = {
        "", "h", "h:", ":80", "h:0", "h:65536", "h:-1", "h:8x", "h:x8", "h:1.5", "h:99999999999999999999", "1234567890123456:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        port = -1;
        if (ph_parse_hostport(bad[i], host, sizeof(host), &port) != -1)
            fail_msg("\"%s\" accepted (port %d)", bad[i], port);
        assert_int_equal(port, -1);
    }
}

/* ---------------------------------------------------------------- ph_redis_url_parse */

static void assert_url(const char *url, const char *host, int port, const char *password, int db)
{
    ph_redis_url_t u;
    if (ph_redis_url_parse(url, &u) != 0)
        fail_msg("\"%s\" rejected", url);
    assert_string_equal(u.host, host);
    assert_int_equal(u.port, port);
    assert_string_equal(u.password, password);
    assert_int_equal(u.db, db);
}

static void test_redis_url(void **state)
{
    (void)state;
    assert_url("redis://:secret@h:6380/2", "h", 6380, "secret", 2);
    assert_url("redis://h", "h", 6379, "", 0);
    assert_url("h:1234", "h", 1234, "", 0);
    assert_url("redis://127.0.0.1:6379", "127.0.0.1", 6379, "", 0);
    assert_url("redis://redis.example.com/15", "redis.example.com", 6379, "", 15);
    assert_url("redis://:p@ss:w0rd@h:1/0", "h", 1, "p@ss:w0rd", 0); /* the last '@' ends the password */
    assert_url("redis://h:65535", "h", 65535, "", 0);

    char url[600], host[300], password[300];
    memset(host, 'h', 255);
    host[255] = '\0';
    snprintf(url, sizeof(url), "redis://%s:1", host);
    assert_url(url, host, 1, "", 0);
    memset(password, 'p', 255);
    password[255] = '\0';
    snprintf(url, sizeof(url), "redis://:%s@h", password);
    assert_url(url, "h", 6379, password, 0);

    static const char *const bad[] = {
        "redis://h:0",     "redis://h:65536",
        "redis://h:abc",   "redis://h:",
        "redis://h:6379x", "redis://h/abc",
        "redis://h/-1",    "redis://h/1x",
        "redis://h/2/3",   "redis://",
        "redis://:pw@",    "redis://:6379",
        "redis://:pw@/1",  "h:0",
        "h:70000",         "",
        ":6379",           "rediss://h",
    };
    ph_redis_url_t u;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i)
        if (ph_redis_url_parse(bad[i], &u) != -1)
            fail_msg("\"%s\" accepted as host \"%s\" port %d db %d", bad[i], u.host, u.port, u.db);
    /* too long a host or password */
    memset(host, 'h', 256);
    host[256] = '\0';
    snprintf(url, sizeof(url), "redis://%s:1", host);
    assert_int_equal(ph_redis_url_parse(url, &u), -1);
    memset(password, 'p', 256);
    password[256] = '\0';
    snprintf(url, sizeof(url), "redis://:%s@h", password);
    assert_int_equal(ph_redis_url_parse(url, &u), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_env_overrides_default, clear_env),
        cmocka_unit_test_setup(test_flag_overrides_env, clear_env),
        cmocka_unit_test_setup(test_flag_forms, clear_env),
        cmocka_unit_test_setup(test_bool_flags, clear_env),
        cmocka_unit_test_setup(test_int_errors, clear_env),
        cmocka_unit_test_setup(test_unknown_options, clear_env),
        cmocka_unit_test_setup(test_enum, clear_env),
        cmocka_unit_test_setup(test_validator, clear_env),
        cmocka_unit_test_setup(test_shared_rows, clear_env),
        cmocka_unit_test_setup(test_kafka_props, clear_env),
        cmocka_unit_test_setup(test_help_and_version, clear_env),
        cmocka_unit_test(test_parse_hostport),
        cmocka_unit_test(test_redis_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
