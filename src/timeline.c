/* Leadership spans and the last hour's lease and health series; see timeline.h. */
#include "highlander/timeline.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

void timeline_init(struct timeline *tl)
{
    memset(tl, 0, sizeof(*tl));
    tl->cur.healthy = tl->cur.total = -1;
}

static struct leader_span *open_span(struct timeline *tl)
{
    struct leader_span *s;

    if (tl->nspans == 0)
        return NULL;
    s = &tl->spans[(tl->next_span + TIMELINE_SPANS - 1) % TIMELINE_SPANS];
    return s->end == 0 ? s : NULL;
}

static void end_span(struct timeline *tl, struct leader_span *s, const char *how, double now)
{
    /* A leader seen no more ended, as far as anyone here knows, when it
     * was last seen leading. */
    if (strcmp(how, "gone") == 0)
        now = s->seen;
    s->end = now > s->start ? now : s->start;
    snprintf(s->ended, sizeof(s->ended), "%s", how);
    tl->vacant_since = s->end;
    tl->released = strcmp(how, "released") == 0;
}

void timeline_leader(struct timeline *tl, const char *leader, const char *cluster, uint64_t token, double now,
                     double renewed)
{
    struct leader_span *s = open_span(tl);

    if (s && leader && strcmp(s->leader, leader) == 0) {
        if (token > s->token)
            s->token = token;
        if (renewed > now)
            renewed = now;
        if (renewed > s->seen)
            s->seen = renewed;
        return;
    }
    if (s)
        end_span(tl, s, "gone", now);
    if (leader == NULL)
        return;
    s = &tl->spans[tl->next_span];
    memset(s, 0, sizeof(*s));
    snprintf(s->leader, sizeof(s->leader), "%s", leader);
    snprintf(s->cluster, sizeof(s->cluster), "%s", cluster ? cluster : "");
    s->token = token;
    s->start = s->seen = now;
    if (tl->nspans == 0) {
        s->gap = -1;
        snprintf(s->how, sizeof(s->how), "first");
    } else {
        s->gap = now > tl->vacant_since ? now - tl->vacant_since : 0;
        snprintf(s->how, sizeof(s->how), "%s", tl->released ? "handover" : "failover");
    }
    tl->next_span = (tl->next_span + 1) % TIMELINE_SPANS;
    if (tl->nspans < TIMELINE_SPANS)
        tl->nspans++;
    tl->vacant_since = 0;
    tl->released = 0;
}

void timeline_ended(struct timeline *tl, int released, double now)
{
    struct leader_span *s = open_span(tl);

    if (s)
        end_span(tl, s, released ? "released" : "lost", now);
}

void timeline_lease_op(struct timeline *tl, double latency_s, int ok, int leading)
{
    float ms = (float)(latency_s * 1000.0);

    tl->cur.ops++;
    if (!ok)
        tl->cur.errors++;
    if (ms > tl->cur.max_ms)
        tl->cur.max_ms = ms;
    tl->cur.sum_ms += ms;
    if (leading)
        tl->cur.leading = 1;
}

void timeline_sample(struct timeline *tl, double now, int leading, int healthy, int total)
{
    struct timeline_bucket *b = &tl->buckets[tl->next_bucket];

    *b = tl->cur;
    b->end = now;
    b->healthy = total < 0 ? -1 : healthy;
    b->total = total;
    if (leading)
        b->leading = 1;
    tl->next_bucket = (tl->next_bucket + 1) % TIMELINE_BUCKETS;
    if (tl->nbuckets < TIMELINE_BUCKETS)
        tl->nbuckets++;
    memset(&tl->cur, 0, sizeof(tl->cur));
    /* A leader that stays leader through the next bucket marks it too. */
    tl->cur.leading = (uint8_t)(leading ? 1 : 0);
}

static double round_to(double v, double scale)
{
    return (double)(long long)(v * scale + 0.5) / scale;
}

static json_t *span_json(const struct leader_span *s)
{
    json_t *o = json_pack("{s:s, s:s, s:I, s:f, s:s}", "leader", s->leader, "cluster", s->cluster,
                          "fencingToken", (json_int_t)s->token, "start", s->start, "how", s->how);

    json_object_set_new(o, "end", s->end > 0 ? json_real(s->end) : json_null());
    json_object_set_new(o, "gapSeconds", s->gap >= 0 ? json_real(round_to(s->gap, 1e3)) : json_null());
    json_object_set_new(o, "ended", json_string(s->ended));
    return o;
}

static json_t *bucket_json(const struct timeline_bucket *b)
{
    json_t *o = json_pack("{s:f, s:i, s:i, s:b}", "end", b->end, "ops", (int)b->ops, "errors", (int)b->errors,
                          "leading", b->leading);

    json_object_set_new(o, "maxMs", b->ops ? json_real(round_to(b->max_ms, 1e3)) : json_null());
    json_object_set_new(o, "meanMs", b->ops ? json_real(round_to(b->sum_ms / (float)b->ops, 1e3)) : json_null());
    json_object_set_new(o, "healthy", b->total >= 0 ? json_integer(b->healthy) : json_null());
    json_object_set_new(o, "total", b->total >= 0 ? json_integer(b->total) : json_null());
    return o;
}

json_t *timeline_json(const struct timeline *tl)
{
    json_t *spans = json_array(), *series = json_array();
    unsigned first = tl->nspans < TIMELINE_SPANS ? 0 : tl->next_span;

    for (unsigned i = 0; i < tl->nspans; i++)
        json_array_append_new(spans, span_json(&tl->spans[(first + i) % TIMELINE_SPANS]));
    first = tl->nbuckets < TIMELINE_BUCKETS ? 0 : tl->next_bucket;
    for (unsigned i = 0; i < tl->nbuckets; i++)
        json_array_append_new(series, bucket_json(&tl->buckets[(first + i) % TIMELINE_BUCKETS]));
    return json_pack("{s:i, s:i, s:o, s:o}", "bucketSeconds", TIMELINE_BUCKET_S, "windowSeconds",
                     TIMELINE_BUCKET_S * TIMELINE_BUCKETS, "spans", spans, "series", series);
}
