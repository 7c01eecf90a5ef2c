/* routes_prom: the hive and the web server in Prometheus' text exposition format (/metrics). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "routes.h"

/* Prometheus text exposition format. */
struct pbuf { char *s; size_t len, cap; bool oom; };
static void pf(struct pbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void pf(struct pbuf *b, const char *fmt, ...)
{
    for (int tries = 0; tries < 2 && !b->oom; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n + 4096;
        char *p = realloc(b->s, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->s = p;
        b->cap = cap;
    }
}
static void help(struct pbuf *b, const char *name, const char *type, const char *text)
{
    pf(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

struct sub_ctx { struct pbuf *b; int pass; };
static void each_sub(void *ud, struct bj_sub *sub)
{
    struct sub_ctx *c = ud;
    pf(c->b, "%s{subscriber=\"%s\"} %llu\n",
       c->pass == 0 ? "brainjar_bus_dropped_total" : c->pass == 1 ? "brainjar_bus_coalesced_total" : "brainjar_bus_pending",
       bj_sub_name(sub),
       (unsigned long long)(c->pass == 0 ? bj_sub_dropped(sub) : c->pass == 1 ? bj_sub_coalesced(sub) : bj_sub_pending(sub)));
}

char *routes_prometheus_text(const struct web_ctx *w, const struct bj_hive_snapshot *snap, size_t *len)
{
    const struct bj_hive_snapshot s = *snap;
    struct pbuf b = {0};
    help(&b, "brainjar_deaths_total", "counter", "Deaths since the daemon started, by brain and cause.");
    for (int i = 0; i < s.n_brains; i++)
        for (int k = 0; k < BJ_DEATH_CAUSES; k++)
            pf(&b, "brainjar_deaths_total{brain=\"%s\",cause=\"%s\"} %u\n", s.brains[i].id, bj_death_cause_name((enum bj_death_cause)k),
               s.brains[i].deaths_by_cause[k]);
    help(&b, "brainjar_brain_deaths", "gauge", "Deaths of each brain over its whole existence (across restarts).");
    for (int i = 0; i < s.n_brains; i++)
        pf(&b, "brainjar_brain_deaths{brain=\"%s\"} %u\n", s.brains[i].id, s.brains[i].deaths);
    help(&b, "brainjar_tokens_generated_total", "counter", "Tokens generated since the daemon started.");
    for (int i = 0; i < s.n_brains; i++)
        pf(&b, "brainjar_tokens_generated_total{brain=\"%s\"} %llu\n", s.brains[i].id,
           (unsigned long long)s.brains[i].tokens);
    help(&b, "brainjar_tokens_per_second", "gauge", "Recent generation speed.");
    for (int i = 0; i < s.n_brains; i++)
        pf(&b, "brainjar_tokens_per_second{brain=\"%s\"} %.2f\n", s.brains[i].id, s.brains[i].tok_s);
    help(&b, "brainjar_jar_tokens_used", "gauge", "Tokens in the brain's context (its jar) now.");
    for (int i = 0; i < s.n_brains; i++)
        pf(&b, "brainjar_jar_tokens_used{brain=\"%s\"} %d\n", s.brains[i].id, s.brains[i].jar_used);
    help(&b, "brainjar_jar_tokens_capacity", "gauge", "Size of the brain's jar in tokens.");
    for (int i = 0; i < s.n_brains; i++)
        pf(&b, "brainjar_jar_tokens_capacity{brain=\"%s\"} %d\n", s.brains[i].id, s.brains[i].jar_tokens);
    help(&b, "brainjar_brain_life", "gauge", "The brain's current life number.");
    for (int i = 0; i < s.n_brains; i++)
        pf(&b, "brainjar_brain_life{brain=\"%s\"} %u\n", s.brains[i].id, s.brains[i].life);
    help(&b, "brainjar_brain_state", "gauge", "1 for the state the brain is in.");
    for (int i = 0; i < s.n_brains; i++)
        pf(&b, "brainjar_brain_state{brain=\"%s\",state=\"%s\"} 1\n", s.brains[i].id, s.brains[i].state);
    json_t *mem = web_view_memory_json(w->view);
    json_t *rss = json_object_get(mem, "process_rss"), *tot = json_object_get(mem, "system_total"),
           *av = json_object_get(mem, "system_available"), *gpu = json_object_get(mem, "gpu_used");
    if (json_is_integer(rss)) {
        help(&b, "brainjar_process_resident_memory_bytes", "gauge", "Resident memory of the brainjar process.");
        pf(&b, "brainjar_process_resident_memory_bytes %lld\n", (long long)json_integer_value(rss));
    }
    if (json_is_integer(tot)) {
        help(&b, "brainjar_system_memory_total_bytes", "gauge", "Memory of the machine (or its cgroup limit).");
        pf(&b, "brainjar_system_memory_total_bytes %lld\n", (long long)json_integer_value(tot));
        help(&b, "brainjar_system_memory_available_bytes", "gauge", "Memory available to brainjar (cgroup-aware).");
        pf(&b, "brainjar_system_memory_available_bytes %lld\n", (long long)json_integer_value(av));
    }
    if (json_is_integer(gpu)) {
        help(&b, "brainjar_gpu_memory_used_bytes", "gauge", "GPU memory in use (all devices).");
        pf(&b, "brainjar_gpu_memory_used_bytes %lld\n", (long long)json_integer_value(gpu));
    }
    json_decref(mem);
    const struct web_stats *st = w->stats;
    help(&b, "brainjar_ws_clients", "gauge", "WebSocket clients connected.");
    pf(&b, "brainjar_ws_clients %d\n", w->ws_clients);
    help(&b, "brainjar_ws_resyncs_total", "counter", "WebSocket clients resynchronised after falling too far behind.");
    pf(&b, "brainjar_ws_resyncs_total %llu\n", (unsigned long long)st->ws_resyncs);
    help(&b, "brainjar_ws_coalesced_total", "counter", "Token messages merged for lagging WebSocket clients.");
    pf(&b, "brainjar_ws_coalesced_total %llu\n", (unsigned long long)st->ws_coalesced);
    help(&b, "brainjar_http_requests_total", "counter", "HTTP requests answered.");
    pf(&b, "brainjar_http_requests_total %llu\n", (unsigned long long)st->http_requests);
    help(&b, "brainjar_login_failures_total", "counter", "Failed logins.");
    pf(&b, "brainjar_login_failures_total %llu\n", (unsigned long long)st->logins_failed);
    struct sub_ctx sc = {&b, 0};
    help(&b, "brainjar_bus_dropped_total", "counter", "Events a bus subscriber lost (tokens not mergeable, status over capacity).");
    bj_bus_each_sub(w->bus, each_sub, &sc);
    sc.pass = 1;
    help(&b, "brainjar_bus_coalesced_total", "counter", "Tokens merged into an earlier token for a slow bus subscriber.");
    bj_bus_each_sub(w->bus, each_sub, &sc);
    sc.pass = 2;
    help(&b, "brainjar_bus_pending", "gauge", "Events queued for a bus subscriber now.");
    bj_bus_each_sub(w->bus, each_sub, &sc);
    int64_t started = s.started_us ? s.started_us : w->started_us;
    help(&b, "brainjar_start_time_seconds", "gauge", "When the hive started (unix time).");
    pf(&b, "brainjar_start_time_seconds %lld\n", (long long)(started / 1000000));
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    *len = b.len;
    return b.s;
}
