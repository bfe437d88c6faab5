/*
 * Prometheus registry and exposition (see metrics.h). Families keep registration order; each
 * family prints its # HELP and # TYPE once, then its series. Histograms print cumulative
 * _bucket{le=...} lines, _sum and _count.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "playhead/metrics.h"

const double PH_LATENCY_BOUNDS[] = {0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const size_t PH_LATENCY_NBOUNDS = sizeof(PH_LATENCY_BOUNDS) / sizeof(PH_LATENCY_BOUNDS[0]);

typedef enum { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM, KIND_COLLECTOR } kind_t;

typedef struct series_s {
    struct series_s *next;
    char *labels;
    union {
        ph_counter_t counter;
        ph_gauge_t gauge;
        ph_histogram_t histogram;
    } u;
} series_t;

typedef struct family_s {
    struct family_s *next;
    char *name, *help;
    const char *type;
    kind_t kind;
    series_t *series, **series_tail;
    ph_metrics_collect_fn collect;
    void *arg;
} family_t;

struct ph_metrics_s {
    family_t *families, **tail;
};

ph_metrics_t *ph_metrics_new(void)
{
    ph_metrics_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        abort();
    m->tail = &m->families;
    return m;
}

void ph_metrics_free(ph_metrics_t *m)
{
    if (m == NULL)
        return;
    family_t *f = m->families;
    while (f != NULL) {
        family_t *fn = f->next;
        series_t *s = f->series;
        while (s != NULL) {
            series_t *sn = s->next;
            free(s->labels);
            free(s);
            s = sn;
        }
        free(f->name);
        free(f->help);
        free(f);
        f = fn;
    }
    free(m);
}

static family_t *family(ph_metrics_t *m, const char *name, const char *help, kind_t kind, const char *type)
{
    for (family_t *f = m->families; f != NULL; f = f->next)
        if (strcmp(f->name, name) == 0)
            return f;
    family_t *f = calloc(1, sizeof(*f));
    if (f == NULL || (f->name = strdup(name)) == NULL || (f->help = strdup(help)) == NULL)
        abort();
    f->kind = kind;
    f->type = type;
    f->series_tail = &f->series;
    *m->tail = f;
    m->tail = &f->next;
    return f;
}

static series_t *add_series(family_t *f, const char *labels)
{
    series_t *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->labels = strdup(labels ? labels : "")) == NULL)
        abort();
    *f->series_tail = s;
    f->series_tail = &s->next;
    return s;
}

ph_counter_t *ph_metrics_counter(ph_metrics_t *m, const char *name, const char *help, const char *labels)
{
    return &add_series(family(m, name, help, KIND_COUNTER, "counter"), labels)->u.counter;
}

ph_gauge_t *ph_metrics_gauge(ph_metrics_t *m, const char *name, const char *help, const char *labels)
{
    return &add_series(family(m, name, help, KIND_GAUGE, "gauge"), labels)->u.gauge;
}

ph_histogram_t *ph_metrics_histogram(ph_metrics_t *m, const char *name, const char *help, const char *labels, const double *bounds,
                                     size_t nbounds)
{
    if (nbounds > PH_HISTOGRAM_MAX_BOUNDS)
        abort();
    ph_histogram_t *h = &add_series(family(m, name, help, KIND_HISTOGRAM, "histogram"), labels)->u.histogram;
    h->bounds = bounds;
    h->nbounds = nbounds;
    return h;
}

void ph_metrics_collector(ph_metrics_t *m, const char *name, const char *help, const char *type, ph_metrics_collect_fn fn,
                          void *arg)
{
    family_t *f = family(m, name, help, KIND_COLLECTOR, type);
    f->collect = fn;
    f->arg = arg;
}

void ph_histogram_observe(ph_histogram_t *h, double value)
{
    size_t i = 0;
    while (i < h->nbounds && value > h->bounds[i])
        ++i;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
    if (value > 0 && isfinite(value))
        atomic_fetch_add_explicit(&h->sum_micros, (uint64_t)(value * 1e6 + 0.5), memory_order_relaxed);
}

size_t ph_metrics_escape(char *buf, size_t cap, const char *value)
{
    size_t n = 0;
    for (const char *p = value; *p != '\0' && n + 3 < cap; ++p) {
        if (*p == '\\' || *p == '"') {
            buf[n++] = '\\';
            buf[n++] = *p;
        } else if (*p == '\n') {
            buf[n++] = '\\';
            buf[n++] = 'n';
        } else {
            buf[n++] = *p;
        }
    }
    buf[n] = '\0';
    return n;
}

/* name{labels,extra} or name{extra} or name */
static void series_name(ph_buf_t *out, const char *name, const char *suffix, const char *labels, const char *extra)
{
    ph_buf_append(out, name, strlen(name));
    ph_buf_append(out, suffix, strlen(suffix));
    int has_labels = labels[0] != '\0', has_extra = extra != NULL && extra[0] != '\0';
    if (!has_labels && !has_extra)
        return;
    ph_buf_lit(out, "{");
    ph_buf_append(out, labels, strlen(labels));
    if (has_labels && has_extra)
        ph_buf_lit(out, ",");
    if (has_extra)
        ph_buf_append(out, extra, strlen(extra));
    ph_buf_lit(out, "}");
}

static void help_line(ph_buf_t *out, const family_t *f)
{
    ph_buf_printf(out, "# HELP %s ", f->name);
    for (const char *p = f->help; *p; ++p) {
        if (*p == '\\')
            ph_buf_lit(out, "\\\\");
        else if (*p == '\n')
            ph_buf_lit(out, "\\n");
        else
            ph_buf_append(out, p, 1);
    }
    ph_buf_printf(out, "\n# TYPE %s %s\n", f->name, f->type);
}

void ph_metrics_render(ph_metrics_t *m, ph_buf_t *out)
{
    for (family_t *f = m->families; f != NULL; f = f->next) {
        help_line(out, f);
        if (f->kind == KIND_COLLECTOR) {
            f->collect(out, f->arg);
            continue;
        }
        for (series_t *s = f->series; s != NULL; s = s->next) {
            switch (f->kind) {
            case KIND_COUNTER:
                series_name(out, f->name, "", s->labels, NULL);
                ph_buf_printf(out, " %llu\n", (unsigned long long)atomic_load_explicit(&s->u.counter.value, memory_order_relaxed));
                break;
            case KIND_GAUGE:
                series_name(out, f->name, "", s->labels, NULL);
                ph_buf_printf(out, " %lld\n", (long long)atomic_load_explicit(&s->u.gauge.value, memory_order_relaxed));
                break;
            case KIND_HISTOGRAM: {
                const ph_histogram_t *h = &s->u.histogram;
                uint64_t cumulative = 0;
                char le[48];
                for (size_t i = 0; i <= h->nbounds; ++i) {
                    cumulative += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
                    if (i < h->nbounds)
                        snprintf(le, sizeof(le), "le=\"%g\"", h->bounds[i]);
                    else
                        snprintf(le, sizeof(le), "le=\"+Inf\"");
                    series_name(out, f->name, "_bucket", s->labels, le);
                    ph_buf_printf(out, " %llu\n", (unsigned long long)cumulative);
                }
                series_name(out, f->name, "_sum", s->labels, NULL);
                ph_buf_printf(out, " %.6f\n", (double)atomic_load_explicit(&h->sum_micros, memory_order_relaxed) / 1e6);
                series_name(out, f->name, "_count", s->labels, NULL);
                /* the count is the +Inf bucket, so the exposition stays self-consistent under load */
                ph_buf_printf(out, " %llu\n", (unsigned long long)cumulative);
                break;
            }
            default:
                break;
            }
        }
    }
}

static void collect_process(ph_buf_t *out, void *arg)
{
    const char *which = arg;
    if (strcmp(which, "rss") == 0) {
        long pages = 0, resident = 0;
        FILE *f = fopen("/proc/self/statm", "r");
        if (f != NULL) {
            if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
                resident = 0;
            fclose(f);
        }
        ph_buf_printf(out, "process_resident_memory_bytes %lld\n", (long long)resident * sysconf(_SC_PAGESIZE));
    } else {
        long n = 0;
        DIR *d = opendir("/proc/self/fd");
        if (d != NULL) {
            struct dirent *e;
            while ((e = readdir(d)) != NULL)
                if (e->d_name[0] != '.')
                    ++n;
            closedir(d);
            --n; /* the directory stream's own fd */
        }
        ph_buf_printf(out, "process_open_fds %ld\n", n);
    }
}

void ph_metrics_process(ph_metrics_t *m)
{
    ph_metrics_collector(m, "process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", collect_process,
                         (void *)"rss");
    ph_metrics_collector(m, "process_open_fds", "Number of open file descriptors.", "gauge", collect_process, (void *)"fds");
}
