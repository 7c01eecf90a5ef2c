/* server_int.h: what the web server's rooms share: server.c (the loop, its lifecycle, the
 * libwebsockets callback), web_http.c (requests and responses, password checks on the hash
 * workers), web_ws.c (WebSocket clients and the fan-out). Private to the web wing; everything here
 * runs on the web thread. */
#ifndef BJ_WEB_SERVER_INT_H
#define BJ_WEB_SERVER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "msg.h"
#include "routes.h"
#include "view.h"
#include "web.h"
#include "workpool.h"

#define PENDING_TEXT_MAX (16 * 1024)
#define WS_BATCH_MSGS 64           /* queued messages sent as one frame (a JSON array) */
#define WS_BATCH_BYTES (64 * 1024)
#define WS_RX_MAX 4096
#define N_SECURITY_HEADERS 7         /* k_security_headers */

/* What a bj_msg of the web holds (kind): one WebSocket frame of JSON after LWS_PRE bytes. */
enum msg_kind { K_TOKEN, K_LIFE, K_TICK, K_CTRL };

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
    struct bj_msg **q;
    size_t qhead, qlen, qcap;
    struct pending_tok *pend;   /* per brain, used when lagging */
    int n_pend;
    struct bj_msg *pend_tick;
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

/* server.c */
/* The routes' view of the server, brought up to date. */
struct web_ctx *web_ctx_of(struct bj_web *w);

/* web_http.c: the HTTP side of the callback */
extern const char *const web_security_headers[N_SECURITY_HEADERS][2];
int web_http_request(struct bj_web *w, struct lws *wsi, struct pss *ps);   /* LWS_CALLBACK_HTTP */
int web_http_body(struct pss *ps, const void *in, size_t len);             /* ..._HTTP_BODY */
int web_http_body_done(struct bj_web *w, struct lws *wsi, struct pss *ps); /* ..._HTTP_BODY_COMPLETION */
int web_http_writeable(struct bj_web *w, struct lws *wsi, struct pss *ps); /* ..._HTTP_WRITEABLE */
void web_http_closed(struct bj_web *w, struct pss *ps);                    /* ..._CLOSED_HTTP, _DROP_PROTOCOL */
/* The hash workers' wake-up (any thread), and the loop's collection of their answers. */
void web_http_hashers_wake(void *ud);
void web_http_logins_collect(struct bj_web *w);
void web_http_login_unlink(struct bj_web *w, struct web_login *job);
/* Request facts the WebSocket upgrade needs too. */
void web_http_copy_hdr(struct lws *wsi, enum lws_token_indexes t, char *buf, size_t len);
void web_http_cookie_value(const char *cookies, const char *name, char *out, size_t len);
bool web_http_came_over_tls(const struct bj_web *w, struct lws *wsi);

/* web_ws.c: the WebSocket side */
int web_ws_filter(struct bj_web *w, struct lws *wsi);
int web_ws_established(struct bj_web *w, struct lws *wsi, struct pss *ps);
int web_ws_receive(struct bj_web *w, struct lws *wsi, struct pss *ps, const void *in, size_t len);
int web_ws_client_write(struct bj_web *w, struct client *c);
void web_ws_client_free(struct bj_web *w, struct client *c);
/* Turns what the bus subscription holds into messages for the clients. */
void web_ws_drain_bus(struct bj_web *w);
/* The 1 s timer: samples the view, sends every client a tick. */
void web_ws_tick(lws_sorted_usec_list_t *sul);

#endif
