/* server: the web server's event loop and lifecycle (see web.h). HTTP requests are read and
 * answered in web_http.c (the routes, routes.c, decide what), WebSocket clients and the fan-out
 * live in web_ws.c, the view keeps what the events told (view.c).
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
#include "server_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

struct bj_web_params bj_web_params_default(void)
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
struct web_ctx *web_ctx_of(struct bj_web *w)
{
    w->rctx = (struct web_ctx){.hive = w->hive, .p = &w->p, .auth = w->auth, .view = w->view, .stats = &w->stats,
                              .bus = w->p.bus, .ws_clients = w->n_clients, .started_us = w->started_us};
    return &w->rctx;
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

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct lws_vhost *vh = lws_get_vhost(wsi);
    struct bj_web *w = vh ? lws_vhost_user(vh) : NULL;
    if (!w)
        w = lws_context_user(lws_get_context(wsi));
    struct pss *ps = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return web_http_request(w, wsi, ps);
    case LWS_CALLBACK_HTTP_BODY:
        return web_http_body(ps, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return web_http_body_done(w, wsi, ps);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return web_http_writeable(w, wsi, ps);
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (w)
            web_http_logins_collect(w);
        return 0;
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        web_http_closed(w, ps);
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return web_ws_filter(w, wsi);
    case LWS_CALLBACK_ESTABLISHED:
        return web_ws_established(w, wsi, ps);
    case LWS_CALLBACK_RECEIVE:
        return web_ws_receive(w, wsi, ps, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
        return ps && ps->c ? web_ws_client_write(w, ps->c) : 0;
    case LWS_CALLBACK_CLOSED:
        if (ps && ps->c) {
            web_ws_client_free(w, ps->c);
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
        web_ws_drain_bus(w);
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
        w->sec_headers[i].name = web_security_headers[i][0];
        w->sec_headers[i].value = web_security_headers[i][1];
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
    w->auth = bj_auth_new(w->data_dir, err, errlen);
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
    hp.wake = web_http_hashers_wake;
    hp.wake_ud = w;
    w->hashers = bj_workpool_new(&hp, err, errlen);
    if (!w->hashers)
        return -1;
    web_view_sample(w->view, w->hive);
    lws_sul_schedule(w->ctx, 0, &w->tick_sul, web_ws_tick, LWS_US_PER_SEC);
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
        web_http_login_unlink(w, job);
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
        web_ws_client_free(w, w->clients);
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
