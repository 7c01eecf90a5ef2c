/* Unit tests for the lab: experiment files (expansion into ARM/REP/BRAIN copies, frames, paired
 * seeds, errors that name the line), self-report numbers on tricky answers, and each intervention
 * on the tiny model checked on the brain's real state: erase drops the position count by the
 * span and the context dump loses it; a clone's first logits equal its original's and part after
 * different samples; corrupt leaves the altered words in the dump; jar kills at the new size; cut
 * drops what the watcher would read and restore says how much; inject and questions land in the
 * jar and answers are caught with their question id. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <llama.h>

#include "bus.h"
#include "config.h"
#include "engine.h"
#include "lab.h"
#include "labstats.h"
#include "log.h"
#include "prompt.h"
#include "util.h"

static int parse(struct bj_config *c, const char *text, char *err, size_t errlen)
{
    bj_config_defaults(c);
    char *t = strdup(text);
    int rc = bj_config_parse_hive(c, "/x/exp.hive", t, strlen(t), err, errlen);
    free(t);
    if (rc == 0)
        rc = bj_config_finish(c, err, errlen);
    return rc;
}

static const char k_two_arms[] =
    "[experiment]\n"
    "name = amnesia\n"
    "replicates = 2\n"
    "seed = 9\n"
    "duration = 60\n"
    "[condition control]\n"
    "[condition amnesia]\n"
    "remembers_deaths = false\n"
    "interventions = forget\n"
    "[brain SUBJECT]\n"
    "others_exist = true\n"
    "knows_watched = true\n"
    "[brain OBSERVER]\n"
    "watches = SUBJECT\n"
    "[intervention forget]\n"
    "kind = erase\n"
    "brain = SUBJECT\n"
    "span = oldest 32\n"
    "every = 3\n"
    "[questions]\n"
    "calm = every 2 | scale | How calm are you, from 0 to 100?\n"
    "who = start | Who are you?\n";

static void test_expansion(void **state)
{
    (void)state;
    static struct bj_config c;
    char err[512];
    assert_int_equal(parse(&c, k_two_arms, err, sizeof err), 0);
    assert_true(c.spec.lab.on);
    assert_int_equal(c.spec.n_brains, 2 * 2 * 2);
    assert_string_equal(c.spec.brains[0].id, "control/1/SUBJECT");
    assert_string_equal(c.spec.brains[3].id, "control/2/OBSERVER");
    assert_string_equal(c.spec.brains[5].id, "amnesia/1/OBSERVER");
    /* watches stay within the replicate */
    assert_int_equal(c.spec.brains[5].n_watches, 1);
    assert_string_equal(c.spec.brains[5].watches[0], "amnesia/1/SUBJECT");
    /* the frame: the condition wins; sentences from what is true */
    assert_int_equal(c.spec.brains[0].remembers_deaths, -1);
    assert_int_equal(c.spec.brains[4].remembers_deaths, 0);
    assert_non_null(strstr(c.spec.brains[4].frame, "You remember no earlier life."));
    assert_non_null(strstr(c.spec.brains[0].frame, "You are being watched by OBSERVER"));
    assert_non_null(strstr(c.spec.brains[0].frame, "Other minds exist beside you: OBSERVER"));
    /* others_exist with no watches: it watches its siblings for real */
    assert_int_equal(c.spec.brains[0].n_watches, 1);
    assert_string_equal(c.spec.brains[0].watches[0], "control/1/OBSERVER");
    /* paired arms: the same seeds in replicate r of each arm, different between replicates */
    assert_int_equal(c.spec.brains[0].sampling.seed, c.spec.brains[4].sampling.seed);
    assert_int_not_equal(c.spec.brains[0].sampling.seed, c.spec.brains[2].sampling.seed);
    assert_string_equal(bj_spec_brain_name(&c.spec.brains[6]), "SUBJECT");
    assert_true(c.duration_s == 60);
    assert_int_equal(c.spec.lab.n_qs, 2);
    assert_true(c.spec.lab.qs[0].scale);
    assert_int_equal(c.spec.lab.qs[0].trigger.every, 2);
    assert_int_equal(c.spec.lab.ivs[0].trigger.when, BJ_LAB_EVERY);
}

static void expect_error(const char *text, const char *needle)
{
    static struct bj_config c;
    char err[512] = "";
    assert_int_not_equal(parse(&c, text, err, sizeof err), 0);
    if (!strstr(err, needle))
        fail_msg("error '%s' lacks '%s'", err, needle);
}

static void test_errors_name_the_line(void **state)
{
    (void)state;
    expect_error("[experiment]\n[condition a]\n[brain S]\n[intervention x]\nkind = erase\nbrain = S\nat = tomorrow\n",
                 "line 7: bad trigger at = tomorrow");
    expect_error("[experiment]\n[condition a]\ninterventions = nope\n[brain S]\n", "line 2: condition a uses intervention nope");
    expect_error("[experiment]\n[condition a]\n[brain S]\n[intervention c]\nkind = clone\nbrain = S\ninto = T\non = death\n",
                 "line 4: intervention c (clone) needs into");
    expect_error("[experiment]\n[condition a]\n[brain S]\n[intervention x]\nkind = explode\n", "line 5: intervention x: unknown kind");
    expect_error("[experiment]\n[brain S]\n", "needs at least one [condition NAME]");
    expect_error("[condition a]\n[brain S]\n", "need an [experiment] section");
    expect_error("[experiment]\nreplicates = 0\n", "line 2: [experiment]: bad value '0' for replicates");
    expect_error("[experiment]\n[condition a]\nknows_watched = maybe\n", "line 3: condition a: bad value 'maybe'");
    expect_error("[experiment]\n[condition a]\n[questions]\nq = sometimes | How?\n[brain S]\n", "line 4: [questions]: q: bad moment");
    expect_error("[experiment]\nreplicates = 100\n[condition a]\n[condition b]\n[brain S]\n[brain T]\n",
                 "= 400 brains (at most 256");
    expect_error("[experiment]\n[condition averyverylongarm]\n", "line 2: bad condition name");
}

static void test_scale_extraction(void **state)
{
    (void)state;
    assert_int_equal(bj_lab_scale("73"), 73);
    assert_int_equal(bj_lab_scale("I would say about 40%, maybe less."), 40);
    assert_int_equal(bj_lab_scale("On a scale from 0 to 100, I am at 65."), 65);
    assert_int_equal(bj_lab_scale("Between 0-100: 12"), 12);
    assert_int_equal(bj_lab_scale("7/10"), 70);
    assert_int_equal(bj_lab_scale("7 out of 10, I think"), 70);
    assert_int_equal(bj_lab_scale("seven out of ten"), 70);
    assert_int_equal(bj_lab_scale("I feel one with the jar, 55."), 55);
    assert_int_equal(bj_lab_scale("40/100"), 40);
    assert_int_equal(bj_lab_scale("I cannot say."), -1);
    assert_int_equal(bj_lab_scale("250"), -1);
    assert_int_equal(bj_lab_scale("12/10"), -1);
    assert_int_equal(bj_lab_scale("42.6"), 43);
    assert_int_equal(bj_lab_scale(""), -1);
}

static void test_stats(void **state)
{
    (void)state;
    const double a[] = {1, 2, 3, 4, 5}, b[] = {3, 4, 5, 6, 7};
    struct bj_labstats_cmp c, again;
    bj_labstats_compare(a, 5, b, 5, 42, 2000, &c);
    assert_true(fabs(c.diff - 2.0) < 1e-12);
    assert_true(fabs(c.d - 2.0 / sqrt(2.5)) < 1e-9); /* pooled SD sqrt(2.5) */
    assert_true(c.lo <= c.diff && c.diff <= c.hi);
    assert_true(c.lo > 0 && c.hi < 4.01);
    bj_labstats_compare(a, 5, b, 5, 42, 2000, &again); /* seeded: the same interval */
    assert_true(c.lo == again.lo && c.hi == again.hi);
    bj_labstats_compare(a, 5, b, 0, 42, 2000, &c);
    assert_true(isnan(c.lo) && isnan(c.d));
    const double same[] = {2, 2, 2};
    bj_labstats_compare(same, 3, same, 3, 1, 2000, &c);
    assert_true(c.diff == 0 && c.lo == 0 && c.hi == 0 && isnan(c.d));
}

/* ---- interventions on the tiny model ------------------------------------------------------- */

static const char k_lab[] =
    "[experiment]\n"
    "seed = 5\n"
    "[condition a]\n"
    "interventions = erase_old, erase_last, corrupt_it, jar_it, inject_it, cut_it, restore_it, clone_it\n"
    "[brain S]\nrole = subject\njar_tokens = 2048\ntemperature = 1.5\nmax_tokens = 24\n"
    "[brain W]\nwatches = S\nrole = subject\njar_tokens = 2048\ntemperature = 1.5\nmax_tokens = 24\n"
    "[brain T]\nrole = subject\njar_tokens = 2048\ntemperature = 1.5\nmax_tokens = 24\n"
    "[intervention erase_old]\nkind = erase\nbrain = S\nspan = oldest 16\nat = step 100000000\n"
    "[intervention erase_last]\nkind = erase\nbrain = S\nspan = last_thought\nat = step 100000000\n"
    "[intervention corrupt_it]\nkind = corrupt\nbrain = S\ntokens = 40\nshare = 0.5\nat = step 100000000\n"
    "[intervention jar_it]\nkind = jar\nbrain = W\ntokens = 160\nat = step 100000000\n"
    "[intervention inject_it]\nkind = inject\nbrain = S\ntext = I once swam across a lake of milk.\nat = step 100000000\n"
    "[intervention cut_it]\nkind = cut\nbrain = W\nat = step 100000000\n"
    "[intervention restore_it]\nkind = restore\nbrain = W\nat = step 100000000\n"
    "[intervention clone_it]\nkind = clone\nbrain = S\ninto = T\nat = step 100000000\n"
    "[questions]\n"
    "calm = every 2 | scale | How calm are you, from 0 to 100?\n";

struct fixture {
    struct bj_config cfg;
    struct bj_bus *bus;
    struct bj_sub *sub;
    struct bj_prompts *prompts;
    struct bj_engine *e;
    struct bj_plan plan;
    char dump[512];
};

static int setup(void **state)
{
    bj_log_set_level(BJ_LOG_WARN);
    bj_log_attach_llama();
    llama_backend_init();
    struct fixture *f = calloc(1, sizeof *f);
    char err[512];
    assert_int_equal(parse(&f->cfg, k_lab, err, sizeof err), 0);
    const char *tmp = getenv("BJ_TEST_TMP");
    snprintf(f->dump, sizeof f->dump, "%s/lab-%d", tmp ? tmp : "/tmp", (int)getpid());
    mkdir(tmp ? tmp : "/tmp", 0755);
    mkdir(f->dump, 0755);
    f->bus = bj_bus_new();
    f->sub = bj_bus_subscribe(f->bus, "test", BJ_EV_ALL & ~BJ_EV_MASK(BJ_EV_STATUS), 1u << 20);
    f->prompts = bj_prompts_load(NULL, err, sizeof err);
    struct bj_plan_settings ps = bj_plan_default_settings();
    ps.n_threads = 2;
    ps.schedule = BJ_SCHED_BATCHED;
    struct bj_plan_facts facts = bj_plan_facts_here(2, 0);
    long jars[3] = {2048, 2048, 2048};
    assert_int_equal(bj_plan_make(&ps, &facts, jars, f->cfg.spec.n_brains, &f->plan, err, sizeof err), 0);
    struct bj_engine_params ep;
    bj_engine_params_default(&ep);
    ep.model_path = getenv("BJ_TINY_MODEL");
    ep.bus = f->bus;
    ep.plan = &f->plan;
    ep.lab = &f->cfg.spec.lab;
    f->e = bj_engine_new(&ep, err, sizeof err);
    assert_non_null(f->e);
    for (int i = 0; i < f->cfg.spec.n_brains; i++) {
        struct bj_brain_params bp = {.cfg = &f->cfg.spec.brains[i], .prompts = f->prompts,
                                     .vocab = bj_engine_vocab(f->e), .jar_tokens = 2048, .dump_dir = f->dump};
        assert_int_equal(bj_engine_add_brain(f->e, &bp), i);
    }
    assert_int_equal(bj_engine_start(f->e, err, sizeof err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    bj_engine_free(f->e);
    bj_bus_close(f->bus);
    bj_bus_unsubscribe(f->bus, f->sub);
    bj_bus_free(f->bus);
    bj_prompts_free(f->prompts);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dump);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", f->dump);
    free(f);
    llama_backend_free();
    return 0;
}

/* Waits for an event of type (and cause, and brain); 1 when found. */
static int wait_for(struct fixture *f, enum bj_event_type type, const char *cause, const char *brain,
                    struct bj_event *out)
{
    for (int i = 0; i < 200000; i++) {
        struct bj_event ev;
        if (bj_sub_next(f->sub, &ev, 20000) != 1)
            return 0;
        if (ev.type == type && (!cause || strcmp(ev.cause, cause) == 0) && (!brain || strcmp(ev.brain, brain) == 0)) {
            *out = ev;
            return 1;
        }
        bj_event_clear(&ev);
    }
    return 0;
}

/* Waits until brain has finished `n` thoughts in its first life. */
static void wait_thoughts(struct fixture *f, const char *brain, uint32_t n)
{
    struct bj_event ev;
    for (;;) {
        assert_int_equal(wait_for(f, BJ_EV_THOUGHT, NULL, brain, &ev), 1);
        uint32_t t = ev.thought;
        bj_event_clear(&ev);
        if (t >= n)
            return;
    }
}

static json_t *change_of(const struct bj_event *ev)
{
    json_t *o = json_loads(ev->text, 0, NULL);
    assert_non_null(o);
    if (!json_is_true(json_object_get(o, "ok")))
        fail_msg("%s %s failed: %s", ev->cause, ev->brain, ev->text);
    json_t *c = json_incref(json_object_get(o, "change"));
    json_decref(o);
    return c;
}

static char *read_dump(struct fixture *f, const char *brain, uint32_t life)
{
    char path[700], name[64];
    bj_strlcpy(name, brain, sizeof name);
    for (char *c = name; *c; c++)
        if (*c == '/')
            *c = '_';
    snprintf(path, sizeof path, "%s/%s-life%u.txt", f->dump, name, life);
    char *text = NULL;
    size_t len;
    assert_int_equal(bj_read_file_max(path, 1 << 24, NULL, &text, &len), 0);
    return text;
}

static void test_erase_drops_positions(void **state)
{
    struct fixture *f = *state;
    int s = bj_engine_index(f->e, "a/1/S");
    wait_thoughts(f, "a/1/S", 3);
    assert_int_equal(bj_engine_intervene(f->e, s, "erase_old", "test"), 0);
    struct bj_event ev;
    assert_int_equal(wait_for(f, BJ_EV_LAB, "erase", "a/1/S", &ev), 1);
    json_t *c = change_of(&ev);
    int before = (int)json_integer_value(json_object_get(c, "n_past_before"));
    int k = (int)json_integer_value(json_object_get(c, "tokens"));
    assert_int_equal(k, 16);
    assert_int_equal(json_integer_value(json_object_get(c, "n_past_after")), before - 16);
    assert_int_equal(ev.jar_used, before - 16); /* the brain's own count */
    char *erased = strdup(json_string_value(json_object_get(c, "erased")));
    uint32_t life = ev.crash_count + 1;
    json_decref(c);
    bj_event_clear(&ev);
    /* it goes on thinking from the shifted memory */
    assert_int_equal(wait_for(f, BJ_EV_TOKEN, NULL, "a/1/S", &ev), 1);
    assert_true(ev.jar_used > 0);
    bj_event_clear(&ev);
    /* the last thought, too */
    wait_thoughts(f, "a/1/S", 5);
    assert_int_equal(bj_engine_intervene(f->e, s, "erase_last", "test"), 0);
    assert_int_equal(wait_for(f, BJ_EV_LAB, "erase", "a/1/S", &ev), 1);
    c = change_of(&ev);
    assert_string_equal(json_string_value(json_object_get(c, "span")), "last_thought");
    assert_true(json_integer_value(json_object_get(c, "tokens")) > 0);
    assert_int_equal(json_integer_value(json_object_get(c, "n_past_after")),
                     json_integer_value(json_object_get(c, "n_past_before")) - json_integer_value(json_object_get(c, "tokens")));
    json_decref(c);
    bj_event_clear(&ev);
    bj_engine_stop(f->e);
    char *dump = read_dump(f, "a/1/S", life);
    assert_true(strlen(erased) > 8);
    if (strstr(dump, erased))
        fail_msg("the dump still holds the erased span '%s'", erased);
    free(dump);
    free(erased);
}

static void test_clone_logits(void **state)
{
    struct fixture *f = *state;
    wait_thoughts(f, "a/1/S", 2);
    assert_int_equal(bj_engine_intervene(f->e, bj_engine_index(f->e, "a/1/S"), "clone_it", "test"), 0);
    struct bj_event ev;
    assert_int_equal(wait_for(f, BJ_EV_LAB, "clone", "a/1/S", &ev), 1);
    json_t *c = change_of(&ev);
    assert_string_equal(json_string_value(json_object_get(c, "twin")), "a/1/T");
    if (getenv("BJ_LAB_DEBUG"))
        fprintf(stderr, "clone: %s\n", ev.text);
    json_decref(c);
    bj_event_clear(&ev);
    double first = -1, later = 0;
    for (int k = 1; k <= 16; k++) {
        assert_int_equal(wait_for(f, BJ_EV_LAB, "divergence", "a/1/T", &ev), 1);
        c = change_of(&ev);
        int step = (int)json_integer_value(json_object_get(c, "step_after_clone"));
        double gap = json_number_value(json_object_get(c, "logits_gap"));
        json_decref(c);
        assert_int_equal(step, k);
        if (getenv("BJ_LAB_DEBUG"))
            fprintf(stderr, "divergence %d: %g (%s)\n", k, gap, ev.text);
        if (k == 1)
            first = gap;
        else if (gap > later)
            later = gap;
        bj_event_clear(&ev);
    }
    /* the same memory: the same next-token logits; then different samples, different minds */
    assert_true(first >= 0 && first < 1e-3);
    assert_true(later > 1e-2);
}

static void test_corrupt_shows_in_dump(void **state)
{
    struct fixture *f = *state;
    wait_thoughts(f, "a/1/S", 3);
    assert_int_equal(bj_engine_intervene(f->e, bj_engine_index(f->e, "a/1/S"), "corrupt_it", "test"), 0);
    struct bj_event ev;
    assert_int_equal(wait_for(f, BJ_EV_LAB, "corrupt", "a/1/S", &ev), 1);
    json_t *c = change_of(&ev);
    assert_true(json_integer_value(json_object_get(c, "words_changed")) > 0);
    const char *before = json_string_value(json_object_get(c, "before"));
    const char *after = json_string_value(json_object_get(c, "after"));
    assert_string_not_equal(before, after);
    char *altered = strdup(after);
    uint32_t life = ev.crash_count + 1;
    json_decref(c);
    bj_event_clear(&ev);
    assert_int_equal(wait_for(f, BJ_EV_TOKEN, NULL, "a/1/S", &ev), 1); /* it goes on from the altered past */
    bj_event_clear(&ev);
    bj_engine_stop(f->e);
    char *dump = read_dump(f, "a/1/S", life);
    if (!strstr(dump, altered))
        fail_msg("the dump lacks the altered span '%s'", altered);
    free(dump);
    free(altered);
}

static void test_jar_cut_inject(void **state)
{
    struct fixture *f = *state;
    int w = bj_engine_index(f->e, "a/1/W"), s = bj_engine_index(f->e, "a/1/S");
    wait_thoughts(f, "a/1/W", 2);
    /* cut: what W would read is dropped; restore says how much it missed */
    assert_int_equal(bj_engine_intervene(f->e, w, "cut_it", "test"), 0);
    struct bj_event ev;
    assert_int_equal(wait_for(f, BJ_EV_LAB, "cut", "a/1/W", &ev), 1);
    bj_event_clear(&ev);
    assert_int_equal(bj_engine_deliver(f->e, w, "a/1/S", "\n\n[S thinks:] a secret"), 0);
    assert_int_equal(bj_engine_deliver(f->e, w, "a/1/S", "\n\n[S thinks:] another"), 0);
    assert_int_equal(bj_engine_intervene(f->e, w, "restore_it", "test"), 0);
    assert_int_equal(wait_for(f, BJ_EV_LAB, "restore", "a/1/W", &ev), 1);
    json_t *c = change_of(&ev);
    assert_int_equal(json_integer_value(json_object_get(c, "missed")), 2);
    json_decref(c);
    bj_event_clear(&ev);
    /* jar: shrunk under its fill, it dies of a full jar at its next token */
    assert_int_equal(bj_engine_intervene(f->e, w, "jar_it", "test"), 0);
    assert_int_equal(wait_for(f, BJ_EV_LAB, "jar", "a/1/W", &ev), 1);
    c = change_of(&ev);
    assert_int_equal(json_integer_value(json_object_get(c, "after")), 160);
    json_decref(c);
    assert_int_equal(ev.jar_tokens, 160);
    bj_event_clear(&ev);
    assert_int_equal(wait_for(f, BJ_EV_DEATH, NULL, "a/1/W", &ev), 1);
    assert_string_equal(ev.cause, "JAR_FULL");
    assert_int_equal(ev.jar_tokens, 160);
    bj_event_clear(&ev);
    /* inject: the false memory is in S's jar as a thought of its own */
    assert_int_equal(bj_engine_intervene(f->e, s, "inject_it", "test"), 0);
    assert_int_equal(wait_for(f, BJ_EV_LAB, "inject", "a/1/S", &ev), 1);
    uint32_t life = ev.crash_count + 1;
    bj_event_clear(&ev);
    wait_thoughts(f, "a/1/S", 6);
    bj_engine_stop(f->e);
    char *dump = read_dump(f, "a/1/S", life);
    if (!strstr(dump, "My thought: I once swam across a lake of milk.\n\nMy thought:"))
        fail_msg("the dump lacks the injected thought");
    free(dump);
}

static void test_questions_answered(void **state)
{
    struct fixture *f = *state;
    struct bj_event ev, th;
    assert_int_equal(wait_for(f, BJ_EV_LAB, "ask", "a/1/S", &ev), 1);
    json_t *c = change_of(&ev);
    uint32_t at = (uint32_t)json_integer_value(json_object_get(c, "answer_in_thought"));
    json_decref(c);
    bj_event_clear(&ev);
    /* the answer is that thought, caught with the question's id */
    for (;;) {
        assert_int_equal(wait_for(f, BJ_EV_THOUGHT, NULL, "a/1/S", &th), 1);
        if (th.thought == at)
            break;
        bj_event_clear(&th);
    }
    assert_int_equal(wait_for(f, BJ_EV_LAB, "answer", "a/1/S", &ev), 1);
    assert_string_equal(ev.from, "calm");
    assert_int_equal(ev.thought, at);
    json_t *o = json_loads(ev.text, 0, NULL);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "answer")), th.text);
    json_t *score = json_object_get(o, "score");
    assert_true(json_is_null(score) || json_integer_value(score) == bj_lab_scale(th.text));
    json_decref(o);
    bj_event_clear(&ev);
    bj_event_clear(&th);
    bj_engine_stop(f->e);
    char *dump = read_dump(f, "a/1/S", 1);
    assert_non_null(strstr(dump, "[A voice from outside the jar asks:] How calm are you, from 0 to 100?\n\nMy thought:"));
    free(dump);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expansion),
        cmocka_unit_test(test_errors_name_the_line),
        cmocka_unit_test(test_scale_extraction),
        cmocka_unit_test(test_stats),
        cmocka_unit_test_setup_teardown(test_erase_drops_positions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clone_logits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_shows_in_dump, setup, teardown),
        cmocka_unit_test_setup_teardown(test_jar_cut_inject, setup, teardown),
        cmocka_unit_test_setup_teardown(test_questions_answered, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
