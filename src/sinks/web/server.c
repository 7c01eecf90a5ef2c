/* server: the event loop, connections and the WebSocket fan-out (see web.h); the routes answer
 * HTTP requests (routes.c), the view keeps what the events told (view.c).
 *
 * One thread runs the libwebsockets loop. The bus subscription's eventfd (a dup of it: lws
 * closes what it adopts) is adopted as a raw file, so a queued event makes the loop drain the
 * subscription; a 1 s timer samples memory and sends every client a "tick" (the original's STATE
 * shape plus what the charts need). Nothing else ever touches the loop: bj_web_stop() sets a
 * flag and calls lws_cancel_service().
 *
 * Fan-out. Each drained batch of events is turned into messages once (tokens of one brain and
 * thought that arrive together are merged first); a message is shared, reference-counted, by
 * every client's queue. A client's queue has a soft bound (client_queue): past it, the client is
 * lagging, and its tokens are merged per brain into one pending token instead of queued (the text
 * is kept, its tail when it grows past 16 KiB), ticks replace each other, and lifecycle events
 * (deaths, resurrections, thoughts, operator actions) are still queued, after the pending token of
 * their brain, so order per brain holds. Past the hard bound (client_max) the client is told
 * ("resync") and its queue is replaced by one fresh snapshot (which carries the recent deaths).
 * A slow client therefore costs memory bounded by client_max messages and never slows the hive
 * (the bus never waits for us) or the other clients (lws writes to each when it is writable). */
#include "web.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "log.h"
#include "util.h"
#include "routes.h"
#include "view.h"
#include "workpool.h"

#define PENDING_TEXT_MAX (16 * 1024)
#define WS_BATCH_MSGS 64           /* queued messages sent as one frame (a JSON array) */
#define WS_BATCH_BYTES (64 * 1024)
#define WS_RX_MAX 4096
#define N_SECURITY_HEADERS 7         /* k_security_headers */

/* ---- shared, reference-counted messages ------------------------------------------------- */
enum msg_kind { K_TOKEN, K_LIFE, K_TICK, K_CTRL };
struct msg {
    int refs;
    enum msg_kind kind;
    int brain;     /* index, -1: not about one brain */
    size_t len;
    unsigned char data[]; /* LWS_PRE bytes, then len bytes of JSON */
};

static struct msg *msg_new(enum msg_kind kind, int brain, const char *json, size_t len)
{
    struct msg *m = malloc(sizeof *m + LWS_PRE + len + 1);
    if (!m)
        return NULL;
    m->refs = 1;
    m->kind = kind;
    m->brain = brain;
    m->len = len;
    memcpy(m->data + LWS_PRE, json, len);
    m->data[LWS_PRE + len] = 0;
    return m;
}
static void msg_unref(struct msg *m)
{
    if (m && --m->refs == 0)
        free(m);
}

/* A token being merged for a lagging client (or for a drained batch). */
struct pending_tok {
    bool used;
    uint64_t seq;
    int64_t time_us;
    uint32_t thought, crash_count;
    int32_t jar_used; /* the newest piece's */
    uint32_t pieces;  /* tokens merged */
    char *text;
    size_t len;
};

struct client {
    struct client *prev, *next;
    struct lws *wsi;
    bool authed, dead;
    bool closing;               /* close once the queue is written (a failed authentication) */
    enum bj_role role;
    char user[BJ_AUTH_NAME_MAX + 8];
    uint64_t filter[BJ_MAX_BRAINS / 64]; /* brains it wants; all bits set: everything */
    struct msg **q;
    size_t qhead, qlen, qcap;
    struct pending_tok *pend;   /* per brain, used when lagging */
    int n_pend;
    struct msg *pend_tick;
    bool resync;                /* its queue was dropped: send resync + snapshot next */
    char rx[WS_RX_MAX];
    size_t rxlen;
    bool rx_overflow;
};

/* Per-connection data lws keeps for every wsi of our protocol. */
struct pss {
    struct client *c;           /* WebSocket */
    struct web_req *rq;         /* HTTP: the request being read */
    struct web_resp rs;         /* HTTP: the response being written */
    size_t sent;
    bool responding;
    struct web_login *login;    /* HTTP: a password check this request waits for */
};

struct bj_web {
    struct bj_web_params p;
    char host[256], data_dir[4096], allow_origin[256], trusted_proxy[64], mode[32];
    char host_names[BJ_WEB_HOST_NAMES][256];
    const char *host_name_ptrs[BJ_WEB_HOST_NAMES];
    char tls_cert[4096], tls_key[4096];
    bool loopback;
    int port;
    struct lws_context *ctx;
    struct lws_vhost *vh;
    struct bj_auth *auth;
    struct bj_sub *sub;
    struct bj_hive *hive;
    const struct bj_hive_spec *spec;
    int n_brains;
    pthread_t thread;
    bool running;
    atomic_bool stop;
    int64_t started_us;
    lws_sorted_usec_list_t tick_sul;
    lws_sorted_usec_list_t flush_sul; /* sends the merged tokens of the last drains */
    bool flush_armed;

    struct client *clients;
    int n_clients;

    struct web_view *view;       /* what the events told (view.c) */
    struct web_ctx rctx;         /* what the routes see (ctx_of) */
    struct pending_tok *batch;   /* per brain: tokens merged within one drain */
    struct web_stats stats;
    unsigned char *wbuf;         /* scratch for batched frames */
    size_t wbuf_cap;
    struct bj_workpool *hashers; /* password checks, off this thread */
    struct lws_protocol_vhost_options sec_headers[N_SECURITY_HEADERS]; /* on every response */
    struct web_login *logins;    /* every check handed out and not yet answered or dropped */
};

struct bj_web_params bj_web_default_params(void)
{
    return (struct bj_web_params){
        .host = "127.0.0.1",
        .port = 8095,
        .auth = true,
        .mode = "",
        .ring_thoughts = 200,
        .session_ttl_s = 7 * 24 * 3600,
        .login_max_failures = 5,
        .login_window_s = 60,
        .client_queue = 256,
        .client_max = 4096,
        .hash_threads = 0,
        .hash_queue = 4,
    };
}

int bj_web_port(const struct bj_web *w) { return w->port; }

/* The routes' view of the server, brought up to date. */
static struct web_ctx *ctx_of(struct bj_web *w)
{
    w->rctx = (struct web_ctx){.hive = w->hive, .p = &w->p, .auth = w->auth, .view = w->view, .stats = &w->stats,
                              .bus = w->p.bus, .ws_clients = w->n_clients, .started_us = w->started_us};
    return &w->rctx;
}

/* ---- WebSocket clients ---------------------------------------------------------------- */
static bool wants(const struct client *c, int brain)
{
    if (brain < 0)
        return true;
    return (c->filter[brain / 64] >> (brain % 64)) & 1;
}

static void client_push(struct client *c, struct msg *m)
{
    if (c->qlen == c->qcap) {
        size_t cap = c->qcap ? c->qcap * 2 : 64;
        struct msg **q = malloc(cap * sizeof *q);
        if (!q)
            return; /* out of memory: this message is lost for this client */
        for (size_t i = 0; i < c->qlen; i++)
            q[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = q;
        c->qcap = cap;
        c->qhead = 0;
    }
    m->refs++;
    c->q[(c->qhead + c->qlen) % c->qcap] = m;
    c->qlen++;
}

static void client_clear_queue(struct client *c)
{
    for (size_t i = 0; i < c->qlen; i++)
        msg_unref(c->q[(c->qhead + i) % c->qcap]);
    c->qlen = 0;
    c->qhead = 0;
    for (int b = 0; b < c->n_pend; b++) {
        free(c->pend[b].text);
        memset(&c->pend[b], 0, sizeof c->pend[b]);
    }
    msg_unref(c->pend_tick);
    c->pend_tick = NULL;
}

/* The merged token as one event (the text is p's, borrowed). */
static struct bj_event pend_event(const char *brain, const struct pending_tok *p)
{
    struct bj_event ev = {.type = BJ_EV_TOKEN, .seq = p->seq, .time_us = p->time_us, .thought = p->thought,
                          .crash_count = p->crash_count, .jar_used = p->jar_used, .pieces = p->pieces,
                          .text = p->text ? p->text : (char *)""};
    bj_strlcpy(ev.brain, brain, sizeof ev.brain);
    return ev;
}

/* Appends text to a pending token, keeping the tail when it grows too long. */
static void pend_add(struct pending_tok *p, const struct bj_event *ev, const char *text, size_t len)
{
    if (!p->used || p->thought != ev->thought || p->crash_count != ev->crash_count) {
        free(p->text);
        memset(p, 0, sizeof *p);
        p->used = true;
        p->thought = ev->thought;
        p->crash_count = ev->crash_count;
    }
    p->seq = ev->seq;
    p->jar_used = ev->jar_used;
    p->pieces += ev->pieces > 1 ? ev->pieces : 1;
    if (!p->time_us)
        p->time_us = ev->time_us; /* the first piece's time: a merged token is as late as its oldest part */
    char *t = realloc(p->text, p->len + len + 1);
    if (!t)
        return;
    memcpy(t + p->len, text, len);
    p->len += len;
    t[p->len] = 0;
    p->text = t;
    if (p->len > PENDING_TEXT_MAX) {
        /* Keep the tail, cut at a UTF-8 character boundary. */
        size_t cut = p->len - PENDING_TEXT_MAX / 2;
        while (cut < p->len && ((unsigned char)p->text[cut] & 0xC0) == 0x80)
            cut++;
        memmove(p->text, p->text + cut, p->len - cut + 1);
        p->len -= cut;
    }
}

/* Moves a client's pending token of brain b into its queue. */
static void client_flush_pend(struct bj_web *w, struct client *c, int b)
{
    if (b < 0 || b >= c->n_pend || !c->pend[b].used)
        return;
    struct pending_tok *p = &c->pend[b];
    struct bj_event ev = pend_event(w->spec->brains[b].id, p);
    char *js = bj_event_to_json(&ev);
    if (js) {
        struct msg *m = msg_new(K_TOKEN, b, js, strlen(js));
        if (m) {
            client_push(c, m);
            msg_unref(m);
        }
        free(js);
    }
    free(p->text);
    memset(p, 0, sizeof *p);
}

/* The first start's password: kept for its owner in DATA_DIR/admin-password (0600: the daemon's
 * user and root), shown on a terminal; a journal or a log file gets only where it is. */
static void announce_admin(const char *data_dir, const char *pw)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/admin-password", data_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    bool kept = fd >= 0 && dprintf(fd, "%s\n", pw) > 0;
    if (fd >= 0 && (fsync(fd) != 0 || close(fd) != 0))
        kept = false;
    if (!kept)
        bj_warn("web: cannot keep the first password in %s: %s", path, strerror(errno));
    if (isatty(STDERR_FILENO) || !kept)
        fprintf(stderr,
                "\n  brainjar web: first start, no users yet. Created user 'admin' (operator)\n"
                "  with the password:   %s\n"
                "  (only a hash is kept in %s/web-users%s%s).\n"
                "  Change it with: brainjar passwd admin\n\n",
                pw, data_dir, kept ? "; the password is also in " : "", kept ? path : "");
    else
        bj_info("web: first start, no users yet: created user 'admin' (operator); its password is in %s "
                "(readable by this user and root only). Change it with: brainjar passwd admin", path);
}

static struct msg *snapshot_msg(struct bj_web *w, struct client *c, const char *why);

static void client_deliver(struct bj_web *w, struct client *c, struct msg *m, const struct bj_event *tok)
{
    if (!c->authed || c->dead || c->resync || !wants(c, m->brain))
        return;
    bool lagging = c->qlen >= w->p.client_queue;
    switch (m->kind) {
    case K_TOKEN:
        if (!lagging && !(m->brain >= 0 && m->brain < c->n_pend && c->pend[m->brain].used)) {
            client_push(c, m);
        } else if (tok && m->brain >= 0 && m->brain < c->n_pend) {
            struct pending_tok *p = &c->pend[m->brain];
            if (p->used && (p->thought != tok->thought || p->crash_count != tok->crash_count))
                client_flush_pend(w, c, m->brain);
            pend_add(&c->pend[m->brain], tok, tok->text ? tok->text : "", tok->text ? strlen(tok->text) : 0);
            w->stats.ws_coalesced++;
        }
        break;
    case K_TICK:
        if (!lagging) {
            client_push(c, m);
        } else {
            msg_unref(c->pend_tick);
            m->refs++;
            c->pend_tick = m;
        }
        break;
    default:
        client_flush_pend(w, c, m->brain);
        client_push(c, m);
        break;
    }
    if (c->qlen > w->p.client_max) {
        /* Too far behind: drop what is queued, tell it, and start it again from a snapshot. */
        client_clear_queue(c);
        c->resync = true;
        w->stats.ws_resyncs++;
    }
    lws_callback_on_writable(c->wsi);
}

static void fanout(struct bj_web *w, struct msg *m, const struct bj_event *tok)
{
    for (struct client *c = w->clients; c; c = c->next)
        client_deliver(w, c, m, tok);
}

/* Sends the merged token of brain b (from this drain) to every client. */
static void flush_batch_token(struct bj_web *w, int b)
{
    struct pending_tok *p = &w->batch[b];
    if (!p->used)
        return;
    struct bj_event ev = pend_event(w->spec->brains[b].id, p);
    char *js = bj_event_to_json(&ev);
    if (js) {
        struct msg *m = msg_new(K_TOKEN, b, js, strlen(js));
        if (m) {
            w->stats.ws_messages++;
            fanout(w, m, &ev);
            msg_unref(m);
        }
        free(js);
    }
    free(p->text);
    memset(p, 0, sizeof *p);
}

static void handle_event(struct bj_web *w, struct bj_event *ev)
{
    int b = ev->node[0] ? -1 : routes_brain_index(ctx_of(w), ev->brain);
    web_view_event(w->view, ev, b);
    if (ev->type == BJ_EV_STATUS)
        return; /* the tick carries the state of every brain once a second */
    if (ev->type == BJ_EV_TOKEN && b >= 0) {
        struct pending_tok *p = &w->batch[b];
        if (p->used && (p->thought != ev->thought || p->crash_count != ev->crash_count))
            flush_batch_token(w, b);
        pend_add(p, ev, ev->text ? ev->text : "", ev->text ? strlen(ev->text) : 0);
        return;
    }
    if (b >= 0)
        flush_batch_token(w, b);
    char *js = bj_event_to_json(ev);
    if (!js)
        return;
    struct msg *m = msg_new(ev->type == BJ_EV_TOKEN ? K_TOKEN : K_LIFE, b, js, strlen(js));
    free(js);
    if (!m)
        return;
    w->stats.ws_messages++;
    fanout(w, m, ev->type == BJ_EV_TOKEN ? ev : NULL);
    msg_unref(m);
}

static void flush_tokens(lws_sorted_usec_list_t *sul)
{
    struct bj_web *w = lws_container_of(sul, struct bj_web, flush_sul);
    w->flush_armed = false;
    for (int b = 0; b < w->n_brains; b++)
        flush_batch_token(w, b);
}

/* Tokens wait a little before they fan out, in proportion to the clients: 50 us per client, at
 * most 50 ms. One client gets every drain at once; a thousand get 20 merged messages a second
 * per brain. So the work of fanning out tokens is bounded (about 20000 writes per second per
 * brain however many watch) and the added latency stays under 50 ms. Lifecycle events flush
 * their brain's tokens first, so the order per brain holds. */
static void drain_bus(struct bj_web *w)
{
    struct bj_event ev;
    for (int i = 0; i < 4096; i++) {
        int r = bj_sub_next(w->sub, &ev, 0);
        if (r <= 0)
            break;
        handle_event(w, &ev);
        bj_event_clear(&ev);
    }
    lws_usec_t delay = (lws_usec_t)w->n_clients * 50;
    if (delay > 50000)
        delay = 50000;
    if (delay < 1000) {
        if (w->flush_armed) {
            lws_sul_cancel(&w->flush_sul);
            w->flush_armed = false;
        }
        for (int b = 0; b < w->n_brains; b++)
            flush_batch_token(w, b);
    } else if (!w->flush_armed) {
        w->flush_armed = true;
        lws_sul_schedule(w->ctx, 0, &w->flush_sul, flush_tokens, delay);
    }
}

/* The once-a-second message: every brain's state in the original's shape plus the chart point. */
static void tick(lws_sorted_usec_list_t *sul)
{
    struct bj_web *w = lws_container_of(sul, struct bj_web, tick_sul);
    web_view_sample(w->view, w->hive);
    struct bj_hive_snapshot snap;
    if (w->hive && bj_hive_snapshot(w->hive, &snap) == 0) {
        json_t *inst = json_object(), *brains = json_object();
        for (int i = 0; i < snap.n_brains; i++) {
            const struct bj_brain_view *v = &snap.brains[i];
            json_object_set_new(inst, v->id, routes_state_json(ctx_of(w), &snap, i));
            json_object_set_new(brains, v->id,
                                json_pack("{s:s,s:i,s:i,s:i,s:i,s:i,s:f,s:I}", "state", v->state, "deaths",
                                          (int)v->deaths, "life", (int)v->life, "thought", (int)v->thought,
                                          "jar_used", (int)v->jar_used, "jar_tokens", (int)v->jar_tokens, "tok_s",
                                          v->tok_s, "tokens", (json_int_t)v->tokens));
        }
        json_t *o = json_pack("{s:s,s:I,s:o,s:o,s:o,s:o,s:i,s:f}", "type", "tick", "t",
                              (json_int_t)web_view_last_t(w->view), "memory",
                              web_view_memory_json(w->view), "brains", brains, "instances", inst, "metrics",
                              routes_metrics_json(ctx_of(w), &snap), "ws_clients", w->n_clients, "tok_s", snap.tok_s);
        char *js = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        json_decref(o);
        bj_hive_snapshot_free(&snap);
        if (js) {
            struct msg *m = msg_new(K_TICK, -1, js, strlen(js));
            free(js);
            if (m) {
                fanout(w, m, NULL);
                msg_unref(m);
            }
        }
    }
    lws_sul_schedule(w->ctx, 0, &w->tick_sul, tick, LWS_US_PER_SEC);
}

/* hello + snapshot: what a client gets first, and again after a resync. */
static struct msg *snapshot_msg(struct bj_web *w, struct client *c, const char *why)
{
    struct bj_hive_snapshot snap;
    if (!w->hive || bj_hive_snapshot(w->hive, &snap) != 0)
        return NULL;
    json_t *brains = json_array(), *thoughts = json_object(), *deaths = json_array();
    for (int i = 0; i < snap.n_brains; i++) {
        json_array_append_new(brains, routes_brain_json(ctx_of(w), &snap.brains[i], i));
        json_t *arr = json_array();
        const struct thought_ring *r = web_view_thoughts(w->view, i);
        int from = r && r->n > 20 ? r->n - 20 : 0;
        for (int k = from; r && k < r->n; k++)
            json_array_append_new(arr, web_view_thought_json(&r->recs[(r->head + k) % r->cap]));
        json_object_set_new(thoughts, snap.brains[i].id, arr);
    }
    int nd = web_view_deaths(w->view) < 200 ? web_view_deaths(w->view) : 200;
    for (int i = nd - 1; i >= 0; i--)
        json_array_append_new(deaths, web_view_death_json(web_view_death(w->view, i)));
    char started[40];
    bj_iso_time_us(snap.started_us, started, sizeof started);
    json_t *o = json_pack("{s:s,s:s?,s:{s:s,s:s},s:{s:s,s:s,s:I,s:I,s:f},s:o,s:o,s:o,s:o,s:o}", "type", "snapshot",
                          "reason", why, "you", "user", c->user, "role", bj_role_name(c->role), "hive", "mode",
                          w->mode, "started", started, "deaths", (json_int_t)snap.deaths, "tokens",
                          (json_int_t)snap.tokens, "tok_s", snap.tok_s, "brains", brains, "thoughts", thoughts,
                          "deaths", deaths, "series", web_view_series_json(w->view, &snap), "memory", web_view_memory_json(w->view));
    bj_hive_snapshot_free(&snap);
    char *js = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(o);
    if (!js)
        return NULL;
    struct msg *m = msg_new(K_CTRL, -1, js, strlen(js));
    free(js);
    return m;
}

static struct msg *ctrl_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static struct msg *ctrl_msg(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return msg_new(K_CTRL, -1, buf, (size_t)(n < (int)sizeof buf ? n : (int)sizeof buf - 1));
}

static void client_welcome(struct bj_web *w, struct client *c, const char *why)
{
    struct msg *m = snapshot_msg(w, c, why);
    if (m) {
        client_push(c, m);
        msg_unref(m);
    }
    lws_callback_on_writable(c->wsi);
}

static void client_reply(struct client *c, struct msg *m)
{
    if (!m)
        return;
    client_push(c, m);
    msg_unref(m);
    lws_callback_on_writable(c->wsi);
}

/* Messages from a client: {"type":"auth","token":...}, {"type":"filter","brains":[...]}, ping. */
static int client_rx(struct bj_web *w, struct client *c, const char *text, size_t len)
{
    json_error_t jerr;
    json_t *o = json_loadb(text, len, 0, &jerr);
    const char *type = o ? json_string_value(json_object_get(o, "type")) : NULL;
    int rc = 0;
    if (!type) {
        client_reply(c, ctrl_msg("{\"type\":\"error\",\"error\":\"Malformed message\"}"));
    } else if (strcmp(type, "auth") == 0) {
        const char *tok = json_string_value(json_object_get(o, "token"));
        char name[96] = "";
        enum bj_role role = BJ_ROLE_NONE;
        if (tok) {
            bj_auth_refresh(w->auth);
            role = bj_auth_token(w->auth, tok, name, sizeof name);
            if (role == BJ_ROLE_NONE)
                role = bj_auth_session(w->auth, tok, name, sizeof name);
        }
        if (role == BJ_ROLE_NONE) {
            client_reply(c, ctrl_msg("{\"type\":\"error\",\"error\":\"Authentication required\"}"));
            c->closing = !c->authed; /* an unauthenticated client gets one try */
        } else if (!c->authed) {
            c->authed = true;
            c->role = role;
            bj_strlcpy(c->user, name, sizeof c->user);
            lws_set_timeout(c->wsi, NO_PENDING_TIMEOUT, 0);
            client_welcome(w, c, NULL);
        }
    } else if (!c->authed) {
        client_reply(c, ctrl_msg("{\"type\":\"error\",\"error\":\"Authentication required\"}"));
        c->closing = true;
    } else if (strcmp(type, "filter") == 0) {
        json_t *arr = json_object_get(o, "brains");
        if (json_is_null(arr) || !arr) {
            memset(c->filter, 0xff, sizeof c->filter);
        } else if (json_is_array(arr)) {
            memset(c->filter, 0, sizeof c->filter);
            size_t i;
            json_t *v;
            json_array_foreach(arr, i, v) {
                int b = json_is_string(v) ? routes_brain_index(ctx_of(w), json_string_value(v)) : -1;
                if (b >= 0)
                    c->filter[b / 64] |= 1ull << (b % 64);
            }
        }
        client_reply(c, ctrl_msg("{\"type\":\"filter\",\"ok\":true}"));
    } else if (strcmp(type, "ping") == 0) {
        client_reply(c, ctrl_msg("{\"type\":\"pong\",\"t\":%lld}", (long long)(bj_event_now() / 1000)));
    } else if (strcmp(type, "snapshot") == 0) {
        client_welcome(w, c, "asked");
    } else {
        client_reply(c, ctrl_msg("{\"type\":\"error\",\"error\":\"Unknown message type\"}"));
    }
    json_decref(o);
    return rc;
}

static int client_write(struct bj_web *w, struct client *c)
{
    if (c->resync) {
        c->resync = false;
        struct msg *r = ctrl_msg("{\"type\":\"resync\",\"reason\":\"too far behind; here is a fresh snapshot\"}");
        if (r) {
            client_push(c, r);
            msg_unref(r);
        }
        struct msg *s = snapshot_msg(w, c, "resync");
        if (s) {
            client_push(c, s);
            msg_unref(s);
        }
    }
    if (c->qlen == 0) {
        /* Caught up: what was held back while lagging goes out now. */
        for (int b = 0; b < c->n_pend; b++)
            client_flush_pend(w, c, b);
        if (c->pend_tick) {
            client_push(c, c->pend_tick);
            msg_unref(c->pend_tick);
            c->pend_tick = NULL;
        }
    }
    if (c->qlen == 0) {
        if (c->closing) {
            lws_close_reason(c->wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION, (unsigned char *)"unauthenticated", 15);
            return -1;
        }
        return 0;
    }
    /* Several queued messages go out as one frame, a JSON array: one write instead of many
     * (lws allows one write per writable callback; the syscalls are most of the fan-out cost). */
    size_t k = 0, bytes = 2;
    while (k < c->qlen && k < WS_BATCH_MSGS) {
        const struct msg *m = c->q[(c->qhead + k) % c->qcap];
        if (k > 0 && bytes + m->len + 1 > WS_BATCH_BYTES)
            break;
        bytes += m->len + 1;
        k++;
    }
    int n;
    if (k == 1) {
        struct msg *m = c->q[c->qhead];
        n = lws_write(c->wsi, m->data + LWS_PRE, m->len, LWS_WRITE_TEXT);
    } else {
        if (w->wbuf_cap < LWS_PRE + bytes) {
            unsigned char *b = realloc(w->wbuf, LWS_PRE + bytes);
            if (!b)
                return -1;
            w->wbuf = b;
            w->wbuf_cap = LWS_PRE + bytes;
        }
        unsigned char *p = w->wbuf + LWS_PRE;
        *p++ = '[';
        for (size_t i = 0; i < k; i++) {
            const struct msg *m = c->q[(c->qhead + i) % c->qcap];
            if (i)
                *p++ = ',';
            memcpy(p, m->data + LWS_PRE, m->len);
            p += m->len;
        }
        *p++ = ']';
        n = lws_write(c->wsi, w->wbuf + LWS_PRE, (size_t)(p - (w->wbuf + LWS_PRE)), LWS_WRITE_TEXT);
    }
    for (size_t i = 0; i < k; i++) {
        msg_unref(c->q[c->qhead]);
        c->qhead = (c->qhead + 1) % c->qcap;
        c->qlen--;
    }
    if (n < 0)
        return -1;
    if (c->qlen || c->resync || c->closing)
        lws_callback_on_writable(c->wsi);
    else {
        for (int b = 0; b < c->n_pend; b++)
            if (c->pend[b].used) {
                lws_callback_on_writable(c->wsi);
                break;
            }
        if (c->pend_tick)
            lws_callback_on_writable(c->wsi);
    }
    return 0;
}

static void client_free(struct bj_web *w, struct client *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        w->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_clients--;
    client_clear_queue(c);
    free(c->q);
    free(c->pend);
    free(c);
}

/* ---- HTTP plumbing ------------------------------------------------------------------- */
static void copy_hdr(struct lws *wsi, enum lws_token_indexes t, char *buf, size_t len)
{
    buf[0] = 0;
    if (lws_hdr_total_length(wsi, t) > 0 && lws_hdr_total_length(wsi, t) < (int)len)
        lws_hdr_copy(wsi, buf, (int)len, t);
}

static void cookie_value(const char *cookies, const char *name, char *out, size_t len)
{
    out[0] = 0;
    size_t nl = strlen(name);
    const char *p = cookies;
    while (p && *p) {
        while (*p == ' ' || *p == ';')
            p++;
        if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
            p += nl + 1;
            size_t n = strcspn(p, ";");
            if (n < len) {
                memcpy(out, p, n);
                out[n] = 0;
            }
            return;
        }
        p = strchr(p, ';');
    }
}

/* The client's address: the socket peer, or the last X-Forwarded-For hop added by a trusted proxy. */
static void peer_addr(struct bj_web *w, struct lws *wsi, char *out, size_t len)
{
    lws_get_peer_simple(wsi, out, len);
    /* IPv4-mapped IPv6 reads as IPv4, so one client has one key. */
    if (strncmp(out, "::ffff:", 7) == 0)
        memmove(out, out + 7, strlen(out + 7) + 1);
    if (!w->trusted_proxy[0] || strcmp(out, w->trusted_proxy) != 0)
        return;
    char xff[512];
    copy_hdr(wsi, WSI_TOKEN_X_FORWARDED_FOR, xff, sizeof xff);
    if (!xff[0])
        return;
    char *last = strrchr(xff, ',');
    last = last ? last + 1 : xff;
    while (*last == ' ')
        last++;
    if (*last && strlen(last) < len)
        bj_strlcpy(out, last, len);
}

bool bj_web_host_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 253 || s[0] == '-' || s[0] == '.')
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '.' && *s != '-')
            return false;
    return true;
}

/* TLS of our own, or a trusted proxy's that says so (X-Forwarded-Proto: https). */
static bool came_over_tls(const struct bj_web *w, struct lws *wsi)
{
    if (lws_is_ssl(wsi))
        return true;
    if (!w->trusted_proxy[0])
        return false;
    char peer[64], proto[16] = "";
    lws_get_peer_simple(wsi, peer, sizeof peer);
    const char *pp = strncmp(peer, "::ffff:", 7) == 0 ? peer + 7 : peer;
    if (strcmp(pp, w->trusted_proxy) != 0)
        return false;
    if (lws_hdr_custom_length(wsi, "x-forwarded-proto:", 18) > 0)
        lws_hdr_custom_copy(wsi, proto, sizeof proto, "x-forwarded-proto:", 18);
    return strcasecmp(proto, "https") == 0;
}

static void read_request(struct bj_web *w, struct lws *wsi, struct web_req *rq)
{
    char *uri = NULL;
    int ulen = 0;
    int m = lws_http_get_uri_and_method(wsi, &uri, &ulen);
    static const enum web_method map[] = {M_GET, M_POST, M_OPTIONS, M_PUT, M_PATCH, M_DELETE, M_OTHER, M_HEAD, M_OTHER};
    rq->method = m >= 0 && m < (int)BJ_ARRAY_LEN(map) ? map[m] : M_OTHER;
    if (uri && ulen > 0)
        snprintf(rq->path, sizeof rq->path, "%.*s", ulen, uri);
    else
        bj_strlcpy(rq->path, "/", sizeof rq->path);
    /* The query, re-joined from lws's decoded fragments. */
    rq->query[0] = 0;
    char frag[512];
    for (int i = 0; lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i) > 0; i++) {
        size_t ql = strlen(rq->query);
        snprintf(rq->query + ql, sizeof rq->query - ql, "%s%s", ql ? "&" : "", frag);
    }
    peer_addr(w, wsi, rq->peer, sizeof rq->peer);
    char cookies[1024];
    copy_hdr(wsi, WSI_TOKEN_HTTP_COOKIE, cookies, sizeof cookies);
    cookie_value(cookies, "bj_session", rq->session, sizeof rq->session);
    char authz[256];
    copy_hdr(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, authz, sizeof authz);
    rq->has_auth_header = authz[0] != 0;
    if (strncasecmp(authz, "Bearer ", 7) == 0)
        bj_strlcpy(rq->bearer, authz + 7, sizeof rq->bearer);
    copy_hdr(wsi, WSI_TOKEN_ORIGIN, rq->origin, sizeof rq->origin);
    copy_hdr(wsi, WSI_TOKEN_HOST, rq->host, sizeof rq->host);
    copy_hdr(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, rq->ctype, sizeof rq->ctype);
    rq->https = came_over_tls(w, wsi);
    rq->host_ok = routes_host_ok(ctx_of(w), rq->host);
}

static const char *const k_security_headers[N_SECURITY_HEADERS][2] = {
    {"content-security-policy:",
     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
     "font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"},
    {"x-content-type-options:", "nosniff"},
    {"x-frame-options:", "DENY"},
    {"referrer-policy:", "no-referrer"},
    {"cross-origin-opener-policy:", "same-origin"},
    {"cross-origin-resource-policy:", "same-origin"},
    {"permissions-policy:", "camera=(), microphone=(), geolocation=()"},
};

/* RFC 9110's reason phrases for the statuses we send (libwebsockets names only some of them). */
static const char *reason_phrase(int code)
{
    static const struct { int code; const char *text; } k[] = {
        {200, "OK"}, {201, "Created"}, {202, "Accepted"}, {204, "No Content"}, {301, "Moved Permanently"},
        {302, "Found"}, {304, "Not Modified"}, {400, "Bad Request"}, {401, "Unauthorized"}, {403, "Forbidden"},
        {404, "Not Found"}, {405, "Method Not Allowed"}, {408, "Request Timeout"}, {409, "Conflict"},
        {413, "Content Too Large"}, {415, "Unsupported Media Type"}, {421, "Misdirected Request"},
        {429, "Too Many Requests"}, {500, "Internal Server Error"}, {503, "Service Unavailable"},
    };
    for (size_t i = 0; i < BJ_ARRAY_LEN(k); i++)
        if (k[i].code == code)
            return k[i].text;
    return code < 300 ? "OK" : code < 400 ? "Redirect" : code < 500 ? "Client Error" : "Server Error";
}

/* libwebsockets wrote "HTTP/1.x CODE \r\n" at start (without a phrase for 202, 204, 429, ...):
 * rewrite that first line with the reason phrase, moving what follows. */
static int set_status_line(unsigned char *start, unsigned char **p, unsigned char *end, int code)
{
    unsigned char *eol = memchr(start, '\r', (size_t)(*p - start));
    if (!eol || eol - start < 13)
        return -1;
    char line[64];
    int n = snprintf(line, sizeof line, "%.8s %d %s", (const char *)start, code, reason_phrase(code));
    ptrdiff_t grow = n - (eol - start);
    if (*p + grow >= end)
        return -1;
    memmove(eol + grow, eol, (size_t)(*p - eol));
    memcpy(start, line, (size_t)n);
    *p += grow;
    return 0;
}

static int send_headers(struct bj_web *w, struct lws *wsi, struct pss *ps, const struct web_req *rq)
{
    struct web_resp *rs = &ps->rs;
    unsigned char buf[LWS_PRE + 4096], *start = buf + LWS_PRE, *p = start, *end = buf + sizeof buf - 1;
    /* The security headers come with the status line: they are the vhost's headers, which
     * libwebsockets adds to every response, its own error pages included. */
    if (lws_add_http_common_headers(wsi, (unsigned)rs->status, rs->ctype ? rs->ctype : "application/json",
                                    rs->len, &p, end) ||
        set_status_line(start, &p, end, rs->status))
        return -1;
    /* CORS only for the one origin allowed. */
    if (w->allow_origin[0] && rq && rq->origin[0] && strcmp(rq->origin, w->allow_origin) == 0) {
        routes_resp_header(rs, "access-control-allow-origin:", "%s", w->allow_origin);
        routes_resp_header(rs, "access-control-allow-credentials:", "true");
        routes_resp_header(rs, "vary:", "Origin");
    }
    for (int i = 0; i < rs->n_headers; i++)
        if (lws_add_http_header_by_name(wsi, (const unsigned char *)rs->hname[i], (const unsigned char *)rs->hval[i],
                                        (int)strlen(rs->hval[i]), &p, end))
            return -1;
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    return 0;
}

static void resp_free(struct web_resp *rs)
{
    if (!rs->body_static)
        free(rs->body);
    memset(rs, 0, sizeof *rs);
}

static void req_free(struct pss *ps)
{
    if (ps->rq) {
        free(ps->rq->body);
        free(ps->rq);
        ps->rq = NULL;
    }
}

/* Sends ps->rs for the request in ps->rq: headers now, the body when writable. */
static int send_response(struct bj_web *w, struct lws *wsi, struct pss *ps)
{
    struct web_req *rq = ps->rq;
    w->stats.http_requests++;
    if (ps->rs.status >= 400)
        w->stats.http_errors++;
    if (rq->method == M_HEAD) {
        /* Headers only. */
        if (!ps->rs.body_static)
            free(ps->rs.body);
        ps->rs.body = NULL;
        ps->rs.body_static = true;
    }
    int rc = send_headers(w, wsi, ps, rq);
    req_free(ps);
    if (rc)
        return -1;
    ps->sent = 0;
    ps->responding = true;
    if (!ps->rs.body || ps->rs.len == 0) {
        ps->responding = false;
        resp_free(&ps->rs);
        return lws_http_transaction_completed(wsi) ? -1 : 0;
    }
    lws_callback_on_writable(wsi);
    return 0;
}

/* ---- password checks on the hash workers ----------------------------------------------------
 * A login's Argon2id check (150-300 ms) runs on a worker; the connection waits (lws keeps serving
 * everyone else) and is answered from its writable callback once the check is collected. A worker
 * wakes the loop with lws_cancel_service(); the loop then collects every finished check
 * (LWS_CALLBACK_EVENT_WAIT_CANCELLED). A connection that closes meanwhile leaves its check behind,
 * freed when collected. When every worker and queue slot is taken, the login is answered 503 at
 * once: a flood of logins costs the loop almost nothing. */
static void hashers_wake(void *ud)
{
    struct bj_web *w = ud;
    lws_cancel_service(w->ctx);
}

static void login_unlink(struct bj_web *w, struct web_login *job)
{
    if (job->prev)
        job->prev->next = job->next;
    else
        w->logins = job->next;
    if (job->next)
        job->next->prev = job->prev;
    job->prev = job->next = NULL;
}

static int login_submit(struct bj_web *w, struct lws *wsi, struct pss *ps, struct web_login *job)
{
    job->wsi = wsi;
    if (!w->hashers || bj_workpool_submit(w->hashers, routes_login_check, job) != 0)
        return -1;
    job->next = w->logins;
    if (w->logins)
        w->logins->prev = job;
    w->logins = job;
    ps->login = job;
    return 0;
}

static void logins_collect(struct bj_web *w)
{
    struct web_login *job;
    while (w->hashers && (job = bj_workpool_done(w->hashers))) {
        job->checked = true;
        if (job->wsi) {
            lws_callback_on_writable(job->wsi);
        } else {
            login_unlink(w, job);
            routes_login_free(job);
        }
    }
}

/* The connection's check is done: answer it. */
static int login_answer(struct bj_web *w, struct lws *wsi, struct pss *ps)
{
    struct web_login *job = ps->login;
    ps->login = NULL;
    login_unlink(w, job);
    resp_free(&ps->rs);
    routes_login_finish(ctx_of(w), ps->rq, &ps->rs, job);
    routes_login_free(job);
    return send_response(w, wsi, ps);
}

/* The connection closes: a check still out is freed when collected. */
static void login_drop(struct bj_web *w, struct pss *ps)
{
    struct web_login *job = ps->login;
    if (!job)
        return;
    ps->login = NULL;
    job->wsi = NULL;
    if (job->checked) {
        login_unlink(w, job);
        routes_login_free(job);
    }
}

/* Answers the request in ps->rq (or hands its password check to a worker). */
static int respond(struct bj_web *w, struct lws *wsi, struct pss *ps)
{
    resp_free(&ps->rs);
    routes_handle(ctx_of(w), ps->rq, &ps->rs);
    if (ps->rs.defer) {
        struct web_login *job = ps->rs.defer;
        ps->rs.defer = NULL;
        if (login_submit(w, wsi, ps, job) == 0)
            return 0;
        routes_login_free(job);
        resp_free(&ps->rs);
        routes_login_busy(&ps->rs);
    }
    return send_response(w, wsi, ps);
}

static int write_body(struct lws *wsi, struct pss *ps)
{
    if (!ps->responding)
        return 0;
    unsigned char buf[LWS_PRE + 16384];
    size_t n = ps->rs.len - ps->sent;
    if (n > 16384)
        n = 16384;
    memcpy(buf + LWS_PRE, ps->rs.body + ps->sent, n);
    bool last = ps->sent + n == ps->rs.len;
    if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) != (int)n)
        return -1;
    ps->sent += n;
    if (!last) {
        lws_callback_on_writable(wsi);
        return 0;
    }
    ps->responding = false;
    resp_free(&ps->rs);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* A WebSocket upgrade is for /ws only, from our own origin (or the allowed one). */
static int ws_filter(struct bj_web *w, struct lws *wsi)
{
    char uri[256];
    copy_hdr(wsi, WSI_TOKEN_GET_URI, uri, sizeof uri);
    if (strcmp(uri, "/ws") != 0)
        return -1;
    char origin[256], host[256];
    copy_hdr(wsi, WSI_TOKEN_ORIGIN, origin, sizeof origin);
    copy_hdr(wsi, WSI_TOKEN_HOST, host, sizeof host);
    if (!routes_host_ok(ctx_of(w), host)) {
        bj_warn("web: refused a WebSocket for host %s (not one of ours: --web-host-name)", host);
        return -1;
    }
    if (origin[0] && !routes_origin_ok(ctx_of(w), origin, host, came_over_tls(w, wsi))) {
        bj_warn("web: refused a WebSocket from origin %s", origin);
        return -1;
    }
    return 0;
}

static int ws_established(struct bj_web *w, struct lws *wsi, struct pss *ps)
{
    struct client *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->wsi = wsi;
    /* A small kernel send buffer: a client that stops reading shows up as a lagging queue here,
     * where tokens are merged and deaths kept, instead of megabytes hidden in the kernel. */
    int sndbuf = 64 * 1024;
    setsockopt(lws_get_socket_fd(wsi), SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    memset(c->filter, 0xff, sizeof c->filter);
    c->n_pend = w->n_brains;
    c->pend = calloc((size_t)(w->n_brains ? w->n_brains : 1), sizeof *c->pend);
    if (!c->pend) {
        free(c);
        return -1;
    }
    c->next = w->clients;
    if (w->clients)
        w->clients->prev = c;
    w->clients = c;
    w->n_clients++;
    ps->c = c;
    /* Already authenticated by the session cookie or an Authorization header? */
    char cookies[1024], session[96], authz[256];
    copy_hdr(wsi, WSI_TOKEN_HTTP_COOKIE, cookies, sizeof cookies);
    cookie_value(cookies, "bj_session", session, sizeof session);
    copy_hdr(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, authz, sizeof authz);
    bj_auth_refresh(w->auth);
    if (!w->p.auth) {
        c->authed = true;
        c->role = BJ_ROLE_OPERATOR;
        bj_strlcpy(c->user, "anonymous", sizeof c->user);
    } else if (session[0] && (c->role = bj_auth_session(w->auth, session, c->user, sizeof c->user))) {
        c->authed = true;
    } else if (strncasecmp(authz, "Bearer ", 7) == 0) {
        /* An API token, or the session id that POST /login returned as "token". */
        c->role = bj_auth_token(w->auth, authz + 7, c->user, sizeof c->user);
        if (c->role == BJ_ROLE_NONE)
            c->role = bj_auth_session(w->auth, authz + 7, c->user, sizeof c->user);
        c->authed = c->role != BJ_ROLE_NONE;
    }
    /* A URL filter: /ws?brain=A&brain=B */
    char frag[128];
    bool filtered = false;
    for (int i = 0; lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i) > 0; i++) {
        if (strncmp(frag, "brain=", 6) != 0)
            continue;
        if (!filtered)
            memset(c->filter, 0, sizeof c->filter);
        filtered = true;
        int b = routes_brain_index(ctx_of(w), frag + 6);
        if (b >= 0)
            c->filter[b / 64] |= 1ull << (b % 64);
    }
    if (c->authed)
        client_welcome(w, c, NULL);
    else
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, 10); /* 10 s to authenticate */
    return 0;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct lws_vhost *vh = lws_get_vhost(wsi);
    struct bj_web *w = vh ? lws_vhost_user(vh) : NULL;
    if (!w)
        w = lws_context_user(lws_get_context(wsi));
    struct pss *ps = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP: {
        if (!ps)
            return -1;
        req_free(ps);
        resp_free(&ps->rs);
        ps->rq = calloc(1, sizeof *ps->rq);
        if (!ps->rq)
            return -1;
        read_request(w, wsi, ps->rq);
        if (ps->rq->method == M_POST || ps->rq->method == M_PUT || ps->rq->method == M_PATCH) {
            char cl[32];
            copy_hdr(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, cl, sizeof cl);
            long n = cl[0] ? strtol(cl, NULL, 10) : 0;
            if (n > WEB_BODY_MAX)
                ps->rq->body_too_big = true;
            if (n > 1024 * 1024)
                return respond(w, wsi, ps); /* not worth reading: answered now, closed when the body comes */
            /* lws reports the body's end (also for Content-Length: 0); the answer waits for it. */
            if (cl[0] || lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0)
                return 0;
        }
        return respond(w, wsi, ps);
    }
    case LWS_CALLBACK_HTTP_BODY:
        if (!ps || !ps->rq)
            return -1;
        if (ps->rq->body_too_big)
            return 0;
        if (ps->rq->body_len + len > WEB_BODY_MAX) {
            ps->rq->body_too_big = true;
            free(ps->rq->body);
            ps->rq->body = NULL;
            return 0;
        } else {
            char *b = realloc(ps->rq->body, ps->rq->body_len + len + 1);
            if (!b)
                return -1;
            if (len) /* an empty body chunk may come with in == NULL */
                memcpy(b + ps->rq->body_len, in, len);
            ps->rq->body_len += len;
            b[ps->rq->body_len] = 0;
            ps->rq->body = b;
        }
        return 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (!ps)
            return -1;
        if (!ps->rq)
            return 0; /* answered already */
        return respond(w, wsi, ps);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (ps && ps->login)
            return ps->login->checked ? login_answer(w, wsi, ps) : 0;
        return ps ? write_body(wsi, ps) : 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (w)
            logins_collect(w);
        return 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (ps) {
            login_drop(w, ps);
            req_free(ps);
            resp_free(&ps->rs);
        }
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return ws_filter(w, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        return ws_established(w, wsi, ps);
    case LWS_CALLBACK_RECEIVE: {
        struct client *c = ps ? ps->c : NULL;
        if (!c)
            return -1;
        if (c->rxlen + len > sizeof c->rx)
            c->rx_overflow = true;
        else {
            memcpy(c->rx + c->rxlen, in, len);
            c->rxlen += len;
        }
        if (!lws_is_final_fragment(wsi) || lws_remaining_packet_payload(wsi))
            return 0;
        int rc = 0;
        if (c->rx_overflow)
            client_reply(c, ctrl_msg("{\"type\":\"error\",\"error\":\"Message too large\"}"));
        else
            rc = client_rx(w, c, c->rx, c->rxlen);
        c->rxlen = 0;
        c->rx_overflow = false;
        return rc;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return ps && ps->c ? client_write(w, ps->c) : 0;
    case LWS_CALLBACK_CLOSED:
        if (ps && ps->c) {
            client_free(w, ps->c);
            ps->c = NULL;
        }
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* The bus subscription's eventfd, adopted as a raw file. */
static int bus_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct bj_web *w = lws_context_user(lws_get_context(wsi));
    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE:
        drain_bus(w);
        return 0;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
        return 0;
    default:
        return 0;
    }
}

static struct lws_protocols k_protocols[] = {
    {"brainjar", callback, sizeof(struct pss), WS_RX_MAX, 0, NULL, 0},
    {"bj-bus", bus_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lws_log_to_bj(int level, const char *line)
{
    char buf[512];
    bj_strlcpy(buf, line, sizeof buf);
    buf[strcspn(buf, "\r\n")] = 0;
    if (level & LLL_ERR)
        bj_warn("web: libwebsockets: %s", buf);
    else
        bj_debug("web: libwebsockets: %s", buf);
}

static bool is_loopback(const char *host)
{
    if (strcmp(host, "localhost") == 0)
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

/* Binds host:port once ourselves, to say clearly why lws could not. 0 or -errno. */
static int probe_bind(const char *host, int port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    int rc = getaddrinfo(host, ps, &hints, &res);
    if (rc) {
        snprintf(err, errlen, "--web-host %s: %s", host, gai_strerror(rc));
        return -EINVAL;
    }
    int e = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            e = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 && listen(fd, 1) == 0) {
            close(fd);
            e = 0;
            break;
        }
        e = -errno;
        close(fd);
    }
    freeaddrinfo(res);
    if (e == -EADDRINUSE)
        snprintf(err, errlen,
                 "cannot listen on %s:%d: the port is in use (another brainjar?); pick another with --web-port, "
                 "or --no-web",
                 host, port);
    else if (e)
        snprintf(err, errlen, "cannot listen on %s:%d: %s", host, port, strerror(-e));
    return e;
}

/* Copies and checks the params (bj_web_new's first step). 0, or -1 with err. */
static int take_params(struct bj_web *w, const struct bj_web_params *p, char *err, size_t errlen)
{
    w->p = *p;
    bj_strlcpy(w->host, p->host && p->host[0] ? p->host : "127.0.0.1", sizeof w->host);
    bj_strlcpy(w->data_dir, p->data_dir ? p->data_dir : ".", sizeof w->data_dir);
    bj_strlcpy(w->allow_origin, p->allow_origin ? p->allow_origin : "", sizeof w->allow_origin);
    bj_strlcpy(w->trusted_proxy, p->trusted_proxy ? p->trusted_proxy : "", sizeof w->trusted_proxy);
    bj_strlcpy(w->mode, p->mode ? p->mode : "", sizeof w->mode);
    w->p.host = w->host;
    w->p.data_dir = w->data_dir;
    w->p.allow_origin = w->allow_origin;
    w->p.trusted_proxy = w->trusted_proxy;
    w->p.mode = w->mode;
    if (p->n_host_names < 0 || p->n_host_names > BJ_WEB_HOST_NAMES) {
        snprintf(err, errlen, "web: at most %d host names", BJ_WEB_HOST_NAMES);
        return -1;
    }
    for (int i = 0; i < p->n_host_names; i++) {
        if (!bj_web_host_name_valid(p->host_names[i])) {
            snprintf(err, errlen, "--web-host-name '%.100s' is not a host name", p->host_names[i]);
            return -1;
        }
        bj_strlcpy(w->host_names[i], p->host_names[i], sizeof w->host_names[i]);
    }
    for (int i = 0; i < BJ_WEB_HOST_NAMES; i++)
        w->host_name_ptrs[i] = w->host_names[i];
    w->p.host_names = w->host_name_ptrs; /* our copies */
    bj_strlcpy(w->tls_cert, p->tls_cert ? p->tls_cert : "", sizeof w->tls_cert);
    bj_strlcpy(w->tls_key, p->tls_key ? p->tls_key : "", sizeof w->tls_key);
    w->p.tls_cert = w->tls_cert[0] ? w->tls_cert : NULL;
    w->p.tls_key = w->tls_key[0] ? w->tls_key : NULL;
    if (!w->tls_cert[0] != !w->tls_key[0]) {
        snprintf(err, errlen, "--web-tls-cert and --web-tls-key go together");
        return -1;
    }
    for (int i = 0; i < 2 && w->tls_cert[0]; i++) {
        const char *f = i ? w->tls_key : w->tls_cert;
        if (access(f, R_OK) != 0) {
            snprintf(err, errlen, "%s %s: %s", i ? "--web-tls-key" : "--web-tls-cert", f, strerror(errno));
            return -1;
        }
    }
    if (w->p.ring_thoughts < 1)
        w->p.ring_thoughts = 200;
    if (w->p.client_queue < 8)
        w->p.client_queue = 8;
    if (w->p.client_max < w->p.client_queue * 2)
        w->p.client_max = w->p.client_queue * 2;
    w->loopback = is_loopback(w->host);

    if (!w->p.auth && !w->loopback) {
        snprintf(err, errlen, "--web-auth off is allowed only on a loopback address (not --web-host %s)", w->host);
        return -1;
    }
    if (w->p.metrics_public && !w->loopback) {
        snprintf(err, errlen, "--metrics-public is allowed only on a loopback address (not --web-host %s)", w->host);
        return -1;
    }
    if (w->allow_origin[0] && (strncmp(w->allow_origin, "http://", 7) != 0 && strncmp(w->allow_origin, "https://", 8) != 0)) {
        snprintf(err, errlen, "--web-allow-origin '%s' is not an origin (scheme://host[:port])", w->allow_origin);
        return -1;
    }
    return 0;
}

/* The libwebsockets context and our vhost (listening, TLS when asked). 0, or -1 with err and
 * *status. */
static int start_lws(struct bj_web *w, int *status, char *err, size_t errlen)
{
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_to_bj);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DISABLE_IPV6 * !strchr(w->host, ':');
    if (w->tls_cert[0])
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.user = w;
    info.timeout_secs = 10;
    w->ctx = lws_create_context(&info);
    if (!w->ctx) {
        snprintf(err, errlen, "web: libwebsockets could not start");
        return -1;
    }
    memset(&info, 0, sizeof info);
    info.port = w->p.port;
    info.iface = w->host;
    info.protocols = k_protocols;
    info.vhost_name = "brainjar";
    info.user = w;
    info.timeout_secs = 10;
    info.keepalive_timeout = 30;
    info.options = LWS_SERVER_OPTION_VALIDATE_UTF8 | (strchr(w->host, ':') ? 0 : LWS_SERVER_OPTION_DISABLE_IPV6);
    for (int i = 0; i < N_SECURITY_HEADERS; i++) {
        w->sec_headers[i].next = i + 1 < N_SECURITY_HEADERS ? &w->sec_headers[i + 1] : NULL;
        w->sec_headers[i].name = k_security_headers[i][0];
        w->sec_headers[i].value = k_security_headers[i][1];
    }
    info.headers = w->sec_headers;
    if (w->tls_cert[0]) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT; /* lws checks it on the vhost too */
        info.ssl_cert_filepath = w->tls_cert;
        info.ssl_private_key_filepath = w->tls_key;
        info.alpn = "http/1.1"; /* the routes and the WebSocket speak HTTP/1.1 */
    }
    w->vh = lws_create_vhost(w->ctx, &info);
    if (!w->vh) {
        *status = 2;
        if (!probe_bind(w->host, w->p.port, err, errlen))
            snprintf(err, errlen, w->tls_cert[0] ? "cannot listen on %s:%d with TLS: are --web-tls-cert and "
                                                   "--web-tls-key a PEM certificate and its key?"
                                                 : "cannot listen on %s:%d",
                     w->host, w->p.port);
        return -1;
    }
    return 0;
}

struct bj_web *bj_web_new(const struct bj_web_params *p, int *status, char *err, size_t errlen)
{
    *status = 2;
    if (!p->bus) {
        snprintf(err, errlen, "web: no bus");
        return NULL;
    }
    struct bj_web *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        *status = 1;
        return NULL;
    }
    if (take_params(w, p, err, errlen) || probe_bind(w->host, w->p.port, err, errlen))
        goto fail;

    *status = 1;
    w->auth = bj_auth_open(w->data_dir, err, errlen);
    if (!w->auth)
        goto fail;
    bj_auth_limit_config(w->auth, w->p.login_max_failures, w->p.login_window_s);
    if (w->p.auth) {
        char pw[64];
        int made = bj_auth_ensure_admin(w->auth, pw, sizeof pw, err, errlen);
        if (made < 0)
            goto fail;
        if (made) {
            announce_admin(w->data_dir, pw);
            memset(pw, 0, sizeof pw);
        }
    } else {
        bj_warn("web: ***** AUTHENTICATION IS OFF (--web-auth off): anyone who can reach %s:%d may watch and "
                "operate every brain *****", w->host, w->p.port);
    }

    /* Many WebSocket clients need many descriptors: raise the soft limit to the hard one. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max > 65536 ? 65536 : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    if (start_lws(w, status, err, errlen))
        goto fail;
    w->port = lws_get_vhost_listen_port(w->vh);
    w->sub = bj_bus_subscribe(w->p.bus, "web", BJ_EV_ALL, 4096);
    if (!w->sub) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    bj_info("web: listening on %s://%s%s%s:%d/", w->tls_cert[0] ? "https" : "http", strchr(w->host, ':') ? "[" : "", w->host,
            strchr(w->host, ':') ? "]" : "", w->port);
    *status = 0;
    return w;
fail:
    bj_web_free(w);
    return NULL;
}

static void *loop_main(void *arg)
{
    struct bj_web *w = arg;
    pthread_setname_np(pthread_self(), "bj-web");
    while (!atomic_load(&w->stop))
        if (lws_service(w->ctx, 0) < 0)
            break;
    return NULL;
}

int bj_web_start(struct bj_web *w, struct bj_hive *hive, char *err, size_t errlen)
{
    w->hive = hive;
    w->spec = bj_hive_spec_of(hive);
    w->n_brains = w->spec->n_brains;
    w->started_us = bj_event_now();
    w->view = web_view_new(w->n_brains, w->p.ring_thoughts);
    w->batch = calloc((size_t)(w->n_brains ? w->n_brains : 1), sizeof *w->batch);
    if (!w->view || !w->batch) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int fd = dup(bj_sub_fd(w->sub));
    if (fd < 0) {
        snprintf(err, errlen, "web: dup: %s", strerror(errno));
        return -1;
    }
    lws_sock_file_fd_type d;
    d.filefd = fd;
    if (!lws_adopt_descriptor_vhost(w->vh, LWS_ADOPT_RAW_FILE_DESC, d, "bj-bus", NULL)) {
        close(fd);
        snprintf(err, errlen, "web: cannot adopt the bus descriptor");
        return -1;
    }
    struct bj_workpool_params hp = bj_workpool_params_default();
    /* auto: two workers, one on a machine of two cores or fewer (a core stays for the loops). */
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    hp.threads = w->p.hash_threads > 0 ? w->p.hash_threads : cores > 2 ? 2 : 1;
    hp.queue = w->p.hash_queue;
    hp.name = "bj-hash";
    hp.wake = hashers_wake;
    hp.wake_ud = w;
    w->hashers = bj_workpool_new(&hp, err, errlen);
    if (!w->hashers)
        return -1;
    web_view_sample(w->view, w->hive);
    lws_sul_schedule(w->ctx, 0, &w->tick_sul, tick, LWS_US_PER_SEC);
    int rc = pthread_create(&w->thread, NULL, loop_main, w);
    if (rc) {
        snprintf(err, errlen, "web: cannot start its thread: %s", strerror(rc));
        return -1;
    }
    w->running = true;
    return 0;
}

void bj_web_stop(struct bj_web *w)
{
    if (!w || !w->running)
        return;
    atomic_store(&w->stop, true);
    lws_cancel_service(w->ctx);
    pthread_join(w->thread, NULL);
    w->running = false;
    /* The hash workers go before the connections: no check is out once they are joined. */
    bj_workpool_free(w->hashers);
    w->hashers = NULL;
    while (w->logins) {
        struct web_login *job = w->logins;
        if (job->wsi) {
            struct pss *ps = lws_wsi_user(job->wsi);
            if (ps)
                ps->login = NULL;
        }
        login_unlink(w, job);
        routes_login_free(job);
    }
    /* Close every connection now, on this thread (the loop is gone): no callback may use the hive after. */
    lws_context_destroy(w->ctx);
    w->ctx = NULL;
    w->hive = NULL;
}

void bj_web_free(struct bj_web *w)
{
    if (!w)
        return;
    bj_web_stop(w);
    bj_workpool_free(w->hashers);
    if (w->ctx)
        lws_context_destroy(w->ctx);
    while (w->clients)
        client_free(w, w->clients);
    if (w->sub)
        bj_bus_unsubscribe(w->p.bus, w->sub);
    web_view_free(w->view);
    for (int b = 0; w->batch && b < w->n_brains; b++)
        free(w->batch[b].text);
    free(w->batch);
    free(w->wbuf);
    bj_auth_free(w->auth);
    free(w);
}
