/* wsclient: see wsclient.h. */
#include "wsclient.h"

#include <errno.h>
#include <jansson.h>
#include <libwebsockets.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"

#define WSC_RX_MAX (8u << 20) /* a message bigger than this (a snapshot is far smaller) is dropped */
#define WSC_ACTS 8            /* operator actions waiting to be sent */

struct act {
    char action[16], brain[32];
    char *body;               /* JSON, owned */
};

/* One connection's own data: the WebSocket, or one action's POST. */
struct conn {
    struct bj_wsclient *c;
    bool ws;
    struct act act;           /* POST: what it does */
    int status;               /* POST: the HTTP status */
    char answer[256];         /* POST: the start of the body */
    size_t answer_len;
    bool sent;
};

struct bj_wsclient {
    struct bj_wsclient_params p;
    char url[512], host[256], path[256], hosthdr[300];
    int port;
    bool tls;
    char authz[600];

    struct lws_context *ctx;
    struct lws *ws;           /* the WebSocket while connected */
    struct conn ws_conn;
    lws_sorted_usec_list_t retry_sul;
    int backoff_ms;
    bool auth_sent, ever_up, stopping;
    bool conn_up;             /* this connection brought a snapshot */
    char *rx;                 /* a message being received */
    size_t rx_len, rx_cap;
    int evfd;
    pthread_t thread;
    bool started;

    pthread_mutex_t mu;       /* guards what follows */
    enum bj_wsclient_outcome outcome;
    char why[256];
    double mem_used, mem_total, temp_c;
    bool temp_ok;
    struct act acts[WSC_ACTS];
    size_t n_acts;
    bool quit;
};

struct bj_wsclient_params bj_wsclient_params_default(void)
{
    return (struct bj_wsclient_params){.backoff_min_ms = 250, .backoff_max_ms = 5000, .connect_timeout_s = 5};
}

/* ---- what the main thread sees ------------------------------------------------------------ */

static void set_outcome(struct bj_wsclient *c, enum bj_wsclient_outcome o, const char *why)
{
    pthread_mutex_lock(&c->mu);
    bool change = c->outcome != o;
    c->outcome = o;
    snprintf(c->why, sizeof c->why, "%s", why ? why : "");
    pthread_mutex_unlock(&c->mu);
    if (change) {
        uint64_t one = 1;
        if (write(c->evfd, &one, sizeof one) < 0) {
            /* the counter cannot overflow at this rate; nothing to do */
        }
    }
}

enum bj_wsclient_outcome bj_wsclient_outcome(struct bj_wsclient *c, char *why, size_t whylen)
{
    uint64_t n;
    if (read(c->evfd, &n, sizeof n) < 0) {
        /* nothing new: fine */
    }
    pthread_mutex_lock(&c->mu);
    enum bj_wsclient_outcome o = c->outcome;
    if (why)
        snprintf(why, whylen, "%s", c->why);
    pthread_mutex_unlock(&c->mu);
    return o;
}

int bj_wsclient_fd(const struct bj_wsclient *c) { return c->evfd; }

void bj_wsclient_sense(struct bj_wsclient *c, double *mem_used, double *mem_total, bool *temp_ok, double *temp_c)
{
    pthread_mutex_lock(&c->mu);
    *mem_used = c->mem_used;
    *mem_total = c->mem_total;
    *temp_ok = c->temp_ok;
    *temp_c = c->temp_c;
    pthread_mutex_unlock(&c->mu);
}

int bj_wsclient_act(struct bj_wsclient *c, const char *action, const char *brain, const char *text)
{
    json_t *o = text ? json_pack("{s:s,s:s}", "text", text, "from", "brainjar top") : json_object();
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!body)
        return -1;
    pthread_mutex_lock(&c->mu);
    int rc = -1;
    if (c->n_acts < WSC_ACTS) {
        struct act *a = &c->acts[c->n_acts++];
        snprintf(a->action, sizeof a->action, "%s", action);
        snprintf(a->brain, sizeof a->brain, "%s", brain);
        a->body = body;
        body = NULL;
        rc = 0;
    }
    pthread_mutex_unlock(&c->mu);
    free(body);
    if (rc == 0 && c->ctx)
        lws_cancel_service(c->ctx); /* the one lws call any thread may make */
    return rc;
}

/* ---- link events on the bus --------------------------------------------------------------- */

static void link_event(struct bj_wsclient *c, const char *state, const char *cause, const char *text, int64_t time_us)
{
    struct bj_event ev = {.type = BJ_EV_LINK, .time_us = time_us > 0 ? time_us : bj_event_now()};
    snprintf(ev.state, sizeof ev.state, "%s", state);
    snprintf(ev.cause, sizeof ev.cause, "%s", cause ? cause : "");
    snprintf(ev.from, sizeof ev.from, "%.*s", (int)sizeof ev.from - 1, c->host);
    ev.text = (char *)text;
    bj_bus_publish(c->p.bus, &ev); /* the bus copies */
}

/* ---- connecting --------------------------------------------------------------------------- */

static void connect_ws(struct bj_wsclient *c);

static int tls_flags(const struct bj_wsclient *c)
{
    if (!c->tls)
        return 0;
    return LCCSCF_USE_SSL | (c->p.tls_insecure ? LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK : 0);
}

static void retry_cb(lws_sorted_usec_list_t *sul)
{
    struct bj_wsclient *c = lws_container_of(sul, struct bj_wsclient, retry_sul);
    connect_ws(c);
}

/* The link is gone (or never came): final before the first snapshot, else retried. */
static void link_lost(struct bj_wsclient *c, enum bj_wsclient_outcome fail, const char *why)
{
    c->ws = NULL;
    c->rx_len = 0;
    if (c->stopping)
        return;
    if (!c->ever_up) {
        set_outcome(c, fail, why);
        return;
    }
    if (fail == BJ_WSC_AUTH) { /* the token was revoked: retrying cannot help */
        set_outcome(c, BJ_WSC_AUTH, why);
        return;
    }
    char text[400];
    snprintf(text, sizeof text, "%s: %s; reconnecting\xe2\x80\xa6", c->url, why);
    link_event(c, "down", NULL, text, 0);
    lws_sul_schedule(c->ctx, 0, &c->retry_sul, retry_cb, (lws_usec_t)c->backoff_ms * 1000);
    c->backoff_ms = c->backoff_ms * 2 > c->p.backoff_max_ms ? c->p.backoff_max_ms : c->backoff_ms * 2;
}

static void connect_ws(struct bj_wsclient *c)
{
    struct lws_client_connect_info i;
    memset(&i, 0, sizeof i);
    i.context = c->ctx;
    i.address = c->host;
    i.port = c->port;
    i.path = c->path;
    i.host = c->hosthdr;
    i.origin = NULL; /* not a browser: no Origin, as curl */
    i.ssl_connection = tls_flags(c);
    i.opaque_user_data = &c->ws_conn;
    i.pwsi = &c->ws;
    c->auth_sent = c->conn_up = false;
    c->rx_len = 0;
    if (!lws_client_connect_via_info(&i))
        link_lost(c, BJ_WSC_REFUSED, "cannot connect (an unknown host name?)");
}

static void send_acts(struct bj_wsclient *c)
{
    struct act acts[WSC_ACTS];
    size_t n;
    pthread_mutex_lock(&c->mu);
    n = c->n_acts;
    memcpy(acts, c->acts, n * sizeof *acts);
    c->n_acts = 0;
    pthread_mutex_unlock(&c->mu);
    for (size_t k = 0; k < n; k++) {
        struct conn *cn = calloc(1, sizeof *cn);
        char path[128];
        if (!cn) {
            free(acts[k].body);
            continue;
        }
        cn->c = c;
        cn->act = acts[k];
        snprintf(path, sizeof path, "/api/brains/%s/%s", cn->act.brain, cn->act.action);
        struct lws_client_connect_info i;
        memset(&i, 0, sizeof i);
        i.context = c->ctx;
        i.address = c->host;
        i.port = c->port;
        i.path = path;
        i.host = c->hosthdr;
        i.method = "POST";
        i.ssl_connection = tls_flags(c);
        i.opaque_user_data = cn;
        if (!lws_client_connect_via_info(&i)) {
            char text[200];
            snprintf(text, sizeof text, "%s %s: cannot connect to %s", cn->act.action, cn->act.brain, c->url);
            link_event(c, "note", NULL, text, 0);
            free(cn->act.body);
            free(cn);
        }
    }
}

/* ---- receiving ---------------------------------------------------------------------------- */

static void message(struct bj_wsclient *c, const char *text, size_t len)
{
    struct bj_evbuf evs = {0};
    struct bj_wsclient_msg info;
    char err[200];
    if (bj_wsclient_decode(text, len, &evs, &info, err, sizeof err) != 0) {
        bj_warn("top: a message from %s: %s", c->url, err);
        bj_evbuf_free(&evs);
        return;
    }
    if (info.auth_error && !c->conn_up) { /* at the start, or a token revoked since */
        bj_evbuf_free(&evs);
        set_outcome(c, BJ_WSC_AUTH, "the token was refused (Authentication required)");
        c->stopping = true; /* nothing more to do with this daemon */
        return;
    }
    if (info.has_memory) {
        pthread_mutex_lock(&c->mu);
        c->mem_used = info.mem_used;
        c->mem_total = info.mem_total;
        c->temp_ok = info.temp_ok;
        c->temp_c = info.temp_c;
        pthread_mutex_unlock(&c->mu);
    }
    if (info.snapshot) {
        c->conn_up = true;
        link_event(c, "up", info.role, c->url, info.started_us);
        c->ever_up = true;
        c->backoff_ms = c->p.backoff_min_ms;
        set_outcome(c, BJ_WSC_UP, "");
    }
    for (size_t k = 0; k < evs.n; k++)
        bj_bus_publish(c->p.bus, &evs.v[k]);
    bj_evbuf_free(&evs);
}

static int rx_append(struct bj_wsclient *c, const void *in, size_t len)
{
    if (c->rx_len + len + 1 > WSC_RX_MAX)
        return -1;
    if (c->rx_len + len + 1 > c->rx_cap) {
        size_t cap = c->rx_cap ? c->rx_cap : 65536;
        while (cap < c->rx_len + len + 1)
            cap *= 2;
        char *n = realloc(c->rx, cap);
        if (!n)
            return -1;
        c->rx = n;
        c->rx_cap = cap;
    }
    memcpy(c->rx + c->rx_len, in, len);
    c->rx_len += len;
    c->rx[c->rx_len] = '\0';
    return 0;
}

/* ---- the POST of an operator action -------------------------------------------------------- */

static void post_done(struct conn *cn)
{
    char text[400];
    const char *e = cn->answer;
    json_t *o = json_loadb(cn->answer, cn->answer_len, 0, NULL);
    const char *msg = json_string_value(json_object_get(o, "error"));
    if (cn->status >= 200 && cn->status < 300)
        snprintf(text, sizeof text, "%s %s: accepted", cn->act.action, cn->act.brain);
    else if (cn->status == 403)
        snprintf(text, sizeof text, "%s %s refused (403): %s", cn->act.action, cn->act.brain,
                 msg ? msg : "viewer token: read-only");
    else
        snprintf(text, sizeof text, "%s %s refused (%d): %s", cn->act.action, cn->act.brain, cn->status,
                 msg ? msg : cn->status ? e : "no answer");
    json_decref(o);
    link_event(cn->c, "note", NULL, text, 0);
}

static int post_cb(struct lws *wsi, enum lws_callback_reasons reason, struct conn *cn, void *in, size_t len)
{
    struct bj_wsclient *c = cn->c;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        unsigned char **p = (unsigned char **)in, *end = (*p) + len;
        char clen[16];
        snprintf(clen, sizeof clen, "%zu", strlen(cn->act.body));
        if (c->authz[0] && lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, (unsigned char *)c->authz,
                                                         (int)strlen(c->authz), p, end))
            return -1;
        if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, (unsigned char *)"application/json", 16, p, end) ||
            lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, (unsigned char *)clen, (int)strlen(clen), p, end))
            return -1;
        lws_client_http_body_pending(wsi, 1);
        lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_HTTP_WRITEABLE: {
        if (cn->sent)
            return 0;
        size_t n = strlen(cn->act.body);
        unsigned char buf[LWS_PRE + 2048];
        if (n > sizeof buf - LWS_PRE)
            n = sizeof buf - LWS_PRE;
        memcpy(buf + LWS_PRE, cn->act.body, n);
        cn->sent = true;
        lws_client_http_body_pending(wsi, 0);
        return lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_HTTP_FINAL) < 0 ? -1 : 0;
    }
    case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
        cn->status = (int)lws_http_client_http_response(wsi);
        return 0;
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
        if (cn->answer_len + len < sizeof cn->answer) {
            memcpy(cn->answer + cn->answer_len, in, len);
            cn->answer_len += len;
            cn->answer[cn->answer_len] = '\0';
        }
        return 0;
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP: {
        char buf[LWS_PRE + 1024], *px = buf + LWS_PRE;
        int lenx = (int)sizeof buf - LWS_PRE;
        return lws_http_client_read(wsi, &px, &lenx) < 0 ? -1 : 0;
    }
    case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
        post_done(cn);
        cn->status = -1; /* told */
        return -1;       /* close */
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
        if (cn->status != -1) {
            if (reason == LWS_CALLBACK_CLIENT_CONNECTION_ERROR && cn->status == 0)
                snprintf(cn->answer, sizeof cn->answer, "%s", in ? (const char *)in : "connection error");
            post_done(cn);
            cn->status = -1;
        }
        return 0;
    case LWS_CALLBACK_WSI_DESTROY:
        lws_set_opaque_user_data(wsi, NULL);
        free(cn->act.body);
        free(cn);
        return 0;
    default:
        return 0;
    }
}

/* ---- the WebSocket ------------------------------------------------------------------------ */

/* libwebsockets' last error on the client's thread (e.g. "SSL error: self-signed certificate"):
 * said with the connection's failure instead of on stderr, where it would tear the screen. */
static _Thread_local char t_lws_err[256];

static void lws_log_keep(int level, const char *line)
{
    const char *m = strstr(line, "] E: ");
    m = m ? m + 5 : line;
    if (level & LLL_ERR) {
        snprintf(t_lws_err, sizeof t_lws_err, "%s", m);
        t_lws_err[strcspn(t_lws_err, "\r\n")] = '\0';
    }
    bj_debug("top: libwebsockets: %s", m);
}

/* Why the upgrade failed, for the user: lws says e.g. "HS: ws upgrade unauthorized". */
static enum bj_wsclient_outcome classify(const char *why)
{
    if (why && (strstr(why, "401") || strstr(why, "403") || strstr(why, "nauthorized") || strstr(why, "orbidden")))
        return BJ_WSC_AUTH;
    return BJ_WSC_REFUSED;
}

static int ws_cb(struct lws *wsi, enum lws_callback_reasons reason, struct bj_wsclient *c, void *in, size_t len)
{
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
        if (c->auth_sent)
            return 0;
        json_t *o = json_pack("{s:s,s:s}", "type", "auth", "token", c->p.token ? c->p.token : "");
        char *js = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!js)
            return -1;
        size_t n = strlen(js);
        unsigned char *buf = malloc(LWS_PRE + n);
        int rc = -1;
        if (buf) {
            memcpy(buf + LWS_PRE, js, n);
            rc = lws_write(wsi, buf + LWS_PRE, n, LWS_WRITE_TEXT) < (int)n ? -1 : 0;
        }
        free(buf);
        free(js);
        c->auth_sent = true;
        return rc;
    }
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (rx_append(c, in, len) != 0) {
            bj_warn("top: a message from %s too big, dropped", c->url);
            c->rx_len = WSC_RX_MAX; /* the rest of it is dropped too */
        }
        if (lws_is_final_fragment(wsi)) {
            if (c->rx_len < WSC_RX_MAX)
                message(c, c->rx, c->rx_len);
            c->rx_len = 0;
        }
        return c->stopping ? -1 : 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
        const char *why = in ? (const char *)in : "connection error";
        char text[512];
        if (strstr(why, "refused") || strstr(why, "Unable to connect"))
            snprintf(text, sizeof text, "connection refused or unreachable (is brainjar running there?)");
        else if (t_lws_err[0])
            snprintf(text, sizeof text, "%s: %s%s", why, t_lws_err,
                     strstr(t_lws_err, "certificate") ? " (--insecure accepts a self-signed one)" : "");
        else
            snprintf(text, sizeof text, "%s", why);
        t_lws_err[0] = '\0';
        link_lost(c, classify(why), text);
        return 0;
    }
    case LWS_CALLBACK_CLIENT_CLOSED:
        link_lost(c, BJ_WSC_REFUSED, "the daemon closed the connection");
        return 0;
    default:
        return 0;
    }
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    (void)user;
    struct lws_context *ctx = lws_get_context(wsi);
    struct bj_wsclient *c = ctx ? lws_context_user(ctx) : NULL;
    if (reason == LWS_CALLBACK_EVENT_WAIT_CANCELLED) {
        if (c)
            send_acts(c);
        return 0;
    }
    struct conn *cn = lws_get_opaque_user_data(wsi);
    if (!cn || !c)
        return lws_callback_http_dummy(wsi, reason, user, in, len);
    if (cn->ws)
        return ws_cb(wsi, reason, c, in, len);
    return post_cb(wsi, reason, cn, in, len);
}

static const struct lws_protocols k_protocols[] = {
    {"bj-top", callback, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- URL ---------------------------------------------------------------------------------- */

static int parse_url(struct bj_wsclient *c, const char *url, char *err, size_t errlen)
{
    char copy[512];
    snprintf(c->url, sizeof c->url, "%s", url);
    snprintf(copy, sizeof copy, "%s", url);
    if (strlen(url) >= sizeof copy || !strstr(url, "://")) {
        snprintf(err, errlen, "bad URL '%s' (expected http://HOST[:PORT], e.g. http://127.0.0.1:8095)", url);
        return -1;
    }
    const char *proto = NULL, *addr = NULL, *path = NULL;
    int port = 0;
    if (lws_parse_uri(copy, &proto, &addr, &port, &path) != 0 || !addr[0]) {
        snprintf(err, errlen, "bad URL '%s'", url);
        return -1;
    }
    if (strcmp(proto, "http") == 0 || strcmp(proto, "ws") == 0) {
        c->tls = false;
    } else if (strcmp(proto, "https") == 0 || strcmp(proto, "wss") == 0) {
        c->tls = true;
    } else {
        snprintf(err, errlen, "bad URL '%s': the scheme must be http, https, ws or wss", url);
        return -1;
    }
    if (port <= 0 || port > 65535) {
        snprintf(err, errlen, "bad URL '%s': port out of range", url);
        return -1;
    }
    /* lws_parse_uri gives port 80/443 when none is written: brainjar's default is 8095 */
    const char *after = strstr(url, "://") + 3;
    const char *slash = strchr(after, '/');
    size_t hostpart = slash ? (size_t)(slash - after) : strlen(after);
    if (!memchr(after, ':', hostpart) || (after[0] == '[' && !strstr(after, "]:")))
        port = 8095;
    c->port = port;
    snprintf(c->host, sizeof c->host, "%s", addr);
    (void)path; /* the API lives at /ws whatever path is given */
    snprintf(c->path, sizeof c->path, "/ws");
    if (strchr(c->host, ':'))
        snprintf(c->hosthdr, sizeof c->hosthdr, "[%s]:%d", c->host, port);
    else
        snprintf(c->hosthdr, sizeof c->hosthdr, "%s:%d", c->host, port);
    return 0;
}

int bj_wsclient_check_url(const char *url, char *err, size_t errlen)
{
    struct bj_wsclient *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = url ? parse_url(c, url, err, errlen) : -1;
    if (!url)
        snprintf(err, errlen, "no URL");
    free(c);
    return rc;
}

/* ---- lifecycle ---------------------------------------------------------------------------- */

struct bj_wsclient *bj_wsclient_new(const struct bj_wsclient_params *p, char *err, size_t errlen)
{
    struct bj_wsclient *c = calloc(1, sizeof *c);
    if (!c || !p->bus || !p->url) {
        snprintf(err, errlen, "top: %s", c ? "no bus or URL" : "out of memory");
        free(c);
        return NULL;
    }
    c->p = *p;
    c->evfd = -1;
    pthread_mutex_init(&c->mu, NULL);
    if (parse_url(c, p->url, err, errlen) != 0) {
        bj_wsclient_free(c);
        return NULL;
    }
    if (p->token && p->token[0])
        snprintf(c->authz, sizeof c->authz, "Bearer %s", p->token);
    c->ws_conn.c = c;
    c->ws_conn.ws = true;
    c->backoff_ms = p->backoff_min_ms > 0 ? p->backoff_min_ms : 250;
    c->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (c->evfd < 0) {
        snprintf(err, errlen, "top: eventfd: %s", strerror(errno));
        bj_wsclient_free(c);
        return NULL;
    }
    return c;
}

static void *client_main(void *arg)
{
    struct bj_wsclient *c = arg;
    connect_ws(c);
    for (;;) {
        pthread_mutex_lock(&c->mu);
        bool quit = c->quit;
        pthread_mutex_unlock(&c->mu);
        if (quit || lws_service(c->ctx, 0) < 0)
            break;
    }
    return NULL;
}

int bj_wsclient_start(struct bj_wsclient *c, char *err, size_t errlen)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = k_protocols;
    info.user = c;
    info.timeout_secs = (unsigned)(c->p.connect_timeout_s > 0 ? c->p.connect_timeout_s : 5);
    info.connect_timeout_secs = info.timeout_secs;
    info.options = c->tls ? LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT : 0;
    lws_set_log_level(LLL_ERR, lws_log_keep);
    c->ctx = lws_create_context(&info);
    if (!c->ctx) {
        snprintf(err, errlen, "top: cannot create a libwebsockets context");
        return -1;
    }
    if (pthread_create(&c->thread, NULL, client_main, c) != 0) {
        snprintf(err, errlen, "top: cannot start a thread");
        lws_context_destroy(c->ctx);
        c->ctx = NULL;
        return -1;
    }
    c->started = true;
    return 0;
}

void bj_wsclient_stop(struct bj_wsclient *c)
{
    if (!c || !c->started)
        return;
    pthread_mutex_lock(&c->mu);
    c->quit = true;
    pthread_mutex_unlock(&c->mu);
    lws_cancel_service(c->ctx);
    pthread_join(c->thread, NULL);
    c->started = false;
}

void bj_wsclient_free(struct bj_wsclient *c)
{
    if (!c || c->started)
        return;
    if (c->ctx) {
        c->stopping = true;
        lws_sul_cancel(&c->retry_sul);
        lws_context_destroy(c->ctx);
    }
    for (size_t k = 0; k < c->n_acts; k++)
        free(c->acts[k].body);
    if (c->evfd >= 0)
        close(c->evfd);
    free(c->rx);
    pthread_mutex_destroy(&c->mu);
    free(c);
}
