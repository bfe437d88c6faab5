/*
 * Table-driven options (see config.h): defaults, then PLAYHEAD_* variables, then flags; --help
 * prints the table, so the table is the single source of truth for every option.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "playhead/config.h"

extern char **environ;

const ph_opt_type_t ph_opt_str = {PH_OPT_KIND_STR, NULL, NULL}, ph_opt_int = {PH_OPT_KIND_INT, NULL, NULL},
                    ph_opt_bool = {PH_OPT_KIND_BOOL, NULL, NULL}, ph_opt_shared = {PH_OPT_KIND_SHARED, NULL, NULL};

static void env_name(const char *opt, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "PLAYHEAD_");
    for (const char *p = opt; *p && n + 1 < cap; ++p)
        buf[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    buf[n] = '\0';
}

static int set_value(const ph_option_t *o, void *cfg, const char *value, const char *origin, char *errstr, size_t errstr_size)
{
    char *field = (char *)cfg + o->offset;
    switch (o->type->kind) {
    case PH_OPT_KIND_STR:
        if (o->type->valid != NULL) {
            char why[160] = "is not valid";
            if (o->type->valid(value, why, sizeof(why)) != 0) {
                snprintf(errstr, errstr_size, "option %s (from %s): '%s' %s", o->name, origin, value, why);
                return -1;
            }
        }
        *(const char **)field = value;
        return 0;
    case PH_OPT_KIND_ENUM:
        for (int i = 0; o->type->names[i] != NULL; ++i) {
            if (strcasecmp(value, o->type->names[i]) == 0) {
                *(int *)field = i;
                return 0;
            }
        }
        {
            int n = snprintf(errstr, errstr_size, "option %s (from %s): '%s' is not one of", o->name, origin, value);
            for (int i = 0; o->type->names[i] != NULL && n >= 0 && (size_t)n < errstr_size; ++i)
                n += snprintf(errstr + n, errstr_size - (size_t)n, "%s %s", i > 0 ? "," : "", o->type->names[i]);
        }
        return -1;
    case PH_OPT_KIND_SHARED:
        break; /* resolved before any value is set */
    case PH_OPT_KIND_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0') {
            snprintf(errstr, errstr_size, "option %s (from %s): '%s' is not an integer", o->name, origin, value);
            return -1;
        }
        if (v < o->min || v > o->max) {
            snprintf(errstr, errstr_size, "option %s (from %s): %lld is out of range %lld..%lld", o->name, origin, v, o->min,
                     o->max);
            return -1;
        }
        *(long long *)field = v;
        return 0;
    }
    case PH_OPT_KIND_BOOL:
        if (strcmp(value, "1") == 0 || strcmp(value, "true") == 0 || strcmp(value, "yes") == 0 || strcmp(value, "on") == 0) {
            *(int *)field = 1;
        } else if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0 || strcmp(value, "no") == 0 ||
                   strcmp(value, "off") == 0) {
            *(int *)field = 0;
        } else {
            snprintf(errstr, errstr_size, "option %s (from %s): '%s' is not a boolean (true/false)", o->name, origin, value);
            return -1;
        }
        return 0;
    }
    return -1;
}

static int add_kafka_prop(ph_kafka_props_t *props, const char *key, size_t key_len, const char *value, char *errstr,
                          size_t errstr_size)
{
    if (props == NULL) {
        snprintf(errstr, errstr_size, "-X: this program has no Kafka client");
        return -1;
    }
    if (props->count == PH_KAFKA_PROPS_MAX) {
        snprintf(errstr, errstr_size, "-X: more than %d Kafka properties", PH_KAFKA_PROPS_MAX);
        return -1;
    }
    char *k = strndup(key, key_len); /* lives as long as the process, like argv */
    if (k == NULL)
        abort();
    props->keys[props->count] = k;
    props->values[props->count] = value;
    props->count++;
    return 0;
}

static void print_help(const ph_option_t *opts, const char *prog, const char *summary, int kafka)
{
    printf("Usage: %s [OPTIONS]\n%s\n\nOptions (each also read from the environment variable shown):\n", prog, summary);
    for (const ph_option_t *o = opts; o->name != NULL; ++o) {
        char env[96], flag[96];
        env_name(o->name, env, sizeof(env));
        snprintf(flag, sizeof(flag), "--%s%s", o->name, o->type->kind == PH_OPT_KIND_BOOL ? "[=BOOL]" : "=VALUE");
        printf("  %-32s %s\n  %-32s default: %s", flag, o->help, env, o->defval);
        if (o->type->kind == PH_OPT_KIND_INT)
            printf(" (range %lld..%lld)", o->min, o->max);
        for (int i = 0; o->type->kind == PH_OPT_KIND_ENUM && o->type->names[i] != NULL; ++i)
            printf("%s%s", i == 0 ? " (one of " : ", ", o->type->names[i]);
        printf("%s\n", o->type->kind == PH_OPT_KIND_ENUM ? ")" : "");
    }
    if (kafka)
        printf("  %-32s %s\n  %-32s %s\n", "-X KEY=VALUE", "librdkafka property, passed to rd_kafka_conf_set as is",
               "PLAYHEAD_KAFKA_<KEY>", "same, with dots written as underscores (PLAYHEAD_KAFKA_SASL_MECHANISMS)");
    printf("  %-32s %s\n  %-32s %s\n", "--help", "print this help and exit", "--version", "print the version and exit");
}

/* The program's table with each PH_OPT_SHARED row replaced by the shared row of that name, at the
 * program's offset and with its default. Returns a malloc'ed table, or NULL with errstr. */
static ph_option_t *resolve(const ph_option_t *opts, char *errstr, size_t errstr_size)
{
    size_t n = 0;
    while (opts[n].name != NULL)
        ++n;
    ph_option_t *out = calloc(n + 1, sizeof(*out));
    if (out == NULL)
        abort();
    for (size_t i = 0; i < n; ++i) {
        out[i] = opts[i];
        if (opts[i].type->kind != PH_OPT_KIND_SHARED)
            continue;
        const ph_option_t *shared = ph_shared_options;
        while (shared->name != NULL && strcmp(shared->name, opts[i].name) != 0)
            ++shared;
        if (shared->name == NULL) {
            snprintf(errstr, errstr_size, "option %s: no shared option of that name", opts[i].name);
            free(out);
            return NULL;
        }
        out[i] = *shared;
        out[i].offset = opts[i].offset;
        if (opts[i].defval != NULL)
            out[i].defval = opts[i].defval;
    }
    return out;
}

static ph_config_result_t parse(const ph_option_t *opts, void *cfg, ph_kafka_props_t *kafka_props, int argc, char **argv,
                                const char *prog, const char *summary, char *errstr, size_t errstr_size);

ph_config_result_t ph_config_parse(const ph_option_t *opts, void *cfg, ph_kafka_props_t *kafka_props, int argc, char **argv,
                                   const char *prog, const char *summary, char *errstr, size_t errstr_size)
{
    ph_option_t *resolved = resolve(opts, errstr, errstr_size);
    if (resolved == NULL)
        return PH_CONFIG_ERROR;
    ph_config_result_t r = parse(resolved, cfg, kafka_props, argc, argv, prog, summary, errstr, errstr_size);
    free(resolved);
    return r;
}

static ph_config_result_t parse(const ph_option_t *opts, void *cfg, ph_kafka_props_t *kafka_props, int argc, char **argv,
                                const char *prog, const char *summary, char *errstr, size_t errstr_size)
{
    if (kafka_props != NULL)
        kafka_props->count = 0;
    for (const ph_option_t *o = opts; o->name != NULL; ++o)
        if (set_value(o, cfg, o->defval, "default", errstr, errstr_size) != 0)
            return PH_CONFIG_ERROR;
    for (const ph_option_t *o = opts; o->name != NULL; ++o) {
        char env[96];
        env_name(o->name, env, sizeof(env));
        const char *v = getenv(env);
        if (v != NULL && set_value(o, cfg, v, env, errstr, errstr_size) != 0)
            return PH_CONFIG_ERROR;
    }
    if (kafka_props != NULL) {
        static const char prefix[] = "PLAYHEAD_KAFKA_";
        for (char **e = environ; *e != NULL; ++e) {
            if (strncmp(*e, prefix, sizeof(prefix) - 1) != 0)
                continue;
            const char *key = *e + sizeof(prefix) - 1, *eq = strchr(key, '=');
            if (eq == NULL || eq == key)
                continue;
            if (add_kafka_prop(kafka_props, key, (size_t)(eq - key), eq + 1, errstr, errstr_size) != 0)
                return PH_CONFIG_ERROR;
            char *k = (char *)kafka_props->keys[kafka_props->count - 1];
            for (char *p = k; *p; ++p)
                *p = *p == '_' ? '.' : (char)tolower((unsigned char)*p);
        }
    }
    for (int i = 1; i < argc; ++i) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            print_help(opts, prog, summary, kafka_props != NULL);
            return PH_CONFIG_EXIT;
        }
        if (strcmp(arg, "--version") == 0) {
            printf("%s %s\n", prog, PH_VERSION);
            return PH_CONFIG_EXIT;
        }
        if (strncmp(arg, "-X", 2) == 0) {
            const char *kv = arg[2] ? arg + 2 : (i + 1 < argc ? argv[++i] : NULL);
            const char *eq = kv ? strchr(kv, '=') : NULL;
            if (eq == NULL || eq == kv) {
                snprintf(errstr, errstr_size, "-X needs KEY=VALUE");
                return PH_CONFIG_ERROR;
            }
            if (add_kafka_prop(kafka_props, kv, (size_t)(eq - kv), eq + 1, errstr, errstr_size) != 0)
                return PH_CONFIG_ERROR;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0) {
            snprintf(errstr, errstr_size, "unexpected argument '%s' (see --help)", arg);
            return PH_CONFIG_ERROR;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const ph_option_t *o;
        for (o = opts; o->name != NULL; ++o)
            if (strlen(o->name) == name_len && strncmp(o->name, name, name_len) == 0)
                break;
        if (o->name == NULL) {
            snprintf(errstr, errstr_size, "unknown option '--%.*s' (see --help)", (int)name_len, name);
            return PH_CONFIG_ERROR;
        }
        const char *value;
        if (eq != NULL) {
            value = eq + 1;
        } else if (o->type->kind == PH_OPT_KIND_BOOL) {
            value = "true";
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            snprintf(errstr, errstr_size, "option %s needs a value", o->name);
            return PH_CONFIG_ERROR;
        }
        if (set_value(o, cfg, value, "command line", errstr, errstr_size) != 0)
            return PH_CONFIG_ERROR;
    }
    return PH_CONFIG_OK;
}

int ph_parse_hostport(const char *s, char *host_buf, size_t host_cap, int *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || (size_t)(colon - s) >= host_cap)
        return -1;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || p < 1 || p > 65535)
        return -1;
    memcpy(host_buf, s, (size_t)(colon - s));
    host_buf[colon - s] = '\0';
    *port = (int)p;
    return 0;
}
