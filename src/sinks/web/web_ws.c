/* web_ws: the web server's WebSocket clients (server_int.h): authentication, filters, the fan-out
 * of each drained batch of bus events as shared messages, lagging clients' merged tokens and
 * resyncs, the 1 s tick, and writing queued messages as batched frames. */
#include "server_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

/* ---- WebSocket clients ---------------------------------------------------------------- */
static bool wants(const struct client *c, int brain)
{
    if (brain < 0)
        return true;
    return (c->filter[brain / 64] >> (brain % 64)) & 1;
}

static void client_push(struct client *c, struct bj_msg *m)
{
    if (c->qlen == c->qcap) {
        size_t cap = c->qcap ? c->qcap * 2 : 64;
        struct bj_msg **q = malloc(cap * sizeof *q);
        if (!q)
            return; /* out of memory: this message is lost for this client */
        for (size_t i = 0; i < c->qlen; i++)
            q[i] = c->q[(c->qhead + i) % c->qcap];
        free(c->q);
        c->q = q;
        c->qcap = cap;
        c->qhead = 0;
    }
    bj_msg_ref(m);
    c->q[(c->qhead + c->qlen) % c->qcap] = m;
    c->qlen++;
}

static void client_clear_queue(struct client *c)
{
    for (size_t i = 0; i < c->qlen; i++)
        bj_msg_unref(c->q[(c->qhead + i) % c->qcap]);
    c->qlen = 0;
    c->qhead = 0;
    for (int b = 0; b < c->n_pend; b++) {
        free(c->pend[b].text);
        memset(&c->pend[b], 0, sizeof c->pend[b]);
    }
    bj_msg_unref(c->pend_tick);
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
        struct bj_msg *m = bj_msg_new(K_TOKEN, b, LWS_PRE, js, strlen(js));
        if (m) {
            client_push(c, m);
            bj_msg_unref(m);
        }
        free(js);
    }
    free(p->text);
    memset(p, 0, sizeof *p);
}

static struct bj_msg *snapshot_msg(struct bj_web *w, struct client *c, const char *why);

static void client_deliver(struct bj_web *w, struct client *c, struct bj_msg *m, const struct bj_event *tok)
{
    if (!c->authed || c->dead || c->resync || !wants(c, m->tag))
        return;
    bool lagging = c->qlen >= w->p.client_queue;
    switch (m->kind) {
    case K_TOKEN:
        if (!lagging && !(m->tag >= 0 && m->tag < c->n_pend && c->pend[m->tag].used)) {
            client_push(c, m);
        } else if (tok && m->tag >= 0 && m->tag < c->n_pend) {
            struct pending_tok *p = &c->pend[m->tag];
            if (p->used && (p->thought != tok->thought || p->crash_count != tok->crash_count))
                client_flush_pend(w, c, m->tag);
            pend_add(&c->pend[m->tag], tok, tok->text ? tok->text : "", tok->text ? strlen(tok->text) : 0);
            w->stats.ws_coalesced++;
        }
        break;
    case K_TICK:
        if (!lagging) {
            client_push(c, m);
        } else {
            bj_msg_unref(c->pend_tick);
            bj_msg_ref(m);
            c->pend_tick = m;
        }
        break;
    default:
        client_flush_pend(w, c, m->tag);
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

static void fanout(struct bj_web *w, struct bj_msg *m, const struct bj_event *tok)
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
        struct bj_msg *m = bj_msg_new(K_TOKEN, b, LWS_PRE, js, strlen(js));
        if (m) {
            w->stats.ws_messages++;
            fanout(w, m, &ev);
            bj_msg_unref(m);
        }
        free(js);
    }
    free(p->text);
    memset(p, 0, sizeof *p);
}

static void handle_event(struct bj_web *w, struct bj_event *ev)
{
    int b = ev->node[0] ? -1 : routes_brain_index(web_ctx_of(w), ev->brain);
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
    struct bj_msg *m = bj_msg_new(ev->type == BJ_EV_TOKEN ? K_TOKEN : K_LIFE, b, LWS_PRE, js, strlen(js));
    free(js);
    if (!m)
        return;
    w->stats.ws_messages++;
    fanout(w, m, ev->type == BJ_EV_TOKEN ? ev : NULL);
    bj_msg_unref(m);
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
void web_ws_drain_bus(struct bj_web *w)
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
void web_ws_tick(lws_sorted_usec_list_t *sul)
{
    struct bj_web *w = lws_container_of(sul, struct bj_web, tick_sul);
    web_view_sample(w->view, w->hive);
    struct bj_hive_snapshot snap;
    if (w->hive && bj_hive_snapshot(w->hive, &snap) == 0) {
        json_t *inst = json_object(), *brains = json_object();
        for (int i = 0; i < snap.n_brains; i++) {
            const struct bj_brain_view *v = &snap.brains[i];
            json_object_set_new(inst, v->id, routes_state_json(web_ctx_of(w), &snap, i));
            json_object_set_new(brains, v->id,
                                json_pack("{s:s,s:i,s:i,s:i,s:i,s:i,s:f,s:I}", "state", v->state, "deaths",
                                          (int)v->deaths, "life", (int)v->life, "thought", (int)v->thought,
                                          "jar_used", (int)v->jar_used, "jar_tokens", (int)v->jar_tokens, "tok_s",
                                          v->tok_s, "tokens", (json_int_t)v->tokens));
        }
        json_t *o = json_pack("{s:s,s:I,s:o,s:o,s:o,s:o,s:i,s:f}", "type", "tick", "t",
                              (json_int_t)web_view_last_t(w->view), "memory",
                              web_view_memory_json(w->view), "brains", brains, "instances", inst, "metrics",
                              routes_metrics_json(web_ctx_of(w), &snap), "ws_clients", w->n_clients, "tok_s", snap.tok_s);
        char *js = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        json_decref(o);
        bj_hive_snapshot_free(&snap);
        if (js) {
            struct bj_msg *m = bj_msg_new(K_TICK, -1, LWS_PRE, js, strlen(js));
            free(js);
            if (m) {
                fanout(w, m, NULL);
                bj_msg_unref(m);
            }
        }
    }
    lws_sul_schedule(w->ctx, 0, &w->tick_sul, web_ws_tick, LWS_US_PER_SEC);
}

/* hello + snapshot: what a client gets first, and again after a resync. */
static struct bj_msg *snapshot_msg(struct bj_web *w, struct client *c, const char *why)
{
    struct bj_hive_snapshot snap;
    if (!w->hive || bj_hive_snapshot(w->hive, &snap) != 0)
        return NULL;
    json_t *brains = json_array(), *thoughts = json_object(), *deaths = json_array();
    for (int i = 0; i < snap.n_brains; i++) {
        json_array_append_new(brains, routes_brain_json(web_ctx_of(w), &snap.brains[i], i));
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
    struct bj_msg *m = bj_msg_new(K_CTRL, -1, LWS_PRE, js, strlen(js));
    free(js);
    return m;
}

static struct bj_msg *ctrl_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static struct bj_msg *ctrl_msg(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return bj_msg_new(K_CTRL, -1, LWS_PRE, buf, (size_t)(n < (int)sizeof buf ? n : (int)sizeof buf - 1));
}

static void client_welcome(struct bj_web *w, struct client *c, const char *why)
{
    struct bj_msg *m = snapshot_msg(w, c, why);
    if (m) {
        client_push(c, m);
        bj_msg_unref(m);
    }
    lws_callback_on_writable(c->wsi);
}

static void client_reply(struct client *c, struct bj_msg *m)
{
    if (!m)
        return;
    client_push(c, m);
    bj_msg_unref(m);
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
                int b = json_is_string(v) ? routes_brain_index(web_ctx_of(w), json_string_value(v)) : -1;
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

int web_ws_client_write(struct bj_web *w, struct client *c)
{
    if (c->resync) {
        c->resync = false;
        struct bj_msg *r = ctrl_msg("{\"type\":\"resync\",\"reason\":\"too far behind; here is a fresh snapshot\"}");
        if (r) {
            client_push(c, r);
            bj_msg_unref(r);
        }
        struct bj_msg *s = snapshot_msg(w, c, "resync");
        if (s) {
            client_push(c, s);
            bj_msg_unref(s);
        }
    }
    if (c->qlen == 0) {
        /* Caught up: what was held back while lagging goes out now. */
        for (int b = 0; b < c->n_pend; b++)
            client_flush_pend(w, c, b);
        if (c->pend_tick) {
            client_push(c, c->pend_tick);
            bj_msg_unref(c->pend_tick);
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
        const struct bj_msg *m = c->q[(c->qhead + k) % c->qcap];
        if (k > 0 && bytes + m->len + 1 > WS_BATCH_BYTES)
            break;
        bytes += m->len + 1;
        k++;
    }
    int n;
    if (k == 1) {
        struct bj_msg *m = c->q[c->qhead];
        n = lws_write(c->wsi, (unsigned char *)bj_msg_payload(m), m->len, LWS_WRITE_TEXT);
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
            struct bj_msg *m = c->q[(c->qhead + i) % c->qcap];
            if (i)
                *p++ = ',';
            memcpy(p, (unsigned char *)bj_msg_payload(m), m->len);
            p += m->len;
        }
        *p++ = ']';
        n = lws_write(c->wsi, w->wbuf + LWS_PRE, (size_t)(p - (w->wbuf + LWS_PRE)), LWS_WRITE_TEXT);
    }
    for (size_t i = 0; i < k; i++) {
        bj_msg_unref(c->q[c->qhead]);
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

void web_ws_client_free(struct bj_web *w, struct client *c)
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

/* A WebSocket upgrade is for /ws only, from our own origin (or the allowed one). */
int web_ws_filter(struct bj_web *w, struct lws *wsi)
{
    char uri[256];
    web_http_copy_hdr(wsi, WSI_TOKEN_GET_URI, uri, sizeof uri);
    if (strcmp(uri, "/ws") != 0)
        return -1;
    char origin[256], host[256];
    web_http_copy_hdr(wsi, WSI_TOKEN_ORIGIN, origin, sizeof origin);
    web_http_copy_hdr(wsi, WSI_TOKEN_HOST, host, sizeof host);
    if (!routes_host_ok(web_ctx_of(w), host)) {
        bj_warn("web: refused a WebSocket for host %s (not one of ours: --web-host-name)", host);
        return -1;
    }
    if (origin[0] && !routes_origin_ok(web_ctx_of(w), origin, host, web_http_came_over_tls(w, wsi))) {
        bj_warn("web: refused a WebSocket from origin %s", origin);
        return -1;
    }
    return 0;
}

int web_ws_established(struct bj_web *w, struct lws *wsi, struct pss *ps)
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
    web_http_copy_hdr(wsi, WSI_TOKEN_HTTP_COOKIE, cookies, sizeof cookies);
    web_http_cookie_value(cookies, "bj_session", session, sizeof session);
    web_http_copy_hdr(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, authz, sizeof authz);
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
        int b = routes_brain_index(web_ctx_of(w), frag + 6);
        if (b >= 0)
            c->filter[b / 64] |= 1ull << (b % 64);
    }
    if (c->authed)
        client_welcome(w, c, NULL);
    else
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, 10); /* 10 s to authenticate */
    return 0;
}

int web_ws_receive(struct bj_web *w, struct lws *wsi, struct pss *ps, const void *in, size_t len)
{
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
