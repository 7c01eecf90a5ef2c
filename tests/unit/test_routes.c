/* Unit tests for the web routes without sockets: a request struct in, a response struct out.
 * The steps every request passes (Host 421, UTF-8 400, body 413), identity (no token 401, a
 * viewer's token 403 on an operator route, an operator's reaches the hive), methods (405 with
 * Allow), unknown paths 404, the dashboard's redirect to /login, the Origin check on POSTs, the
 * Host and Origin rules themselves, and the mood of a text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "routes.h"
#include "util.h"

static char g_dir[400];
static struct bj_web_params g_p;
static struct web_stats g_stats;
static struct web_ctx g_w;
static char g_viewer[BJ_AUTH_SECRET_LEN + 1], g_operator[BJ_AUTH_SECRET_LEN + 1];

static int setup(void **state)
{
    (void)state;
    const char *tmp = getenv("BJ_TEST_TMP");
    snprintf(g_dir, sizeof g_dir, "%s/bj-routes-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    assert_int_equal(bj_mkdirs(g_dir), 0);
    g_p = bj_web_params_default();
    g_p.data_dir = g_dir;
    char err[256];
    g_w = (struct web_ctx){.p = &g_p, .stats = &g_stats, .started_us = bj_now_us()};
    g_w.auth = bj_auth_new(g_dir, err, sizeof err);
    assert_non_null(g_w.auth);
    assert_int_equal(bj_auth_token_create(g_w.auth, BJ_ROLE_VIEWER, "v", g_viewer, err, sizeof err), 0);
    assert_int_equal(bj_auth_token_create(g_w.auth, BJ_ROLE_OPERATOR, "o", g_operator, err, sizeof err), 0);
    g_w.view = web_view_new(0, 10);
    assert_non_null(g_w.view);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bj_auth_free(g_w.auth);
    web_view_free(g_w.view);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd);
}

/* One request: method, path, and optionally a bearer token and an Origin. Returns the status;
 * the response is left in *rs (free its body with done()). */
static int ask(enum web_method m, const char *path, const char *bearer, const char *origin, struct web_resp *rs)
{
    struct web_req rq = {.method = m, .host_ok = true};
    bj_strlcpy(rq.path, path, sizeof rq.path);
    bj_strlcpy(rq.host, "127.0.0.1:8095", sizeof rq.host);
    bj_strlcpy(rq.peer, "127.0.0.1", sizeof rq.peer);
    if (bearer) {
        bj_strlcpy(rq.bearer, bearer, sizeof rq.bearer);
        rq.has_auth_header = true;
    }
    if (origin)
        bj_strlcpy(rq.origin, origin, sizeof rq.origin);
    memset(rs, 0, sizeof *rs);
    routes_handle(&g_w, &rq, rs);
    return rs->status;
}

static void done(struct web_resp *rs)
{
    if (!rs->body_static)
        free(rs->body);
}

static const char *header(const struct web_resp *rs, const char *name)
{
    for (int i = 0; i < rs->n_headers; i++)
        if (strcmp(rs->hname[i], name) == 0)
            return rs->hval[i];
    return NULL;
}

static void request_sanity(void **state)
{
    (void)state;
    struct web_req rq = {.method = M_GET, .host_ok = false};
    struct web_resp rs = {0};
    bj_strlcpy(rq.path, "/api/health", sizeof rq.path);
    routes_handle(&g_w, &rq, &rs);
    assert_int_equal(rs.status, 421); /* a name this server is not called by (DNS rebinding) */
    done(&rs);
    rq.host_ok = true;
    bj_strlcpy(rq.path, "/api/\xff\xfe", sizeof rq.path);
    memset(&rs, 0, sizeof rs);
    routes_handle(&g_w, &rq, &rs);
    assert_int_equal(rs.status, 400);
    done(&rs);
    bj_strlcpy(rq.path, "/login", sizeof rq.path);
    rq.method = M_POST;
    rq.body_too_big = true;
    memset(&rs, 0, sizeof rs);
    routes_handle(&g_w, &rq, &rs);
    assert_int_equal(rs.status, 413);
    assert_non_null(strstr(rs.body, "too large"));
    done(&rs);
}

static void identity_and_roles(void **state)
{
    (void)state;
    struct web_resp rs;
    assert_int_equal(ask(M_GET, "/api/status", NULL, NULL, &rs), 401);
    assert_non_null(header(&rs, "www-authenticate:"));
    done(&rs);
    assert_int_equal(ask(M_GET, "/api/status", "bj_0000000000000000000000000000000000000000000000000000000000000000", NULL, &rs), 401);
    done(&rs);
    /* a viewer passes the viewer routes (the hive is not there yet: 503), not the operator's */
    assert_int_equal(ask(M_GET, "/api/status", g_viewer, NULL, &rs), 503);
    done(&rs);
    assert_int_equal(ask(M_POST, "/api/brains/SUBJECT/kill", g_viewer, NULL, &rs), 403);
    done(&rs);
    assert_int_equal(ask(M_POST, "/api/brains/SUBJECT/kill", g_operator, NULL, &rs), 503);
    done(&rs);
}

static void methods_paths_redirects(void **state)
{
    (void)state;
    struct web_resp rs;
    assert_int_equal(ask(M_DELETE, "/api/health", NULL, NULL, &rs), 405);
    assert_string_equal(header(&rs, "allow:"), "GET");
    done(&rs);
    assert_int_equal(ask(M_GET, "/api/nothing-here", g_viewer, NULL, &rs), 404);
    done(&rs);
    assert_int_equal(ask(M_GET, "/", NULL, NULL, &rs), 302);
    assert_string_equal(header(&rs, "location:"), "/login");
    done(&rs);
    assert_int_equal(ask(M_GET, "/login", NULL, NULL, &rs), 200); /* the login page is public */
    assert_true(rs.len > 0);
    done(&rs);
    /* a POST from another site's page is refused before anything else */
    assert_int_equal(ask(M_POST, "/api/brains/SUBJECT/kill", g_operator, "http://evil.example", &rs), 403);
    assert_non_null(strstr(rs.body, "Origin"));
    done(&rs);
}

static void host_and_origin_rules(void **state)
{
    (void)state;
    assert_true(routes_host_ok(&g_w, "127.0.0.1:8095"));
    assert_true(routes_host_ok(&g_w, "localhost:8095"));
    assert_true(routes_host_ok(&g_w, "[::1]:8095"));
    assert_false(routes_host_ok(&g_w, "evil.example:8095"));
    assert_false(routes_host_ok(&g_w, "127.0.0.1.evil.example:8095"));
    assert_true(routes_origin_ok(&g_w, "http://127.0.0.1:8095", "127.0.0.1:8095", false));
    assert_false(routes_origin_ok(&g_w, "https://127.0.0.1:8095", "127.0.0.1:8095", false)); /* scheme counts */
    assert_false(routes_origin_ok(&g_w, "http://evil.example", "127.0.0.1:8095", false));
}

static void moods(void **state)
{
    (void)state;
    assert_null(routes_mood(NULL));
    assert_non_null(routes_mood("I am afraid of the dark"));
    assert_non_null(routes_mood("plain words"));
}

int main(void)
{
    bj_log_set_level(BJ_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(request_sanity),
        cmocka_unit_test(identity_and_roles),
        cmocka_unit_test(methods_paths_redirects),
        cmocka_unit_test(host_and_origin_rules),
        cmocka_unit_test(moods),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
