/* view: see view.h. Rings are arrays used circularly (head: the oldest, or the next slot to
 * write for deaths and logs); every string is owned by its record and freed when overwritten. */
#include "view.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sysmem.h"
#include "util.h"

struct sample {
    int64_t t;                   /* unix seconds */
    uint64_t rss, sys_total, sys_avail;
    int64_t gpu_used;            /* -1: unknown */
    float tok_s[BJ_MAX_BRAINS];
    float jar[BJ_MAX_BRAINS];    /* fill 0..1 */
};

struct web_view {
    int n_brains, ring_thoughts;
    struct thought_ring *rings;
    struct death_rec deaths[WEB_DEATHS];
    int deaths_head, n_deaths;   /* head: next slot */
    struct log_rec logs[WEB_LOGS];
    int logs_head, n_logs;
    struct sample *series;
    int series_head, n_series;
    struct bj_sysmem_paths mem_paths;
    int64_t gpu_used;
    int mem_pct;                 /* memory in use, 0-100; -1: unknown */
    double temp_c;               /* the hottest thermal zone; BJ_NO_TEMP: no sensor */
    unsigned samples;
    struct web_view_counts counts;
};

#define NO_TEMP -1000.0

/* The host's memory in use (from m, the sample's bj_sysmem_read; NULL: unknown) and heat, for the
 * original's per-brain state. */
static void sample_host(struct web_view *w, const struct bj_sysmem *m)
{
    w->mem_pct = bj_sysmem_pct_of(m);
    double t;
    char zone[64];
    w->temp_c = bj_sysmem_hottest_zone("/sys/class/thermal", "", &t, zone, sizeof zone) == 0 ? (int)(t * 10) / 10.0
                                                                                             : NO_TEMP;
}

struct web_view *web_view_new(int n_brains, int ring_thoughts)
{
    struct web_view *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->n_brains = n_brains;
    v->ring_thoughts = ring_thoughts > 0 ? ring_thoughts : 200;
    v->gpu_used = -1;
    bj_sysmem_paths_default(&v->mem_paths);
    struct bj_sysmem m;
    char err[128];
    sample_host(v, bj_sysmem_read(&v->mem_paths, &m, err, sizeof err) == 0 ? &m : NULL);
    v->rings = calloc((size_t)(n_brains ? n_brains : 1), sizeof *v->rings);
    v->series = calloc(WEB_SERIES, sizeof *v->series);
    if (!v->rings || !v->series)
        goto fail;
    for (int i = 0; i < n_brains; i++) {
        v->rings[i].cap = v->ring_thoughts;
        v->rings[i].recs = calloc((size_t)v->ring_thoughts, sizeof *v->rings[i].recs);
        if (!v->rings[i].recs)
            goto fail;
    }
    return v;
fail:
    web_view_free(v);
    return NULL;
}

void web_view_free(struct web_view *v)
{
    if (!v)
        return;
    for (int i = 0; v->rings && i < v->n_brains; i++) {
        for (int k = 0; v->rings[i].recs && k < v->rings[i].cap; k++)
            free(v->rings[i].recs[k].text);
        free(v->rings[i].recs);
    }
    free(v->rings);
    for (int i = 0; i < WEB_LOGS; i++) {
        free(v->logs[i].message);
        if (v->logs[i].data)
            json_decref(v->logs[i].data);
    }
    free(v->series);
    free(v);
}

const struct web_view_counts *web_view_counts(const struct web_view *v) { return &v->counts; }
const struct thought_ring *web_view_thoughts(const struct web_view *v, int b)
{
    return b >= 0 && b < v->n_brains ? &v->rings[b] : NULL;
}
int web_view_deaths(const struct web_view *v) { return v->n_deaths; }
const struct death_rec *web_view_death(const struct web_view *v, int i)
{
    return &v->deaths[((v->deaths_head - 1 - i) % WEB_DEATHS + WEB_DEATHS) % WEB_DEATHS];
}
int web_view_logs(const struct web_view *v) { return v->n_logs; }
const struct log_rec *web_view_log(const struct web_view *v, int i)
{
    return &v->logs[((v->logs_head - 1 - i) % WEB_LOGS + WEB_LOGS) % WEB_LOGS];
}
int64_t web_view_last_t(const struct web_view *v)
{
    return v->n_series ? v->series[(v->series_head + WEB_SERIES - 1) % WEB_SERIES].t : 0;
}

json_t *web_view_iso_or_null(int64_t us)
{
    if (us <= 0)
        return json_null();
    char b[40];
    bj_iso_time_us(us, b, sizeof b);
    return json_string(b);
}

json_t *web_view_thought_json(const struct bj_thought_rec *r)
{
    json_t *t = json_string(r->text ? r->text : "");
    return json_pack("{s:o,s:I,s:i,s:i,s:b,s:o}", "time", web_view_iso_or_null(r->time_us), "time_us", (json_int_t)r->time_us,
                     "life", (int)r->life, "thought", (int)r->thought, "complete", r->complete, "text",
                     t ? t : json_string("(invalid UTF-8)"));
}

json_t *web_view_death_json(const struct death_rec *d)
{
    return json_pack("{s:o,s:I,s:s,s:s,s:i,s:i,s:i}", "time", web_view_iso_or_null(d->time_us), "time_us",
                     (json_int_t)d->time_us, "brain", d->brain, "cause", d->cause, "crash_count", (int)d->crash_count,
                     "jar_used", (int)d->jar_used, "jar_tokens", (int)d->jar_tokens);
}

static void ring_push(struct thought_ring *r, const struct bj_event *ev, size_t max_bytes)
{
    size_t len = ev->text ? strlen(ev->text) : 0;
    while (r->n > 0 && (r->n == r->cap || r->bytes + len > max_bytes)) {
        struct bj_thought_rec *old = &r->recs[r->head];
        r->bytes -= old->text ? strlen(old->text) : 0;
        free(old->text);
        old->text = NULL;
        r->head = (r->head + 1) % r->cap;
        r->n--;
    }
    struct bj_thought_rec *rec = &r->recs[(r->head + r->n) % r->cap];
    rec->time_us = ev->time_us;
    rec->life = ev->crash_count + 1;
    rec->thought = ev->thought;
    rec->complete = ev->complete;
    rec->text = strdup(ev->text ? ev->text : "");
    if (!rec->text)
        return;
    r->bytes += len;
    r->n++;
    r->total++;
}

static void add_log(struct web_view *w, const struct bj_event *ev, const char *level, json_t *data, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void add_log(struct web_view *w, const struct bj_event *ev, const char *level, json_t *data, const char *fmt, ...)
{
    struct log_rec *l = &w->logs[w->logs_head];
    free(l->message);
    if (l->data)
        json_decref(l->data);
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    l->time_us = ev->time_us;
    bj_strlcpy(l->brain, ev->brain, sizeof l->brain);
    l->level = level;
    l->message = strdup(msg);
    l->data = data;
    w->logs_head = (w->logs_head + 1) % WEB_LOGS;
    if (w->n_logs < WEB_LOGS)
        w->n_logs++;
}

void web_view_event(struct web_view *w, const struct bj_event *ev, int b)
{
    w->counts.events++;
    switch (ev->type) {
    case BJ_EV_THOUGHT:
        w->counts.thoughts++;
        if (b >= 0 && b < w->n_brains)
            ring_push(&w->rings[b], ev, (size_t)w->ring_thoughts * 4096);
        add_log(w, ev, "info", json_pack("{s:i,s:i,s:b}", "thought", (int)ev->thought, "life",
                                         (int)ev->crash_count + 1, "complete", ev->complete),
                "%s: %.500s", ev->brain, ev->text ? ev->text : "");
        break;
    case BJ_EV_DEATH: {
        struct death_rec *d = &w->deaths[w->deaths_head];
        d->time_us = ev->time_us;
        bj_strlcpy(d->brain, ev->brain, sizeof d->brain);
        bj_strlcpy(d->cause, ev->cause, sizeof d->cause);
        d->crash_count = ev->crash_count;
        d->jar_used = ev->jar_used;
        d->jar_tokens = ev->jar_tokens;
        w->deaths_head = (w->deaths_head + 1) % WEB_DEATHS;
        if (w->n_deaths < WEB_DEATHS)
            w->n_deaths++;
        add_log(w, ev, "crash", json_pack("{s:s,s:i}", "cause", ev->cause, "crash_count", (int)ev->crash_count),
                "CRASH #%u: %s died (%s)", ev->crash_count, ev->brain, ev->cause);
        break;
    }
    case BJ_EV_RESURRECTION:
        add_log(w, ev, "info", json_pack("{s:i}", "crash_count", (int)ev->crash_count),
                "%s resurrected (life %u)", ev->brain, ev->crash_count + 1);
        break;
    case BJ_EV_OBSERVE:
        w->counts.observes++;
        break;
    case BJ_EV_ERROR:
        add_log(w, ev, "error", NULL, "%s%s%s", ev->brain, ev->brain[0] ? ": " : "", ev->text ? ev->text : "error");
        break;
    case BJ_EV_OPERATOR:
        add_log(w, ev, "info", json_pack("{s:s}", "action", ev->cause), "operator %s %s%s%.300s", ev->cause,
                ev->brain, ev->text ? ": " : "", ev->text ? ev->text : "");
        break;
    case BJ_EV_WATCHDOG:
        add_log(w, ev, "warning", json_pack("{s:s}", "stage", ev->cause), "watchdog %s: %.400s", ev->cause,
                ev->text ? ev->text : "");
        break;
    case BJ_EV_LINK:
        add_log(w, ev, strcmp(ev->state, "up") == 0 ? "info" : "warning", NULL, "peer %s %s: %.300s", ev->from,
                ev->state, ev->text ? ev->text : "");
        break;
    case BJ_EV_LAB: /* the Lab page's interventions and answers (routes_lab.c) */
        add_log(w, ev, "lab", json_pack("{s:s,s:s,s:i,s:i,s:s}", "action", ev->cause, "id", ev->from, "life",
                                        (int)ev->crash_count + 1, "thought", (int)ev->thought, "what",
                                        ev->text ? ev->text : ""),
                "lab %s %s on %s", ev->cause, ev->from, ev->brain);
        break;
    case BJ_EV_BUDGET:
        add_log(w, ev, "info", NULL, "memory budget: %.500s", ev->text ? ev->text : "");
        break;
    default:
        break;
    }
}

void web_view_sample(struct web_view *w, struct bj_hive *hive)
{
    struct sample *s = &w->series[w->series_head];
    memset(s, 0, sizeof *s);
    s->t = bj_event_now() / 1000000;
    struct bj_sysmem m;
    char err[128];
    bool mem_ok = bj_sysmem_read(&w->mem_paths, &m, err, sizeof err) == 0;
    if (mem_ok) {
        s->sys_total = m.total;
        s->sys_avail = m.available;
    }
    struct bj_proc_mem pm;
    if (bj_sysmem_read_proc(&w->mem_paths, &pm) == 0)
        s->rss = pm.rss;
    if (w->samples++ % 5 == 0 && w->mem_paths.nvml_lib[0]) {
        struct bj_gpu_info g;
        bj_sysmem_read_gpu(&w->mem_paths, &m, &g);
        w->gpu_used = -1;
        if (g.available && !g.unified) {
            uint64_t used = 0;
            for (int i = 0; i < g.n; i++)
                used += g.dev[i].total - g.dev[i].free;
            w->gpu_used = (int64_t)used;
        } else if (!g.available) {
            w->mem_paths.nvml_lib[0] = 0; /* no NVML: stop asking */
        }
    }
    s->gpu_used = w->gpu_used;
    sample_host(w, mem_ok ? &m : NULL); /* the same reading: meminfo and the cgroup once a second */
    struct bj_hive_snapshot snap;
    if (hive && bj_hive_snapshot(hive, &snap) == 0) {
        for (int i = 0; i < snap.n_brains && i < BJ_MAX_BRAINS; i++) {
            const struct bj_brain_view *v = &snap.brains[i];
            s->tok_s[i] = (float)v->tok_s;
            s->jar[i] = v->jar_tokens > 0 ? (float)v->jar_used / (float)v->jar_tokens : 0.0f;
        }
        bj_hive_snapshot_free(&snap);
    }
    w->series_head = (w->series_head + 1) % WEB_SERIES;
    if (w->n_series < WEB_SERIES)
        w->n_series++;
}

json_t *web_view_memory_pct_json(const struct web_view *w)
{
    return w && w->mem_pct >= 0 ? json_integer(w->mem_pct) : json_null();
}

json_t *web_view_temp_json(const struct web_view *w)
{
    return w && w->temp_c > NO_TEMP ? json_real(w->temp_c) : json_null();
}

json_t *web_view_memory_json(const struct web_view *w)
{
    const struct sample *s = w->n_series ? &w->series[(w->series_head + WEB_SERIES - 1) % WEB_SERIES] : NULL;
    if (!s)
        return json_pack("{s:n,s:n,s:n,s:n}", "process_rss", "system_total", "system_available", "gpu_used");
    return json_pack("{s:I,s:I,s:I,s:o}", "process_rss", (json_int_t)s->rss, "system_total", (json_int_t)s->sys_total,
                     "system_available", (json_int_t)s->sys_avail, "gpu_used",
                     s->gpu_used >= 0 ? json_integer(s->gpu_used) : json_null());
}

/* The series as uPlot wants it: one array of times and one array per line. */
json_t *web_view_series_json(const struct web_view *w, const struct bj_hive_snapshot *snap)
{
    json_t *t = json_array(), *rss = json_array(), *used = json_array(), *gpu = json_array(), *br = json_object();
    json_t *tok[BJ_MAX_BRAINS], *jar[BJ_MAX_BRAINS];
    int nb = snap ? snap->n_brains : 0;
    for (int b = 0; b < nb; b++) {
        tok[b] = json_array();
        jar[b] = json_array();
    }
    for (int i = 0; i < w->n_series; i++) {
        const struct sample *s = &w->series[(w->series_head - w->n_series + i + WEB_SERIES) % WEB_SERIES];
        json_array_append_new(t, json_integer(s->t));
        json_array_append_new(rss, json_integer((json_int_t)s->rss));
        json_array_append_new(used, json_integer((json_int_t)(s->sys_total - s->sys_avail)));
        json_array_append_new(gpu, s->gpu_used >= 0 ? json_integer(s->gpu_used) : json_null());
        for (int b = 0; b < nb; b++) {
            json_array_append_new(tok[b], json_real(((int)(s->tok_s[b] * 10.0f + 0.5f)) / 10.0));
            json_array_append_new(jar[b], json_real(((int)(s->jar[b] * 1000.0f + 0.5f)) / 1000.0));
        }
    }
    for (int b = 0; b < nb; b++)
        json_object_set_new(br, snap->brains[b].id, json_pack("{s:o,s:o}", "tok_s", tok[b], "jar", jar[b]));
    return json_pack("{s:o,s:o,s:o,s:o,s:o}", "t", t, "process_rss", rss, "system_used", used, "gpu_used", gpu,
                     "brains", br);
}

