/* view: what the web server knows from the events, and its JSON. The last thoughts of every brain
 * (a ring per brain, bounded in count and bytes), the last deaths and log lines, and a per-second
 * series (memory, tokens/s, jar fill) for the charts. It is fed by the server (web_view_event for
 * every bus event, web_view_sample once a second) and read by the routes and the WebSocket
 * snapshots. It knows nothing of HTTP, sockets or clients.
 *
 * Threads: one at a time (the web loop). Life cycle: web_view_new() when the hive's brains are
 * known, web_view_free(). */
#ifndef BJ_WEB_VIEW_H
#define BJ_WEB_VIEW_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "event.h"
#include "hive.h"
#include "web.h"

#define WEB_SERIES 900             /* per-second chart samples kept (15 minutes) */
#define WEB_DEATHS 1000
#define WEB_LOGS 1000

struct thought_ring {
    struct bj_thought_rec *recs; /* oldest at head */
    int head, n, cap;
    size_t bytes;                /* text bytes held (bounded too) */
    uint64_t total;              /* thoughts seen this run */
};
struct death_rec {
    int64_t time_us;
    char brain[32], cause[24];
    uint32_t crash_count;
    int32_t jar_used, jar_tokens;
};
struct log_rec {
    int64_t time_us;
    char brain[32];
    const char *level;           /* info, warning, error, crash */
    char *message;
    json_t *data;                /* owned; may be NULL */
};
struct web_view_counts {
    uint64_t events, thoughts, observes;
};

struct web_view;

/* n_brains brains (indexes as in the hive's spec), ring_thoughts thoughts kept per brain. NULL when
 * out of memory. */
struct web_view *web_view_new(int n_brains, int ring_thoughts);
void web_view_free(struct web_view *v);

/* One bus event; brain: its index, or -1 (not a local brain). */
void web_view_event(struct web_view *v, const struct bj_event *ev, int brain);
/* Takes the second's sample: memory (sysmem), GPU memory (every 5th), each brain's tokens/s and
 * jar fill from the hive (NULL: none yet). */
void web_view_sample(struct web_view *v, struct bj_hive *hive);

const struct web_view_counts *web_view_counts(const struct web_view *v);
/* Brain b's ring, or NULL for a bad index. */
const struct thought_ring *web_view_thoughts(const struct web_view *v, int b);
/* Newest first, i = 0 .. count-1. */
int web_view_deaths(const struct web_view *v);
const struct death_rec *web_view_death(const struct web_view *v, int i);
int web_view_logs(const struct web_view *v);
const struct log_rec *web_view_log(const struct web_view *v, int i);
/* The last sample's time (unix seconds), 0 before the first. */
int64_t web_view_last_t(const struct web_view *v);

/* An ISO 8601 time of us (microseconds since the epoch), or null when there is none (us <= 0). */
json_t *web_view_iso_or_null(int64_t us);
/* {process_rss, system_total, system_available, gpu_used} of the last sample (nulls before one). */
json_t *web_view_memory_json(const struct web_view *v);
/* Memory in use (0-100, cgroup-aware) and the hottest thermal zone (degrees C) of the last
 * sample; null when unknown or there is no sensor (never invented). */
json_t *web_view_memory_pct_json(const struct web_view *v);
json_t *web_view_temp_json(const struct web_view *v);
/* The series in uPlot's column form (docs/API.md, /api/series), brains named as in snap. */
json_t *web_view_series_json(const struct web_view *v, const struct bj_hive_snapshot *snap);
json_t *web_view_thought_json(const struct bj_thought_rec *r);
json_t *web_view_death_json(const struct death_rec *d);

#endif
