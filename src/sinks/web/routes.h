/* routes: the HTTP routes of the web server (docs/API.md), and the JSON of the hive's snapshots
 * that the WebSocket messages share with them. The server (server.c) reads a request into a
 * struct web_req, hands it with a struct web_ctx (what the routes may use: the hive, the params,
 * the auth files, the view, counters) to routes_handle, and writes the struct web_resp back. The
 * routes never call into the server. Private to the web wing; everything here runs on the web
 * thread, but routes_login_check (a hash worker). */
#ifndef BJ_WEB_ROUTES_H
#define BJ_WEB_ROUTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "auth.h"
#include "view.h"
#include "web.h"

#define WEB_BODY_MAX (16 * 1024)   /* request bodies */
#define WEB_SAY_MAX 1000           /* characters a /say may inject */

struct web_stats {
    uint64_t http_requests, http_errors, ws_messages, ws_resyncs, ws_coalesced, logins_failed, logins_ok;
};

/* What the routes may use; the server fills it (the hive once started). */
struct web_ctx {
    struct bj_hive *hive;        /* NULL until bj_web_start */
    const struct bj_web_params *p; /* host_names point at the server's copies */
    struct bj_auth *auth;
    struct web_view *view;       /* NULL until bj_web_start */
    struct web_stats *stats;
    struct bj_bus *bus;
    int ws_clients;
    int64_t started_us;
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
 * thread; a worker runs routes_login_check() on it (only it touches the struct then); back on the
 * web thread routes_login_finish() answers. server.c owns it while it is out. */
struct web_login {
    char user[BJ_AUTH_NAME_MAX + 1];
    char hash[BJ_AUTH_HASH_MAX];
    char *password;              /* owned; wiped by the check and by routes_login_free() */
    bool ok;                     /* the worker's verdict */
    /* server.c's, on the web thread only */
    struct web_login *prev, *next;
    struct lws *wsi;             /* the connection waiting for it; NULL once that has closed */
    bool checked;                /* collected from the pool */
};

struct lws;

/* Answers one HTTP request (never fails: errors are JSON 4xx/5xx responses). */
void routes_handle(struct web_ctx *c, struct web_req *rq, struct web_resp *rs);
/* POST /login's second half (see struct web_login). _check runs on a hash worker. */
void routes_login_check(void *arg);
void routes_login_finish(struct web_ctx *c, struct web_req *rq, struct web_resp *rs, const struct web_login *job);
/* The answer when every hash worker is busy: 503 with Retry-After. */
void routes_login_busy(struct web_resp *rs);
void routes_login_free(struct web_login *job);
void routes_resp_header(struct web_resp *rs, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Whether a Host header names this server (docs/API.md: IP addresses, localhost, --web-host-name). */
bool routes_host_ok(const struct web_ctx *c, const char *hostport);
/* Whether an Origin header is this server's (scheme included) or the allowed one. */
bool routes_origin_ok(const struct web_ctx *c, const char *origin, const char *host, bool https);
/* A brain's index in the hive's spec, or -1. */
int routes_brain_index(const struct web_ctx *c, const char *id);

/* The answers the routes share (routes.c): a JSON body (status, o consumed), a JSON error, and
 * the request's body as an object (NULL once an error is answered). */
void routes_json(struct web_resp *rs, int status, json_t *o);
void routes_err(struct web_resp *rs, int status, const char *msg);
json_t *routes_body(const struct web_req *rq, struct web_resp *rs);

/* routes_lab.c: GET /api/lab and POST /api/lab/interventions. */
void routes_lab_state(struct web_ctx *w, struct web_resp *rs);
void routes_lab_intervene(struct web_ctx *w, struct web_req *rq, struct web_resp *rs);
/* Whether the operator may fire intervention name at brain: 0, or the HTTP status (404, 409)
 * with why. */
int routes_lab_check(const struct bj_hive_spec *s, const char *brain, const char *name, char *why, size_t len);
/* The Lab page's state; {"on":false} when the run is not an experiment. */
json_t *routes_lab_json(const struct bj_hive_spec *s, const struct bj_hive_snapshot *snap, const struct web_view *v);

/* JSON of the hive's snapshots, shared with the WebSocket messages. */
json_t *routes_brain_json(const struct web_ctx *c, const struct bj_brain_view *v, int index);
json_t *routes_state_json(const struct web_ctx *c, const struct bj_hive_snapshot *s, int i);
json_t *routes_metrics_json(const struct web_ctx *c, const struct bj_hive_snapshot *s);
/* The mood of a text (documented in docs/API.md), or NULL when there is no text. */
const char *routes_mood(const char *text);

/* routes_prom.c: /metrics in Prometheus' text format for snapshot s; a malloc'd text of *len
 * bytes, NULL when out of memory. */
char *routes_prometheus_text(const struct web_ctx *w, const struct bj_hive_snapshot *s, size_t *len);

#endif
