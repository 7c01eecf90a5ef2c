/* Unit tests for the web routes without sockets: a request struct in, a response struct out.
 * The steps every request passes (Host 421, UTF-8 400, body 413), identity (no token 401, a
 * viewer's token 403 on an operator route, an operator's reaches the hive), methods (405 with
 * Allow), unknown paths 404, the dashboard's redirect to /login, the Origin check on POSTs, the
 * Host and Origin rules themselves, the mood of a text, and the Lab routes (roles, checks, JSON). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lab.h"
#include "log.h"
#include "spec.h"
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

/* The Lab routes: roles and Origin on the operator's POST, what routes_lab_check answers, and
 * the Lab page's JSON from a spec, a snapshot and the view's lab events. */
static struct bj_hive_spec g_spec;

static void lab_routes(void **state)
{
    (void)state;
    struct web_resp rs;
    assert_int_equal(ask(M_POST, "/api/lab/interventions", NULL, NULL, &rs), 401);
    done(&rs);
    assert_int_equal(ask(M_POST, "/api/lab/interventions", g_viewer, NULL, &rs), 403);
    done(&rs);
    assert_int_equal(ask(M_POST, "/api/lab/interventions", g_operator, "http://evil.example", &rs), 403);
    done(&rs);
    assert_int_equal(ask(M_GET, "/api/lab/interventions", g_operator, NULL, &rs), 405);
    done(&rs);
    assert_int_equal(ask(M_GET, "/api/lab", g_viewer, NULL, &rs), 503); /* no hive yet */
    done(&rs);

    char why[200];
    struct bj_hive_spec *s = &g_spec;
    memset(s, 0, sizeof *s);
    assert_int_equal(routes_lab_check(s, "amnesia/1/SUBJECT", "wipe", why, sizeof why), 409); /* not a lab run */
    s->lab.on = true;
    bj_strlcpy(s->lab.name, "amnesia", sizeof s->lab.name);
    s->lab.replicates = 1;
    s->lab.n_conds = 2;
    bj_strlcpy(s->lab.conds[0].name, "amnesia", sizeof s->lab.conds[0].name);
    bj_strlcpy(s->lab.conds[0].interventions[0], "wipe", 32);
    s->lab.conds[0].n_interventions = 1;
    bj_strlcpy(s->lab.conds[1].name, "control", sizeof s->lab.conds[1].name);
    s->lab.n_ivs = 1;
    bj_strlcpy(s->lab.ivs[0].name, "wipe", sizeof s->lab.ivs[0].name);
    bj_strlcpy(s->lab.ivs[0].brain, "SUBJECT", sizeof s->lab.ivs[0].brain);
    const char *ids[] = {"amnesia/1/SUBJECT", "amnesia/1/OBSERVER", "control/1/SUBJECT"};
    const char *tpl[] = {"SUBJECT", "OBSERVER", "SUBJECT"};
    for (int i = 0; i < 3; i++) {
        bj_strlcpy(s->brains[i].id, ids[i], sizeof s->brains[i].id);
        bj_strlcpy(s->brains[i].lab_template, tpl[i], sizeof s->brains[i].lab_template);
        s->brains[i].lab_cond = i < 2 ? 0 : 1;
        s->brains[i].lab_rep = 1;
    }
    s->n_brains = 3;
    assert_int_equal(routes_lab_check(s, "amnesia/1/SUBJECT", "nope", why, sizeof why), 404);
    assert_int_equal(routes_lab_check(s, "amnesia/9/SUBJECT", "wipe", why, sizeof why), 404);
    assert_int_equal(routes_lab_check(s, "amnesia/1/OBSERVER", "wipe", why, sizeof why), 409);
    assert_non_null(strstr(why, "SUBJECT"));
    assert_int_equal(routes_lab_check(s, "amnesia/1/SUBJECT", "wipe", why, sizeof why), 0);
    assert_int_equal(routes_lab_check(s, "control/1/SUBJECT", "wipe", why, sizeof why), 0);

    struct web_view *v = web_view_new(3, 10);
    assert_non_null(v);
    struct bj_event th = {.type = BJ_EV_THOUGHT, .time_us = 1, .thought = 1, .complete = true, .text = (char *)"hi"};
    bj_strlcpy(th.brain, ids[0], sizeof th.brain);
    web_view_event(v, &th, 0);
    web_view_event(v, &th, 0);
    struct bj_event lab = {.type = BJ_EV_LAB, .time_us = 2, .thought = 2, .text = (char *)"{\"erased\":12}"};
    bj_strlcpy(lab.brain, ids[0], sizeof lab.brain);
    bj_strlcpy(lab.cause, "erase", sizeof lab.cause);
    bj_strlcpy(lab.from, "wipe", sizeof lab.from);
    web_view_event(v, &lab, 0);
    struct bj_brain_view bv[3];
    memset(bv, 0, sizeof bv);
    for (int i = 0; i < 3; i++) {
        bj_strlcpy(bv[i].id, ids[i], sizeof bv[i].id);
        bj_strlcpy(bv[i].state, i == 1 ? "dead" : "thinking", sizeof bv[i].state);
        bv[i].started = true;
        bv[i].deaths = (uint32_t)i;
        bv[i].life = (uint32_t)i + 1;
    }
    struct bj_hive_snapshot snap = {.n_brains = 3, .brains = bv};
    json_t *o = routes_lab_json(s, &snap, v);
    assert_non_null(o);
    assert_true(json_is_true(json_object_get(o, "on")));
    assert_string_equal(json_string_value(json_object_get(o, "name")), "amnesia");
    json_t *arms = json_object_get(o, "arms");
    assert_int_equal(json_array_size(arms), 2);
    json_t *a0 = json_array_get(arms, 0), *a1 = json_array_get(arms, 1);
    assert_string_equal(json_string_value(json_object_get(a0, "name")), "amnesia");
    assert_int_equal(json_integer_value(json_object_get(a0, "brains_n")), 2);
    assert_int_equal(json_integer_value(json_object_get(a0, "alive")), 1);
    assert_int_equal(json_integer_value(json_object_get(a0, "deaths")), 1);
    assert_int_equal(json_integer_value(json_object_get(a0, "lives")), 3);
    assert_int_equal(json_integer_value(json_object_get(a0, "thoughts")), 2);
    assert_int_equal(json_integer_value(json_object_get(a1, "deaths")), 2);
    json_t *evs = json_object_get(o, "events");
    assert_int_equal(json_array_size(evs), 1);
    json_t *e = json_array_get(evs, 0);
    assert_string_equal(json_string_value(json_object_get(e, "action")), "erase");
    assert_string_equal(json_string_value(json_object_get(e, "id")), "wipe");
    assert_string_equal(json_string_value(json_object_get(e, "brain")), ids[0]);
    json_decref(o);
    s->lab.on = false;
    o = routes_lab_json(s, &snap, v);
    assert_true(json_is_false(json_object_get(o, "on")));
    json_decref(o);
    web_view_free(v);
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
        cmocka_unit_test(lab_routes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
