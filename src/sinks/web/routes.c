/* routes: the HTTP routes of the web server (see routes.h, docs/API.md), on the web thread.
 *
 * Every request passes the same steps: sanity (method, UTF-8, body size, content type),
 * identity (session cookie, bearer token, or none), the route, the role it needs. Every
 * failure is a JSON error with the right 4xx status; nothing a client sends reaches a brain
 * except through the hive's operator calls. The original's routes keep their field names. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <sodium.h>

#include "log.h"
#include "util.h"
#include "web_asset.h"
#include "routes.h"

/* ---- small helpers ------------------------------------------------------------------- */
void routes_resp_header(struct web_resp *rs, const char *name, const char *fmt, ...)
{
    if (rs->n_headers >= WEB_RESP_HEADERS)
        return;
    bj_strlcpy(rs->hname[rs->n_headers], name, sizeof rs->hname[0]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rs->hval[rs->n_headers], sizeof rs->hval[0], fmt, ap);
    va_end(ap);
    rs->n_headers++;
}

static void resp_json(struct web_resp *rs, int status, json_t *o)
{
    rs->status = status;
    rs->ctype = "application/json";
    rs->body = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(o);
    if (!rs->body) {
        rs->status = 500;
        rs->body = (char *)"{\"error\":\"Out of memory\"}";
        rs->body_static = true;
    }
    rs->len = strlen(rs->body);
    routes_resp_header(rs, "cache-control:", "no-store");
}

static void resp_err(struct web_resp *rs, int status, const char *msg)
{
    resp_json(rs, status, json_pack("{s:s}", "error", msg));
}

/* The login routes answer in the original's {"success":false,"error":...} shape. */
static void resp_login_err(struct web_resp *rs, int status, const char *msg)
{
    resp_json(rs, status, json_pack("{s:b,s:s}", "success", 0, "error", msg));
}

static bool valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2 : (*p & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0 || (n == 1 && *p < 0xC2))
            return false;
        p++;
        for (int i = 0; i < n; i++, p++)
            if ((*p & 0xC0) != 0x80)
                return false;
    }
    return true;
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* A query parameter's value; NULL when absent. */
static const char *query_get(const struct web_req *rq, const char *name, char *buf, size_t len)
{
    size_t nl = strlen(name);
    const char *p = rq->query;
    while (*p) {
        if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
            p += nl + 1;
            size_t n = strcspn(p, "&");
            if (n >= len)
                n = len - 1;
            memcpy(buf, p, n);
            buf[n] = 0;
            return buf;
        }
        p = strchr(p, '&');
        if (!p)
            break;
        p++;
    }
    return NULL;
}

/* A query integer in [min, max]; def when absent; -1 (and a 400) when malformed. */
static int query_long(const struct web_req *rq, struct web_resp *rs, const char *name, long min, long max, long def,
                      long *out)
{
    char buf[64];
    const char *v = query_get(rq, name, buf, sizeof buf);
    if (!v) {
        *out = def;
        return 0;
    }
    if (bj_parse_long(v, min, max, out)) {
        char msg[160];
        snprintf(msg, sizeof msg, "Query parameter '%s' must be an integer from %ld to %ld", name, min, max);
        resp_err(rs, 400, msg);
        return -1;
    }
    return 0;
}

/* Parses the body as a JSON object (an empty body is {}). NULL after a 4xx response. */
static json_t *body_object(const struct web_req *rq, struct web_resp *rs, bool login)
{
    void (*err)(struct web_resp *, int, const char *) = login ? resp_login_err : resp_err;
    if (!rq->body || rq->body_len == 0)
        return json_object();
    if (strncasecmp(rq->ctype, "application/json", 16) != 0) {
        err(rs, 415, "Content-Type must be application/json");
        return NULL;
    }
    json_error_t je;
    json_t *o = json_loadb(rq->body, rq->body_len, JSON_REJECT_DUPLICATES, &je);
    if (!o) {
        char msg[256];
        snprintf(msg, sizeof msg, "Malformed JSON: %s", je.text);
        err(rs, 400, msg);
        return NULL;
    }
    if (!json_is_object(o)) {
        json_decref(o);
        err(rs, 400, "The body must be a JSON object");
        return NULL;
    }
    return o;
}

int routes_brain_index(const struct web_ctx *c, const char *id)
{
    return c->hive ? bj_spec_find_brain(bj_hive_spec_of(c->hive), id) : -1;
}

/* DNS rebinding makes a browser send an attacker's name (Host: evil.example:PORT) to our address;
 * a browser sends an IP literal only when the page itself was loaded from that address, so IP
 * literals, localhost and the --web-host-name names pass (with any port: a forwarded port changes
 * nothing for rebinding), every other name fails. An absent Host (HTTP/1.0, no browser) passes. */
bool routes_host_ok(const struct web_ctx *c, const char *hostport)
{
    char h[256];
    if (!hostport[0])
        return true;
    if (hostport[0] == '[') {
        const char *end = strchr(hostport, ']');
        if (!end || (size_t)(end - hostport - 1) >= sizeof h)
            return false;
        memcpy(h, hostport + 1, (size_t)(end - hostport - 1));
        h[end - hostport - 1] = 0;
        struct in6_addr a6;
        return inet_pton(AF_INET6, h, &a6) == 1 && (end[1] == 0 || end[1] == ':');
    }
    bj_strlcpy(h, hostport, sizeof h);
    char *colon = strchr(h, ':');
    if (colon)
        *colon = 0;
    size_t n = strlen(h);
    if (n > 1 && h[n - 1] == '.')
        h[n - 1] = 0;
    struct in_addr a4;
    if (inet_pton(AF_INET, h, &a4) == 1 || strcasecmp(h, "localhost") == 0)
        return true;
    if (c->p->host && strcasecmp(h, c->p->host) == 0)
        return true;
    for (int i = 0; i < c->p->n_host_names; i++)
        if (strcasecmp(h, c->p->host_names[i]) == 0)
            return true;
    return false;
}

/* An Origin is ours when it is exactly the scheme the client used, "://", and its Host; or the
 * one --web-allow-origin. */
bool routes_origin_ok(const struct web_ctx *c, const char *origin, const char *host, bool https)
{
    const char *allowed = c->p->allow_origin;
    if (allowed && allowed[0] && strcmp(origin, allowed) == 0)
        return true;
    char want[300];
    snprintf(want, sizeof want, "%s://%s", https ? "https" : "http", host);
    return host[0] && strcasecmp(origin, want) == 0;
}

void routes_json(struct web_resp *rs, int status, json_t *o) { resp_json(rs, status, o); }
void routes_err(struct web_resp *rs, int status, const char *msg) { resp_err(rs, status, msg); }
json_t *routes_body(const struct web_req *rq, struct web_resp *rs) { return body_object(rq, rs, false); }

/* ---- routes ------------------------------------------------------------------------- */
struct ctx {
    struct web_ctx *w;
    struct web_req *rq;
    struct web_resp *rs;
    const char *arg;    /* the <id> of a route */
    const char *action; /* the verb of an operator route */
};

static int snapshot(struct ctx *x, struct bj_hive_snapshot *s)
{
    if (bj_hive_snapshot(x->w->hive, s) != 0) {
        resp_err(x->rs, 503, "Out of memory");
        return -1;
    }
    return 0;
}

static int find_view(const struct bj_hive_snapshot *s, const char *id)
{
    for (int i = 0; i < s->n_brains; i++)
        if (strcmp(s->brains[i].id, id) == 0)
            return i;
    return -1;
}

static void r_health(struct ctx *x)
{
    char ts[40];
    bj_iso_time_us(bj_event_now(), ts, sizeof ts);
    const struct bj_hive_spec *spec = bj_hive_spec_of(x->w->hive);
    resp_json(x->rs, 200, json_pack("{s:s,s:s,s:i}", "status", "healthy", "timestamp", ts, "instances",
                                    spec ? spec->n_brains : 0));
}

static void r_status(struct ctx *x)
{
    struct bj_hive_snapshot s;
    if (snapshot(x, &s))
        return;
    json_t *inst = json_object();
    for (int i = 0; i < s.n_brains; i++)
        json_object_set_new(inst, s.brains[i].id, routes_state_json(x->w, &s, i));
    char ts[40];
    bj_iso_time_us(bj_event_now(), ts, sizeof ts);
    resp_json(x->rs, 200, json_pack("{s:o,s:o,s:s}", "instances", inst, "metrics", routes_metrics_json(x->w, &s),
                                    "timestamp", ts));
    bj_hive_snapshot_free(&s);
}

static void r_instances(struct ctx *x)
{
    const struct bj_hive_spec *spec = bj_hive_spec_of(x->w->hive);
    json_t *a = json_array();
    for (int i = 0; i < spec->n_brains; i++)
        json_array_append_new(a, json_string(spec->brains[i].id));
    resp_json(x->rs, 200, json_pack("{s:o}", "instances", a));
}

static void r_instance(struct ctx *x)
{
    struct bj_hive_snapshot s;
    if (snapshot(x, &s))
        return;
    int i = find_view(&s, x->arg);
    if (i < 0)
        resp_err(x->rs, 404, "Instance not found");
    else
        resp_json(x->rs, 200, routes_state_json(x->w, &s, i));
    bj_hive_snapshot_free(&s);
}

static void r_logs(struct ctx *x)
{
    long limit;
    if (query_long(x->rq, x->rs, "limit", 1, WEB_LOGS, 100, &limit))
        return;
    char idb[64];
    const char *id = query_get(x->rq, "instance_id", idb, sizeof idb);
    if (id && !*id)
        id = NULL;
    if (id && routes_brain_index(x->w, id) < 0) {
        resp_err(x->rs, 404, "Instance not found");
        return;
    }
    json_t *logs = json_array();
    int n = web_view_logs(x->w->view);
    /* Oldest first among the newest `limit`, as the original listed them. */
    int picked[WEB_LOGS], np = 0;
    for (int i = 0; i < n && np < limit; i++) {
        const struct log_rec *l = web_view_log(x->w->view, i);
        if (!id || strcmp(l->brain, id) == 0)
            picked[np++] = i;
    }
    for (int k = np - 1; k >= 0; k--) {
        const struct log_rec *l = web_view_log(x->w->view, picked[k]);
        json_t *msg = json_string(l->message ? l->message : "");
        json_array_append_new(logs, json_pack("{s:o,s:o,s:s,s:o,s:O}", "timestamp", web_view_iso_or_null(l->time_us),
                                              "instance_id", l->brain[0] ? json_string(l->brain) : json_null(), "level",
                                              l->level, "message", msg ? msg : json_string(""), "data",
                                              l->data ? l->data : json_null()));
    }
    resp_json(x->rs, 200, json_pack("{s:o,s:i}", "logs", logs, "count", np));
}

static void r_metrics_json(struct ctx *x)
{
    struct bj_hive_snapshot s;
    if (snapshot(x, &s))
        return;
    resp_json(x->rs, 200, routes_metrics_json(x->w, &s));
    bj_hive_snapshot_free(&s);
}

static void r_brains(struct ctx *x)
{
    struct bj_hive_snapshot s;
    if (snapshot(x, &s))
        return;
    json_t *a = json_array();
    for (int i = 0; i < s.n_brains; i++)
        json_array_append_new(a, routes_brain_json(x->w, &s.brains[i], i));
    char started[40];
    bj_iso_time_us(s.started_us, started, sizeof started);
    resp_json(x->rs, 200, json_pack("{s:o,s:{s:s,s:s,s:I,s:I,s:f}}", "brains", a, "hive", "mode", x->w->p->mode,
                                    "started", started, "deaths", (json_int_t)s.deaths, "tokens",
                                    (json_int_t)s.tokens, "tok_s", s.tok_s));
    bj_hive_snapshot_free(&s);
}

static void r_brain(struct ctx *x)
{
    struct bj_brain_view v;
    if (bj_hive_brain(x->w->hive, x->arg, &v) != 0) {
        resp_err(x->rs, 404, "Brain not found");
        return;
    }
    resp_json(x->rs, 200, routes_brain_json(x->w, &v, routes_brain_index(x->w, x->arg)));
}

static void r_thoughts(struct ctx *x)
{
    int b = routes_brain_index(x->w, x->arg);
    if (b < 0) {
        resp_err(x->rs, 404, "Brain not found");
        return;
    }
    long limit, before;
    if (query_long(x->rq, x->rs, "limit", 1, 500, 50, &limit) ||
        query_long(x->rq, x->rs, "before", 0, 0x7fffffffffffffffL, 0, &before))
        return;
    json_t *arr = json_array();
    const char *source = "memory";
    int64_t oldest = 0;
    int got = -1;
    const struct bj_web_params *p = x->w->p;
    if (p->history) {
        struct bj_thought_rec *recs = calloc((size_t)limit, sizeof *recs);
        if (recs) {
            got = p->history(p->history_ud, x->arg, before, (int)limit, recs);
            for (int i = 0; i < got && i < limit; i++) {
                json_array_append_new(arr, web_view_thought_json(&recs[i]));
                oldest = recs[i].time_us;
            }
            for (int i = 0; i < limit; i++)
                free(recs[i].text);
            free(recs);
            if (got >= 0)
                source = "store";
        }
    }
    if (got < 0) {
        const struct thought_ring *r = web_view_thoughts(x->w->view, b);
        for (int k = r->n - 1; k >= 0 && (long)json_array_size(arr) < limit; k--) {
            const struct bj_thought_rec *rec = &r->recs[(r->head + k) % r->cap];
            if (before && rec->time_us >= before)
                continue;
            json_array_append_new(arr, web_view_thought_json(rec));
            oldest = rec->time_us;
        }
    }
    json_t *next = (long)json_array_size(arr) == limit && oldest ? json_integer(oldest) : json_null();
    resp_json(x->rs, 200, json_pack("{s:s,s:o,s:i,s:s,s:o}", "brain", x->arg, "thoughts", arr, "count",
                                    (int)json_array_size(arr), "source", source, "next_before", next));
}

static void r_deaths(struct ctx *x)
{
    long limit;
    if (query_long(x->rq, x->rs, "limit", 1, WEB_DEATHS, 100, &limit))
        return;
    char bb[64];
    const char *brain = query_get(x->rq, "brain", bb, sizeof bb);
    if (brain && !*brain)
        brain = NULL;
    if (brain && routes_brain_index(x->w, brain) < 0) {
        resp_err(x->rs, 404, "Brain not found");
        return;
    }
    json_t *arr = json_array();
    int n = web_view_deaths(x->w->view);
    for (int i = 0; i < n && (long)json_array_size(arr) < limit; i++) {
        const struct death_rec *d = web_view_death(x->w->view, i);
        if (!brain || strcmp(d->brain, brain) == 0)
            json_array_append_new(arr, web_view_death_json(d));
    }
    struct bj_hive_snapshot s;
    if (snapshot(x, &s)) {
        json_decref(arr);
        return;
    }
    json_t *by = json_object();
    for (int i = 0; i < s.n_brains; i++) {
        json_t *c = json_object();
        for (int k = 0; k < BJ_DEATH_CAUSES; k++)
            json_object_set_new(c, bj_death_cause_name((enum bj_death_cause)k), json_integer(s.brains[i].deaths_by_cause[k]));
        json_object_set_new(by, s.brains[i].id, json_pack("{s:i,s:o}", "total", (int)s.brains[i].deaths, "this_run", c));
    }
    bj_hive_snapshot_free(&s);
    resp_json(x->rs, 200, json_pack("{s:o,s:i,s:o}", "deaths", arr, "count", (int)json_array_size(arr), "by_brain", by));
}

static void r_budget(struct ctx *x)
{
    char *text = bj_hive_budget_report(x->w->hive);
    json_t *lines = json_array();
    for (char *p = text, *nl; p && *p; p = nl ? nl + 1 : NULL) {
        nl = strchr(p, '\n');
        json_t *l = json_stringn(p, nl ? (size_t)(nl - p) : strlen(p));
        if (l)
            json_array_append_new(lines, l);
        if (!nl)
            break;
    }
    json_t *t = text ? json_string(text) : NULL;
    resp_json(x->rs, 200, json_pack("{s:o,s:o}", "report", t ? t : json_null(), "lines", lines));
    free(text);
}

static void r_series(struct ctx *x)
{
    struct bj_hive_snapshot s;
    if (snapshot(x, &s))
        return;
    resp_json(x->rs, 200, json_pack("{s:o,s:o}", "series", web_view_series_json(x->w->view, &s), "memory", web_view_memory_json(x->w->view)));
    bj_hive_snapshot_free(&s);
}

static void r_me(struct ctx *x)
{
    resp_json(x->rs, 200, json_pack("{s:s,s:s,s:b}", "user", x->rq->user, "role", bj_role_name(x->rq->role), "auth",
                                    x->w->p->auth));
}


static void r_action(struct ctx *x)
{
    json_t *o = body_object(x->rq, x->rs, false);
    if (!o)
        return;
    struct bj_hive *h = x->w->hive;
    char who[96];
    snprintf(who, sizeof who, "web:%s", x->rq->user);
    int rc;
    const char *a = x->action;
    if (routes_brain_index(x->w, x->arg) < 0) {
        json_decref(o);
        resp_err(x->rs, 404, "Brain not found");
        return;
    }
    char why[160];
    if (bj_hive_refuses(h, x->arg, a, why, sizeof why)) {
        json_decref(o);
        resp_err(x->rs, 409, why);
        return;
    }
    if (strcmp(a, "say") == 0) {
        json_t *jt = json_object_get(o, "text"), *jf = json_object_get(o, "from");
        if (!json_is_string(jt) || (jf && !json_is_string(jf))) {
            json_decref(o);
            resp_err(x->rs, 400, "'text' must be a string (and 'from', if given, a string)");
            return;
        }
        const char *text = json_string_value(jt), *from = jf ? json_string_value(jf) : "a visitor";
        size_t n = utf8_chars(text);
        if (n == 0 || n > WEB_SAY_MAX || strlen(from) == 0 || utf8_chars(from) > 31) {
            json_decref(o);
            char msg[160];
            snprintf(msg, sizeof msg, "'text' must have 1 to %d characters and 'from' 1 to 31", WEB_SAY_MAX);
            resp_err(x->rs, 400, msg);
            return;
        }
        if (strlen(text) != json_string_length(jt)) {
            json_decref(o);
            resp_err(x->rs, 400, "'text' must not contain NUL characters");
            return;
        }
        rc = bj_hive_say(h, x->arg, from, text, who);
    } else if (strcmp(a, "kill") == 0) {
        rc = bj_hive_kill(h, x->arg, NULL, who);
    } else if (strcmp(a, "resurrect") == 0) {
        rc = bj_hive_resurrect(h, x->arg, who);
    } else if (strcmp(a, "pause") == 0) {
        rc = bj_hive_pause(h, x->arg, who);
    } else {
        rc = bj_hive_resume(h, x->arg, who);
    }
    json_decref(o);
    if (rc == 0) {
        bj_info("web: %s %s %s", who, a, x->arg);
        resp_json(x->rs, 202, json_pack("{s:b,s:s,s:s}", "ok", 1, "action", a, "brain", x->arg));
    } else if (rc == -ENOENT) {
        resp_err(x->rs, 404, "Brain not found");
    } else {
        resp_err(x->rs, 409, "The brain cannot do that now");
    }
}

/* Secure when the client reached us over TLS (ours, or a trusted proxy's that said so), or when
 * --web-cookie-secure says the site is only ever served over https. */
static void set_session_cookie(struct web_ctx *w, const struct web_req *rq, struct web_resp *rs, const char *value,
                               long max_age)
{
    bool secure = rq->https || w->p->cookie_secure;
    routes_resp_header(rs, "set-cookie:", "bj_session=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%ld%s", value,
                       max_age, secure ? "; Secure" : "");
}

static void login_failed(struct web_ctx *w, const struct web_req *rq, struct web_resp *rs, const char *user)
{
    bj_auth_limit_fail(w->auth, rq->peer, bj_now_us() / 1000000);
    w->stats->logins_failed++;
    bj_warn("web: failed login for '%.64s' from %s", user, rq->peer);
    resp_login_err(rs, 401, "Invalid credentials");
}

/* POST /login checks the body here, then hands the password check (Argon2id, slow) to the hash
 * workers through rs->defer; routes_login_finish() answers when the check is done. */
static void r_login(struct ctx *x)
{
    struct bj_auth *a = x->w->auth;
    int wait = bj_auth_limit_wait(a, x->rq->peer, bj_now_us() / 1000000);
    if (wait > 0) {
        routes_resp_header(x->rs, "retry-after:", "%d", wait);
        char msg[120];
        snprintf(msg, sizeof msg, "Too many failed logins; try again in %d s", wait);
        resp_login_err(x->rs, 429, msg);
        return;
    }
    json_t *o = body_object(x->rq, x->rs, true);
    if (!o)
        return;
    json_t *jp = json_object_get(o, "password"), *ju = json_object_get(o, "username");
    if (!json_is_string(jp) || (ju && !json_is_null(ju) && !json_is_string(ju))) {
        json_decref(o);
        resp_login_err(x->rs, 400, "'password' must be a string (and 'username', if given, a string)");
        return;
    }
    const char *user = json_is_string(ju) && json_string_length(ju) ? json_string_value(ju) : "admin";
    if (json_string_length(jp) > BJ_AUTH_PASSWORD_MAX || strlen(user) > BJ_AUTH_NAME_MAX) {
        login_failed(x->w, x->rq, x->rs, user);
        json_decref(o);
        return;
    }
    struct web_login *job = calloc(1, sizeof *job);
    char *pw = job ? strdup(json_string_value(jp)) : NULL;
    if (!pw) {
        free(job);
        json_decref(o);
        resp_login_err(x->rs, 503, "Out of memory");
        return;
    }
    bj_strlcpy(job->user, user, sizeof job->user);
    job->password = pw;
    bj_auth_login_hash(a, job->user, job->hash);
    json_decref(o);
    x->rs->defer = job;
}

void routes_login_check(void *arg)
{
    struct web_login *job = arg;
    job->ok = bj_auth_password_ok(job->hash, job->password);
    sodium_memzero(job->password, strlen(job->password));
}

void routes_login_free(struct web_login *job)
{
    if (!job)
        return;
    if (job->password) {
        sodium_memzero(job->password, strlen(job->password));
        free(job->password);
    }
    free(job);
}

void routes_login_busy(struct web_resp *rs)
{
    routes_resp_header(rs, "retry-after:", "1");
    resp_login_err(rs, 503, "Too many logins in progress; try again in 1 s");
}

void routes_login_finish(struct web_ctx *w, struct web_req *rq, struct web_resp *rs, const struct web_login *job)
{
    struct bj_auth *a = w->auth;
    const struct bj_web_params *p = w->p;
    char session[BJ_AUTH_SECRET_LEN + 1];
    enum bj_role role;
    bj_auth_refresh(a);
    if (!job->ok || bj_auth_login_finish(a, job->user, job->hash, p->session_ttl_s, session, &role)) {
        login_failed(w, rq, rs, job->user);
        return;
    }
    bj_auth_limit_clear(a, rq->peer);
    w->stats->logins_ok++;
    bj_info("web: %s logged in from %s (%s)", job->user, rq->peer, bj_role_name(role));
    set_session_cookie(w, rq, rs, session, p->session_ttl_s);
    resp_json(rs, 200, json_pack("{s:b,s:s,s:s,s:s}", "success", 1, "token", session, "user", job->user, "role",
                                 bj_role_name(role)));
}

static void r_logout(struct ctx *x)
{
    const char *s = x->rq->session[0] ? x->rq->session : x->rq->bearer;
    bj_auth_logout(x->w->auth, s);
    set_session_cookie(x->w, x->rq, x->rs, "", 0);
    resp_json(x->rs, 200, json_pack("{s:b}", "success", 1));
}

const struct bj_web_asset *bj_web_asset_find(const char *path)
{
    for (const struct bj_web_asset *f = bj_web_assets; f->path; f++)
        if (strcmp(f->path, path) == 0)
            return f;
    return NULL;
}

static void r_prometheus(struct ctx *x)
{
    struct bj_hive_snapshot s;
    if (snapshot(x, &s))
        return;
    size_t len = 0;
    char *text = routes_prometheus_text(x->w, &s, &len);
    bj_hive_snapshot_free(&s);
    if (!text) {
        resp_err(x->rs, 503, "Out of memory");
        return;
    }
    x->rs->status = 200;
    x->rs->ctype = "text/plain; version=0.0.4; charset=utf-8";
    x->rs->body = text;
    x->rs->len = len;
    routes_resp_header(x->rs, "cache-control:", "no-store");
}

static void r_static(struct ctx *x, const struct bj_web_asset *f)
{
    x->rs->status = 200;
    x->rs->ctype = f->ctype;
    x->rs->body = (char *)f->data;
    x->rs->len = f->len;
    x->rs->body_static = true;
    routes_resp_header(x->rs, "cache-control:", "no-cache");
}

/* ---- the routing table -------------------------------------------------------------- */
enum need { PUBLIC, VIEWER, OPERATOR, METRICS };
struct route {
    enum web_method method;
    const char *pattern; /* '*' stands for one path segment (a brain id) */
    enum need need;
    void (*fn)(struct ctx *);
};

static void r_lab(struct ctx *x) { routes_lab_state(x->w, x->rs); }
static void r_lab_intervene(struct ctx *x) { routes_lab_intervene(x->w, x->rq, x->rs); }

static const struct route k_routes[] = {
    {M_GET, "/api/health", PUBLIC, r_health},
    {M_POST, "/login", PUBLIC, r_login},
    {M_GET, "/logout", PUBLIC, r_logout},
    {M_POST, "/logout", PUBLIC, r_logout},
    {M_GET, "/api/me", VIEWER, r_me},
    {M_GET, "/api/status", VIEWER, r_status},
    {M_GET, "/api/instances", VIEWER, r_instances},
    {M_GET, "/api/instance/*", VIEWER, r_instance},
    {M_GET, "/api/logs", VIEWER, r_logs},
    {M_GET, "/api/metrics", VIEWER, r_metrics_json},
    {M_GET, "/api/brains", VIEWER, r_brains},
    {M_GET, "/api/brains/*", VIEWER, r_brain},
    {M_GET, "/api/brains/*/thoughts", VIEWER, r_thoughts},
    {M_POST, "/api/brains/*/kill", OPERATOR, r_action},
    {M_POST, "/api/brains/*/resurrect", OPERATOR, r_action},
    {M_POST, "/api/brains/*/pause", OPERATOR, r_action},
    {M_POST, "/api/brains/*/resume", OPERATOR, r_action},
    {M_POST, "/api/brains/*/say", OPERATOR, r_action},
    {M_GET, "/api/deaths", VIEWER, r_deaths},
    {M_GET, "/api/budget", VIEWER, r_budget},
    {M_GET, "/api/series", VIEWER, r_series},
    {M_GET, "/metrics", METRICS, r_prometheus},
    {M_GET, "/api/lab", VIEWER, r_lab},
    {M_POST, "/api/lab/interventions", OPERATOR, r_lab_intervene},
};

/* Matches path against pattern; the '*' segment goes into arg, the last segment into action. */
static bool match(const char *pattern, const char *path, char *arg, size_t arglen, char *action, size_t actlen)
{
    const char *p = pattern, *s = path;
    arg[0] = 0;
    while (*p && *s) {
        if (*p == '*') {
            size_t n = strcspn(s, "/");
            if (n == 0 || n >= arglen)
                return false;
            memcpy(arg, s, n);
            arg[n] = 0;
            s += n;
            p++;
        } else if (*p == *s) {
            p++, s++;
        } else {
            return false;
        }
    }
    if (*p || *s)
        return false;
    const char *last = strrchr(path, '/');
    bj_strlcpy(action, last ? last + 1 : "", actlen);
    return true;
}

static const char *method_name(enum web_method m)
{
    static const char *const n[] = {"GET", "POST", "OPTIONS", "PUT", "PATCH", "DELETE", "HEAD", "?"};
    return n[m];
}

/* Who is asking: a bearer token (an API token or a session id), else the session cookie. */
static void identify(struct web_ctx *w, struct web_req *rq)
{
    rq->role = BJ_ROLE_NONE;
    if (!w->p->auth) {
        rq->role = BJ_ROLE_OPERATOR;
        bj_strlcpy(rq->user, "anonymous", sizeof rq->user);
        return;
    }
    struct bj_auth *a = w->auth;
    bj_auth_refresh(a);
    if (rq->bearer[0]) {
        rq->role = bj_auth_token(a, rq->bearer, rq->user, sizeof rq->user);
        if (rq->role == BJ_ROLE_NONE)
            rq->role = bj_auth_session(a, rq->bearer, rq->user, sizeof rq->user);
        return;
    }
    if (rq->session[0]) {
        rq->role = bj_auth_session(a, rq->session, rq->user, sizeof rq->user);
        rq->via_session = rq->role != BJ_ROLE_NONE;
    }
}

/* A state-changing request carrying an Origin must come from this server or the allowed origin. */
static bool origin_ok(struct web_ctx *w, const struct web_req *rq)
{
    return !rq->origin[0] || routes_origin_ok(w, rq->origin, rq->host, rq->https);
}

void routes_handle(struct web_ctx *w, struct web_req *rq, struct web_resp *rs)
{
    struct ctx x = {.w = w, .rq = rq, .rs = rs};
    if (!rq->host_ok) {
        resp_err(rs, 421, "Misdirected Request: this server is not called by that name (see --web-host-name)");
        return;
    }
    if (!valid_utf8(rq->path) || !valid_utf8(rq->query)) {
        resp_err(rs, 400, "The URL is not valid UTF-8");
        return;
    }
    if (rq->body_too_big) {
        char msg[80];
        snprintf(msg, sizeof msg, "Request body too large (at most %d bytes)", WEB_BODY_MAX);
        resp_err(rs, 413, msg);
        return;
    }
    if (rq->method == M_OPTIONS) {
        const char *allowed = w->p->allow_origin;
        rs->status = 204;
        if (allowed && allowed[0] && strcmp(rq->origin, allowed) == 0) {
            routes_resp_header(rs, "access-control-allow-methods:", "GET, POST, OPTIONS");
            routes_resp_header(rs, "access-control-allow-headers:", "Content-Type, Authorization");
            routes_resp_header(rs, "access-control-max-age:", "600");
        }
        return;
    }
    identify(w, rq);
    enum web_method m = rq->method == M_HEAD ? M_GET : rq->method;

    /* Static files: the dashboard is public code; the data it shows is not. */
    if (m == M_GET) {
        const char *name = rq->path;
        if (strcmp(name, "/") == 0 || strcmp(name, "/index.html") == 0) {
            if (rq->role == BJ_ROLE_NONE) {
                rs->status = 302;
                routes_resp_header(rs, "location:", "/login%s%s", rq->query[0] ? "?" : "", rq->query);
                routes_resp_header(rs, "cache-control:", "no-store");
                return;
            }
            name = "/index.html";
        } else if (strcmp(name, "/login") == 0) {
            name = "/login.html";
        }
        const struct bj_web_asset *f = bj_web_asset_find(name);
        if (f) {
            r_static(&x, f);
            return;
        }
    }

    char arg[BJ_NAME_MAX + 1], action[32];
    bool path_known = false;
    char allow[64] = "";
    for (size_t i = 0; i < BJ_ARRAY_LEN(k_routes); i++) {
        const struct route *r = &k_routes[i];
        if (!match(r->pattern, rq->path, arg, sizeof arg, action, sizeof action))
            continue;
        path_known = true;
        if (r->method != m) {
            size_t l = strlen(allow);
            snprintf(allow + l, sizeof allow - l, "%s%s", l ? ", " : "", method_name(r->method));
            continue;
        }
        if (m == M_POST && !origin_ok(w, rq)) {
            resp_err(rs, 403, "Origin not allowed");
            return;
        }
        bool ok = true;
        switch (r->need) {
        case PUBLIC:
            break;
        case METRICS:
            ok = rq->role != BJ_ROLE_NONE || w->p->metrics_public;
            break;
        case VIEWER:
            ok = rq->role >= BJ_ROLE_VIEWER;
            break;
        case OPERATOR:
            if (rq->role == BJ_ROLE_VIEWER) {
                resp_err(rs, 403, "Operator role required");
                return;
            }
            ok = rq->role == BJ_ROLE_OPERATOR;
            break;
        }
        if (!ok) {
            routes_resp_header(rs, "www-authenticate:", "Bearer realm=\"brainjar\"");
            resp_err(rs, 401, "Authentication required");
            return;
        }
        if (!w->hive && r->fn != r_login && r->fn != r_logout) {
            resp_err(rs, 503, "The hive is starting");
            return;
        }
        x.arg = arg;
        x.action = action;
        r->fn(&x);
        return;
    }
    if (path_known) {
        routes_resp_header(rs, "allow:", "%s", allow);
        resp_err(rs, 405, "Method not allowed");
        return;
    }
    resp_err(rs, 404, "Not found");
}
