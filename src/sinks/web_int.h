/* web_int: what web.c (the event loop, the view, WebSocket clients) and webapi.c (the HTTP
 * routes) share. Private to the web module; everything here runs on the web thread. */
#ifndef BJ_WEB_INT_H
#define BJ_WEB_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "auth.h"
#include "web.h"

#define WEB_BODY_MAX (16 * 1024)   /* request bodies */
#define WEB_SAY_MAX 1000           /* characters a /say may inject */
#define WEB_SERIES 900             /* per-second chart samples kept (15 minutes) */
#define WEB_DEATHS 1000
#define WEB_LOGS 1000

/* ---- the view: built from bus events on the web thread -------------------------------- */
struct thought_ring {
    struct bj_thought_rec *recs; /* oldest at head */
    int head, n, cap;
    size_t bytes;                /* text bytes held (bounded too) */
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
struct sample {
    int64_t t;                   /* unix seconds */
    uint64_t rss, sys_total, sys_avail;
    int64_t gpu_used;            /* -1: unknown */
    float tok_s[BJ_MAX_BRAINS];
    float jar[BJ_MAX_BRAINS];    /* fill 0..1 */
};

struct web_stats {
    uint64_t http_requests, http_errors, ws_messages, ws_resyncs, ws_coalesced, logins_failed, logins_ok;
    uint64_t events, thoughts, observes;
};

/* A request as the routes see it. */
enum web_method { M_GET, M_POST, M_OPTIONS, M_PUT, M_PATCH, M_DELETE, M_HEAD, M_OTHER };
struct web_req {
    enum web_method method;
    char path[512];
    char query[1024];            /* decoded "a=1&b=2" as lws gives the fragments */
    char peer[64];               /* the client's address (X-Forwarded-For from a trusted proxy) */
    char session[96];            /* cookie bj_session */
    char bearer[96];             /* Authorization: Bearer */
    char origin[256], host[256], ctype[128];
    bool has_auth_header;
    bool https;                  /* came over TLS: ours, or a trusted proxy's X-Forwarded-Proto */
    bool host_ok;                /* the Host header names this server (else 421) */
    char *body;
    size_t body_len;
    bool body_too_big;
    /* filled by the auth step */
    enum bj_role role;
    char user[BJ_AUTH_NAME_MAX + 8];
    bool via_session;
};
#define WEB_RESP_HEADERS 8
struct web_resp {
    int status;
    const char *ctype;
    char *body;                  /* malloc'd, or static when body_static */
    size_t len;
    bool body_static;
    int n_headers;
    char hname[WEB_RESP_HEADERS][48];
    char hval[WEB_RESP_HEADERS][256];
    struct web_login *defer;     /* set by a route whose answer waits for a hash worker */
};

/* A password check handed to the hash workers (POST /login). The routes fill it on the web
 * thread; a worker runs webapi_login_check() on it (only it touches the struct then); back on the
 * web thread webapi_login_finish() answers. web.c owns it while it is out. */
struct web_login {
    char user[BJ_AUTH_NAME_MAX + 1];
    char hash[BJ_AUTH_HASH_MAX];
    char *password;              /* owned; wiped by the check and by webapi_login_free() */
    bool ok;                     /* the worker's verdict */
    /* web.c's, on the web thread only */
    struct web_login *prev, *next;
    struct lws *wsi;             /* the connection waiting for it; NULL once that has closed */
    bool checked;                /* collected from the pool */
};

struct bj_web; /* web.c */
struct lws;

/* webapi.c: answers one HTTP request (never fails: errors are JSON 4xx/5xx responses). */
void webapi_handle(struct bj_web *w, struct web_req *rq, struct web_resp *rs);
/* POST /login's second half (see struct web_login). _check runs on a hash worker. */
void webapi_login_check(void *arg);
void webapi_login_finish(struct bj_web *w, struct web_req *rq, struct web_resp *rs, const struct web_login *job);
/* The answer when every hash worker is busy: 503 with Retry-After. */
void webapi_login_busy(struct web_resp *rs);
void webapi_login_free(struct web_login *job);
void webapi_resp_header(struct web_resp *rs, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* web.c: what the routes read from the server. */
struct bj_hive *web_hive(struct bj_web *w);
const struct bj_web_params *web_params(struct bj_web *w);
struct bj_auth *web_auth(struct bj_web *w);
struct web_stats *web_stats(struct bj_web *w);
int web_ws_clients(struct bj_web *w);
int64_t web_started_us(struct bj_web *w);
bool web_loopback(struct bj_web *w);
/* Whether an Origin header is this server's (scheme included) or the allowed one. */
bool web_origin_ok(const struct bj_web *w, const char *origin, const char *host, bool https);
/* The brains' views (a snapshot) and the rings. */
int web_brain_index(struct bj_web *w, const char *id);
const struct thought_ring *web_thoughts(struct bj_web *w, int brain);
/* Deaths: newest first, i = 0..n-1. */
int web_deaths_count(struct bj_web *w);
const struct death_rec *web_death(struct bj_web *w, int i);
int web_logs_count(struct bj_web *w);
const struct log_rec *web_log(struct bj_web *w, int i); /* newest first */
json_t *web_series_json(struct bj_web *w, const struct bj_hive_snapshot *snap);
json_t *web_memory_json(struct bj_web *w);
struct bj_bus *web_bus(struct bj_web *w);

/* webapi.c: JSON builders shared with the WebSocket snapshots. */
json_t *webapi_brain_json(struct bj_web *w, const struct bj_brain_view *v, int index);
json_t *webapi_state_json(struct bj_web *w, const struct bj_hive_snapshot *s, int i);
json_t *webapi_metrics_json(struct bj_web *w, const struct bj_hive_snapshot *s);
json_t *webapi_thought_json(const struct bj_thought_rec *r);
json_t *webapi_death_json(const struct death_rec *d);
/* The mood of a text (documented in docs/API.md), or NULL when there is no text. */
const char *webapi_mood(const char *text);

#endif
