/* Prometheus registry; see metrics.h for the model and its bounds. */
#include "highlander/metrics.h"
#include "highlander/procstat.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct series {
    uint64_t hash;
    char *labels[METRICS_MAX_LABELS];
    double value;          /* counter/gauge value, histogram sum */
    uint64_t count;        /* histogram observations */
    uint64_t *bucket_counts;
};

struct metric {
    enum metric_type type;
    const char *name;
    const char *help;
    const char *const *label_names;
    size_t nlabels;
    const double *buckets;
    size_t nbuckets;
    char (*le)[24];           /* each bucket's bound as text, made once */
    struct series *series;
    size_t nseries;
    size_t cap;
    struct metrics *owner;
};

struct collector {
    metrics_collect_cb cb;
    void *ctx;
};

struct metrics {
    struct metric **families;
    size_t nfamilies;
    struct collector *collectors;
    size_t ncollectors;
    struct metric *dropped;
};

static const char *const dropped_labels[] = {"metric", NULL};

struct metrics *metrics_new(void)
{
    struct metrics *m = xcalloc(1, sizeof(*m));

    m->dropped = metrics_register(m, METRIC_COUNTER, "k8_highlander_metrics_series_dropped_total",
                                  "Label combinations dropped because a family reached its series cap.",
                                  dropped_labels, NULL, 0);
    return m;
}

static void series_free(struct metric *f, struct series *s)
{
    for (size_t i = 0; i < f->nlabels; i++)
        free(s->labels[i]);
    free(s->bucket_counts);
}

void metrics_clear(struct metric *f)
{
    for (size_t i = 0; i < f->nseries; i++)
        series_free(f, &f->series[i]);
    f->nseries = 0;
}

void metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nfamilies; i++) {
        metrics_clear(m->families[i]);
        free(m->families[i]->series);
        free(m->families[i]->le);
        free(m->families[i]);
    }
    free(m->families);
    free(m->collectors);
    free(m);
}

static struct series *series_get(struct metric *f, const char *const *values, int create);

/* A family without labels has its one series from the start (0, or an
 * empty histogram), as Prometheus client libraries do: a dashboard or an
 * alert sees 0 rather than no data before the first event. */
struct metric *metrics_register(struct metrics *m, enum metric_type type, const char *name,
                                const char *help, const char *const *label_names,
                                const double *buckets, size_t nbuckets)
{
    struct metric *f = xcalloc(1, sizeof(*f));

    f->type = type;
    f->name = name;
    f->help = help;
    f->label_names = label_names;
    while (label_names && label_names[f->nlabels])
        f->nlabels++;
    if (f->nlabels > METRICS_MAX_LABELS)
        f->nlabels = METRICS_MAX_LABELS;
    f->buckets = buckets;
    f->nbuckets = type == METRIC_HISTOGRAM ? nbuckets : 0;
    if (f->nbuckets) {
        f->le = xcalloc(f->nbuckets, sizeof(*f->le));
        for (size_t b = 0; b < f->nbuckets; b++)
            snprintf(f->le[b], sizeof(f->le[b]), "%g", buckets[b]);
    }
    f->owner = m;
    m->families = xrealloc(m->families, (m->nfamilies + 1) * sizeof(*m->families));
    m->families[m->nfamilies++] = f;
    if (f->nlabels == 0)
        series_get(f, NULL, 1);
    return f;
}

void metrics_add_collector(struct metrics *m, metrics_collect_cb cb, void *ctx)
{
    m->collectors = xrealloc(m->collectors, (m->ncollectors + 1) * sizeof(*m->collectors));
    m->collectors[m->ncollectors].cb = cb;
    m->collectors[m->ncollectors].ctx = ctx;
    m->ncollectors++;
}

static uint64_t labels_hash(const struct metric *f, const char *const *values)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */

    for (size_t i = 0; i < f->nlabels; i++) {
        for (const unsigned char *p = (const unsigned char *)(values[i] ? values[i] : ""); *p; p++)
            h = (h ^ *p) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull;
    }
    return h;
}

static struct series *series_get(struct metric *f, const char *const *values, int create)
{
    uint64_t h = labels_hash(f, values);
    struct series *s;

    for (size_t i = 0; i < f->nseries; i++) {
        size_t j;
        s = &f->series[i];
        if (s->hash != h)
            continue;
        for (j = 0; j < f->nlabels; j++)
            if (strcmp(s->labels[j], values[j] ? values[j] : "") != 0)
                break;
        if (j == f->nlabels)
            return s;
    }
    if (!create)
        return NULL;
    if (f->nseries >= METRICS_MAX_SERIES) {
        if (f != f->owner->dropped) {
            const char *lv[] = {f->name};
            metrics_add(f->owner->dropped, lv, 1);
        }
        return NULL;
    }
    if (f->nseries == f->cap) {
        f->cap = f->cap ? f->cap * 2 : 4;
        f->series = xrealloc(f->series, f->cap * sizeof(*f->series));
    }
    s = &f->series[f->nseries++];
    memset(s, 0, sizeof(*s));
    s->hash = h;
    for (size_t j = 0; j < f->nlabels; j++)
        s->labels[j] = xstrdup(values[j] ? values[j] : "");
    if (f->type == METRIC_HISTOGRAM)
        s->bucket_counts = xcalloc(f->nbuckets ? f->nbuckets : 1, sizeof(uint64_t));
    return s;
}

void metrics_add(struct metric *f, const char *const *label_values, double delta)
{
    struct series *s = series_get(f, label_values, 1);

    if (s != NULL)
        s->value += delta;
}

void metrics_touch(struct metric *f, const char *const *label_values)
{
    series_get(f, label_values, 1);
}

void metrics_set(struct metric *f, const char *const *label_values, double value)
{
    struct series *s = series_get(f, label_values, 1);

    if (s != NULL)
        s->value = value;
}

void metrics_observe(struct metric *f, const char *const *label_values, double value)
{
    struct series *s = series_get(f, label_values, 1);

    if (s == NULL)
        return;
    s->value += value;
    s->count++;
    for (size_t i = 0; i < f->nbuckets; i++)
        if (value <= f->buckets[i])
            s->bucket_counts[i]++;
}

void metrics_remove(struct metric *f, const char *const *label_values)
{
    struct series *s = series_get(f, label_values, 0);

    if (s == NULL)
        return;
    series_free(f, s);
    /* Order does not matter (rendering sorts nothing): move the last in. */
    *s = f->series[--f->nseries];
}

double metrics_value(struct metric *f, const char *const *label_values)
{
    struct series *s = series_get(f, label_values, 0);

    return s ? s->value : 0;
}

/* Decimal digits of u, without printf (a scrape writes hundreds). */
static void put_uint(struct buf *out, uint64_t u)
{
    char tmp[24];
    size_t i = sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    buf_append(out, tmp + i, sizeof(tmp) - i);
}

static void put_number(struct buf *out, double v)
{
    if (isnan(v)) {
        buf_puts(out, "NaN");
    } else if (isinf(v)) {
        buf_puts(out, v > 0 ? "+Inf" : "-Inf");
    } else if (v == (double)(int64_t)v && fabs(v) < 1e15) {
        if (v < 0)
            buf_putc(out, '-');
        put_uint(out, (uint64_t)(v < 0 ? -(int64_t)v : (int64_t)v));
    } else {
        /* The shortest of %.15g and %.17g that reads back exactly. */
        char tmp[40];
        snprintf(tmp, sizeof(tmp), "%.15g", v);
        if (strtod(tmp, NULL) != v)
            snprintf(tmp, sizeof(tmp), "%.17g", v);
        buf_puts(out, tmp);
    }
}

static void put_label_value(struct buf *out, const char *v)
{
    while (*v) {
        size_t n = strcspn(v, "\\\"\n");
        buf_append(out, v, n);
        v += n;
        if (*v == '\0')
            break;
        buf_puts(out, *v == '\\' ? "\\\\" : *v == '"' ? "\\\"" : "\\n");
        v++;
    }
}

/* Writes {a="x",b="y"[,le="..."]} or nothing when there are no labels. */
static void put_labels(struct buf *out, const struct metric *f, const struct series *s, const char *le)
{
    if (f->nlabels == 0 && le == NULL)
        return;
    buf_putc(out, '{');
    for (size_t i = 0; i < f->nlabels; i++) {
        if (i)
            buf_putc(out, ',');
        buf_puts(out, f->label_names[i]);
        buf_append(out, "=\"", 2);
        put_label_value(out, s->labels[i]);
        buf_putc(out, '"');
    }
    if (le != NULL) {
        buf_puts(out, f->nlabels ? ",le=\"" : "le=\"");
        buf_puts(out, le);
        buf_putc(out, '"');
    }
    buf_putc(out, '}');
}

/* name, labels, a space, the value and a newline. */
static void put_line(struct buf *out, const struct metric *f, const char *suffix, const struct series *s,
                     const char *le)
{
    buf_puts(out, f->name);
    buf_puts(out, suffix);
    put_labels(out, f, s, le);
    buf_putc(out, ' ');
}

static void put_help(struct buf *out, const char *help)
{
    while (*help) {
        size_t n = strcspn(help, "\\\n");
        buf_append(out, help, n);
        help += n;
        if (*help == '\0')
            break;
        buf_puts(out, *help == '\\' ? "\\\\" : "\\n");
        help++;
    }
}

void metrics_render(struct metrics *m, struct buf *out)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};

    for (size_t i = 0; i < m->ncollectors; i++)
        m->collectors[i].cb(m, m->collectors[i].ctx);
    for (size_t i = 0; i < m->nfamilies; i++) {
        const struct metric *f = m->families[i];
        buf_puts(out, "# HELP ");
        buf_puts(out, f->name);
        buf_putc(out, ' ');
        put_help(out, f->help);
        buf_puts(out, "\n# TYPE ");
        buf_puts(out, f->name);
        buf_putc(out, ' ');
        buf_puts(out, type_names[f->type]);
        buf_putc(out, '\n');
        for (size_t j = 0; j < f->nseries; j++) {
            const struct series *s = &f->series[j];
            if (f->type != METRIC_HISTOGRAM) {
                put_line(out, f, "", s, NULL);
                put_number(out, s->value);
                buf_putc(out, '\n');
                continue;
            }
            for (size_t b = 0; b < f->nbuckets; b++) {
                put_line(out, f, "_bucket", s, f->le[b]);
                put_uint(out, s->bucket_counts[b]);
                buf_putc(out, '\n');
            }
            put_line(out, f, "_bucket", s, "+Inf");
            put_uint(out, s->count);
            buf_putc(out, '\n');
            put_line(out, f, "_sum", s, NULL);
            put_number(out, s->value);
            buf_putc(out, '\n');
            put_line(out, f, "_count", s, NULL);
            put_uint(out, s->count);
            buf_putc(out, '\n');
        }
    }
}

/* ---- process metrics ---------------------------------------------------- */

struct process_metrics {
    struct metric *cpu, *rss, *vsize, *fds, *max_fds, *start, *threads, *mem, *load, *goroutines;
    uint64_t sampled_ms;
};

/* /proc is read at most every PROC_SAMPLE_MS: a scrape a second apart
 * sees fresh figures, and a flood of scrapes does not list the fd
 * directory (the costly part) for each one. */
#define PROC_SAMPLE_MS 1000

static void collect_process(struct metrics *m, void *ctx)
{
    struct process_metrics *pm = ctx;
    uint64_t now = time_mono_ms();
    struct procstat ps;

    (void)m;
    if (pm->sampled_ms != 0 && now - pm->sampled_ms < PROC_SAMPLE_MS)
        return;
    if (procstat_read(&ps) != 0)
        return;
    pm->sampled_ms = now;
    /* process_cpu_seconds_total is a counter fed by the kernel's total. */
    metrics_set(pm->cpu, NULL, ps.cpu_seconds);
    metrics_set(pm->rss, NULL, (double)ps.rss_bytes);
    metrics_set(pm->vsize, NULL, (double)ps.vsize_bytes);
    metrics_set(pm->fds, NULL, (double)ps.open_fds);
    if (ps.max_fds > 0)
        metrics_set(pm->max_fds, NULL, (double)ps.max_fds);
    if (ps.start_time > 0)
        metrics_set(pm->start, NULL, ps.start_time);
    metrics_set(pm->threads, NULL, ps.threads);
    metrics_set(pm->mem, NULL, (double)ps.rss_bytes);
    metrics_set(pm->load, NULL, ps.load1);
    metrics_set(pm->goroutines, NULL, ps.threads);
}

void metrics_register_process(struct metrics *m)
{
    static struct process_metrics pm;

    pm.cpu = metrics_register(m, METRIC_COUNTER, "process_cpu_seconds_total",
                              "Total user and system CPU time spent in seconds.", NULL, NULL, 0);
    pm.rss = metrics_register(m, METRIC_GAUGE, "process_resident_memory_bytes",
                              "Resident memory size in bytes.", NULL, NULL, 0);
    pm.vsize = metrics_register(m, METRIC_GAUGE, "process_virtual_memory_bytes",
                                "Virtual memory size in bytes.", NULL, NULL, 0);
    pm.fds = metrics_register(m, METRIC_GAUGE, "process_open_fds", "Number of open file descriptors.",
                              NULL, NULL, 0);
    pm.max_fds = metrics_register(m, METRIC_GAUGE, "process_max_fds",
                                  "Maximum number of open file descriptors.", NULL, NULL, 0);
    pm.start = metrics_register(m, METRIC_GAUGE, "process_start_time_seconds",
                                "Start time of the process since unix epoch in seconds.", NULL, NULL, 0);
    pm.threads = metrics_register(m, METRIC_GAUGE, "process_threads", "Number of OS threads in the process.",
                                  NULL, NULL, 0);
    pm.mem = metrics_register(m, METRIC_GAUGE, "k8_highlander_memory_usage_bytes",
                              "Resident memory of the controller in bytes, read from /proc.", NULL, NULL, 0);
    pm.load = metrics_register(m, METRIC_GAUGE, "k8_highlander_system_load",
                               "One-minute load average of the host, read from /proc/loadavg.", NULL, NULL, 0);
    /* Go's name; here the threads of the process (one event loop, plus
     * any resolver thread libcurl has running). */
    pm.goroutines = metrics_register(m, METRIC_GAUGE, "k8_highlander_goroutine_count",
                                     "Threads of the controller process (the Go controller's goroutine count).",
                                     NULL, NULL, 0);
    metrics_add_collector(m, collect_process, &pm);
}
