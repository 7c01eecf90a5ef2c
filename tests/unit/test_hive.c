/* Unit tests for the hive on the tiny model: built from a spec, its brains think, die when their
 * jar is full and come back with their count; an operator's kill, pause, resume, resurrect and
 * say act on the named brain only and answer -ENOENT or -EINVAL for what cannot be; the
 * snapshot's totals add up; counts restored at start are where the deaths go on from; a remote
 * mind's words reach a watcher. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "config.h"
#include "hive.h"
#include "log.h"
#include "util.h"

static struct bj_config g_c; /* large: not on the stack */
static char g_dir[400];

static int setup(void **state)
{
    (void)state;
    static int n;
    const char *model = getenv("BJ_TINY_MODEL");
    if (!model || access(model, R_OK) != 0)
        fail_msg("BJ_TINY_MODEL must name the tiny model");
    const char *tmp = getenv("BJ_TEST_TMP");
    snprintf(g_dir, sizeof g_dir, "%s/bj-hive-%d-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid(), n++);
    assert_int_equal(bj_mkdirs(g_dir), 0);
    bj_config_defaults(&g_c);
    char err[512];
    assert_int_equal(bj_config_apply_brains(&g_c, 3, -1, -1, err, sizeof err), 0);
    struct bj_hive_spec *s = &g_c.spec;
    bj_strlcpy(s->model, model, sizeof s->model);
    bj_strlcpy(s->data_dir, g_dir, sizeof s->data_dir);
    s->pause_ms = 50;
    s->pace = 0;
    s->n_threads = 2;
    for (int i = 0; i < s->n_brains; i++) {
        s->brains[i].jar_tokens = 160 + 16 * i;
        s->brains[i].sampling.max_tokens = 24;
    }
    if (bj_config_finish(&g_c, err, sizeof err))
        fail_msg("config: %s", err);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd);
}

struct rig {
    struct bj_bus *bus;
    struct bj_hive *hive;
};

static void rig_up(struct rig *r, const uint32_t *initial)
{
    r->bus = bj_bus_new();
    assert_non_null(r->bus);
    struct bj_hive_params p = bj_hive_params_default();
    p.spec = &g_c.spec;
    p.bus = r->bus;
    p.initial_deaths = initial;
    enum bj_hive_refusal why;
    char err[1024];
    r->hive = bj_hive_new(&p, &why, err, sizeof err);
    if (!r->hive)
        fail_msg("bj_hive_new: %s", err);
    if (bj_hive_start(r->hive, err, sizeof err))
        fail_msg("bj_hive_start: %s", err);
}

static void rig_down(struct rig *r)
{
    bj_hive_stop(r->hive);
    bj_hive_free(r->hive);
    bj_bus_close(r->bus);
    bj_bus_free(r->bus);
}

static struct bj_brain_view brain(struct rig *r, const char *id)
{
    struct bj_brain_view v;
    assert_int_equal(bj_hive_brain(r->hive, id, &v), 0);
    return v;
}

/* Waits (up to 60 s, in states, never a fixed sleep) until pred holds for brain id. */
static bool wait_for(struct rig *r, const char *id, bool (*pred)(const struct bj_brain_view *v, uint32_t arg),
                     uint32_t arg)
{
    for (int i = 0; i < 6000; i++) {
        struct bj_brain_view v = brain(r, id);
        if (pred(&v, arg))
            return true;
        usleep(10000);
    }
    return false;
}
static bool died_at_least(const struct bj_brain_view *v, uint32_t n) { return v->deaths >= n; }
static bool has_tokens(const struct bj_brain_view *v, uint32_t n) { return v->tokens >= n; }
static bool in_state(const struct bj_brain_view *v, uint32_t s)
{
    static const char *const names[] = {"paused", "dead"};
    return strcmp(v->state, names[s]) == 0;
}
static bool not_in_state(const struct bj_brain_view *v, uint32_t s) { return !in_state(v, s); }

static void lives_and_deaths(void **state)
{
    (void)state;
    struct rig r;
    rig_up(&r, NULL);
    assert_true(wait_for(&r, "SUBJECT", died_at_least, 2)); /* a full jar kills, again and again */
    struct bj_brain_view v = brain(&r, "SUBJECT");
    assert_true(v.life >= v.deaths); /* resurrected: life n+1 after n deaths (or dead now) */
    assert_true(v.deaths_by_cause[0] >= 2); /* JAR_FULL */
    assert_int_equal(v.jar_tokens, 160);
    assert_true(v.jar_used <= v.jar_tokens);
    struct bj_hive_snapshot s;
    assert_int_equal(bj_hive_snapshot(r.hive, &s), 0);
    assert_int_equal(s.n_brains, 3);
    uint64_t deaths = 0, tokens = 0;
    for (int i = 0; i < s.n_brains; i++)
        deaths += s.brains[i].deaths, tokens += s.brains[i].tokens;
    assert_true(s.deaths <= deaths && s.deaths > 0);
    assert_true(s.tokens <= tokens + 64 && s.tokens > 0);
    bj_hive_snapshot_free(&s);
    rig_down(&r);
}

static void operator_actions(void **state)
{
    (void)state;
    struct rig r;
    rig_up(&r, NULL);
    assert_true(wait_for(&r, "GOD", has_tokens, 4));
    assert_int_equal(bj_hive_kill(r.hive, "NOBODY", NULL, "test"), -ENOENT);
    assert_int_equal(bj_hive_pause(r.hive, "NOBODY", "test"), -ENOENT);
    assert_int_equal(bj_hive_say(r.hive, "GOD", "test", "", "test"), -EINVAL);
    uint32_t before = brain(&r, "GOD").deaths;
    uint32_t others = brain(&r, "OBSERVER").deaths_by_cause[3];
    assert_int_equal(bj_hive_kill(r.hive, "GOD", NULL, "test"), 0);
    assert_true(wait_for(&r, "GOD", died_at_least, before + 1));
    assert_true(brain(&r, "GOD").deaths_by_cause[3] >= 1);          /* OPERATOR */
    assert_int_equal(brain(&r, "OBSERVER").deaths_by_cause[3], others); /* nobody else */
    /* pause holds a brain (between lives too, until it is resumed) */
    assert_int_equal(bj_hive_pause(r.hive, "OBSERVER", "test"), 0);
    assert_true(wait_for(&r, "OBSERVER", in_state, 0));
    uint64_t held = brain(&r, "OBSERVER").tokens;
    usleep(300000);
    assert_true(brain(&r, "OBSERVER").tokens <= held + 1);
    assert_int_equal(bj_hive_resume(r.hive, "OBSERVER", "test"), 0);
    assert_true(wait_for(&r, "OBSERVER", not_in_state, 0));
    assert_true(wait_for(&r, "OBSERVER", has_tokens, (uint32_t)held + 4));
    assert_int_equal(bj_hive_say(r.hive, "SUBJECT", "test", "the walls are glass", "test"), 0);
    bj_hive_observe_remote(r.hive, "FAR@node", "a voice from far away", false); /* nobody watches it: ignored */
    rig_down(&r);
}

static void restored_counts_go_on(void **state)
{
    (void)state;
    uint32_t initial[BJ_MAX_BRAINS] = {41, 7, 0};
    struct rig r;
    rig_up(&r, initial);
    struct bj_brain_view v = brain(&r, "SUBJECT");
    assert_true(v.deaths >= 41);
    assert_int_equal(bj_hive_kill(r.hive, "SUBJECT", NULL, "test"), 0);
    assert_true(wait_for(&r, "SUBJECT", died_at_least, 42));
    assert_true(brain(&r, "OBSERVER").deaths >= 7); /* never backwards */
    rig_down(&r);
}

int main(void)
{
    bj_log_set_level(BJ_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(lives_and_deaths, setup, teardown),
        cmocka_unit_test_setup_teardown(operator_actions, setup, teardown),
        cmocka_unit_test_setup_teardown(restored_counts_go_on, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
