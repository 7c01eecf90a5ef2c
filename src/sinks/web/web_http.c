/* web_http: HTTP requests and responses of the web server: reading a request (headers, cookie,
 * the client's address, TLS), handing it to the routes, writing the answer with its status line
 * and security headers, and password checks on the hash workers, off this thread (server_int.h). */
#include "server_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "util.h"

/* ---- HTTP plumbing ------------------------------------------------------------------- */
void web_http_copy_hdr(struct lws *wsi, enum lws_token_indexes t, char *buf, size_t len)
{
    buf[0] = 0;
    if (lws_hdr_total_length(wsi, t) > 0 && lws_hdr_total_length(wsi, t) < (int)len)
        lws_hdr_copy(wsi, buf, (int)len, t);
}

void web_http_cookie_value(const char *cookies, const char *name, char *out, size_t len)
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
    web_http_copy_hdr(wsi, WSI_TOKEN_X_FORWARDED_FOR, xff, sizeof xff);
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
bool web_http_came_over_tls(const struct bj_web *w, struct lws *wsi)
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

static void web_http_read_request(struct bj_web *w, struct lws *wsi, struct web_req *rq)
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
    web_http_copy_hdr(wsi, WSI_TOKEN_HTTP_COOKIE, cookies, sizeof cookies);
    web_http_cookie_value(cookies, "bj_session", rq->session, sizeof rq->session);
    char authz[256];
    web_http_copy_hdr(wsi, WSI_TOKEN_HTTP_AUTHORIZATION, authz, sizeof authz);
    rq->has_auth_header = authz[0] != 0;
    if (strncasecmp(authz, "Bearer ", 7) == 0)
        bj_strlcpy(rq->bearer, authz + 7, sizeof rq->bearer);
    web_http_copy_hdr(wsi, WSI_TOKEN_ORIGIN, rq->origin, sizeof rq->origin);
    web_http_copy_hdr(wsi, WSI_TOKEN_HOST, rq->host, sizeof rq->host);
    web_http_copy_hdr(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE, rq->ctype, sizeof rq->ctype);
    rq->https = web_http_came_over_tls(w, wsi);
    rq->host_ok = routes_host_ok(web_ctx_of(w), rq->host);
}

const char *const web_security_headers[N_SECURITY_HEADERS][2] = {
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

static void web_http_resp_free(struct web_resp *rs)
{
    if (!rs->body_static)
        free(rs->body);
    memset(rs, 0, sizeof *rs);
}

static void web_http_req_free(struct pss *ps)
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
    web_http_req_free(ps);
    if (rc)
        return -1;
    ps->sent = 0;
    ps->responding = true;
    if (!ps->rs.body || ps->rs.len == 0) {
        ps->responding = false;
        web_http_resp_free(&ps->rs);
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
void web_http_hashers_wake(void *ud)
{
    struct bj_web *w = ud;
    lws_cancel_service(w->ctx);
}

void web_http_login_unlink(struct bj_web *w, struct web_login *job)
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

void web_http_logins_collect(struct bj_web *w)
{
    struct web_login *job;
    while (w->hashers && (job = bj_workpool_done(w->hashers))) {
        job->checked = true;
        if (job->wsi) {
            lws_callback_on_writable(job->wsi);
        } else {
            web_http_login_unlink(w, job);
            routes_login_free(job);
        }
    }
}

/* The connection's check is done: answer it. */
static int web_http_login_answer(struct bj_web *w, struct lws *wsi, struct pss *ps)
{
    struct web_login *job = ps->login;
    ps->login = NULL;
    web_http_login_unlink(w, job);
    web_http_resp_free(&ps->rs);
    routes_login_finish(web_ctx_of(w), ps->rq, &ps->rs, job);
    routes_login_free(job);
    return send_response(w, wsi, ps);
}

/* The connection closes: a check still out is freed when collected. */
static void web_http_login_drop(struct bj_web *w, struct pss *ps)
{
    struct web_login *job = ps->login;
    if (!job)
        return;
    ps->login = NULL;
    job->wsi = NULL;
    if (job->checked) {
        web_http_login_unlink(w, job);
        routes_login_free(job);
    }
}

/* Answers the request in ps->rq (or hands its password check to a worker). */
static int web_http_respond(struct bj_web *w, struct lws *wsi, struct pss *ps)
{
    web_http_resp_free(&ps->rs);
    routes_handle(web_ctx_of(w), ps->rq, &ps->rs);
    if (ps->rs.defer) {
        struct web_login *job = ps->rs.defer;
        ps->rs.defer = NULL;
        if (login_submit(w, wsi, ps, job) == 0)
            return 0;
        routes_login_free(job);
        web_http_resp_free(&ps->rs);
        routes_login_busy(&ps->rs);
    }
    return send_response(w, wsi, ps);
}

static int web_http_write_body(struct lws *wsi, struct pss *ps)
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
    web_http_resp_free(&ps->rs);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ---- the callback's HTTP cases --------------------------------------------------------------- */

int web_http_request(struct bj_web *w, struct lws *wsi, struct pss *ps)
{
    if (!ps)
        return -1;
    web_http_req_free(ps);
    web_http_resp_free(&ps->rs);
    ps->rq = calloc(1, sizeof *ps->rq);
    if (!ps->rq)
        return -1;
    web_http_read_request(w, wsi, ps->rq);
    if (ps->rq->method == M_POST || ps->rq->method == M_PUT || ps->rq->method == M_PATCH) {
        char cl[32];
        web_http_copy_hdr(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH, cl, sizeof cl);
        long n = cl[0] ? strtol(cl, NULL, 10) : 0;
        if (n > WEB_BODY_MAX)
            ps->rq->body_too_big = true;
        if (n > 1024 * 1024)
            return web_http_respond(w, wsi, ps); /* not worth reading: answered now, closed when the body comes */
        /* lws reports the body's end (also for Content-Length: 0); the answer waits for it. */
        if (cl[0] || lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0)
            return 0;
    }
    return web_http_respond(w, wsi, ps);
}

int web_http_body(struct pss *ps, const void *in, size_t len)
{
    if (!ps || !ps->rq)
        return -1;
    if (ps->rq->body_too_big)
        return 0;
    if (ps->rq->body_len + len > WEB_BODY_MAX) {
        ps->rq->body_too_big = true;
        free(ps->rq->body);
        ps->rq->body = NULL;
        return 0;
    }
    char *b = realloc(ps->rq->body, ps->rq->body_len + len + 1);
    if (!b)
        return -1;
    if (len) /* an empty body chunk may come with in == NULL */
        memcpy(b + ps->rq->body_len, in, len);
    ps->rq->body_len += len;
    b[ps->rq->body_len] = 0;
    ps->rq->body = b;
    return 0;
}

int web_http_body_done(struct bj_web *w, struct lws *wsi, struct pss *ps)
{
    if (!ps)
        return -1;
    if (!ps->rq)
        return 0; /* answered already */
    return web_http_respond(w, wsi, ps);
}

int web_http_writeable(struct bj_web *w, struct lws *wsi, struct pss *ps)
{
    if (ps && ps->login)
        return ps->login->checked ? web_http_login_answer(w, wsi, ps) : 0;
    return ps ? web_http_write_body(wsi, ps) : 0;
}

void web_http_closed(struct bj_web *w, struct pss *ps)
{
    if (!ps)
        return;
    web_http_login_drop(w, ps);
    web_http_req_free(ps);
    web_http_resp_free(&ps->rs);
}
