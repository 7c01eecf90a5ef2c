/* Unit tests for the engine's operator requests on the tiny model: a kill (the function the
 * web/API will call) kills only its brain with cause OPERATOR, which comes back once; pause stops
 * a brain's tokens without killing it, resume brings them back; unknown brains are refused. A
 * sequence that took the common start of its prompt from another's memory (engine_share.c) ends
 * with the logits it would have had decoding the whole prompt itself. A paused brain between two
 * that generate is filled, and engine_batch.c's count of the
 * ubatches llama.cpp cuts a batch into is what llama.cpp does. A wave of openings is cut into its
 * runs of neighbouring sequences, the run with the least work per brain first. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ggml.h>
#include <llama.h>

#include "bus.h"
#include "config.h"
#include "engine.h"
#include "engine_int.h"
#include "intervene.h"
#include "log.h"
#include "prompt.h"

struct fixture {
    struct bj_config cfg;
    struct bj_bus *bus;
    struct bj_sub *sub;
    struct bj_prompts *prompts;
    struct bj_engine *e;
    struct bj_plan plan;
};

static int setup(void **state)
{
    bj_log_set_level(BJ_LOG_WARN);
    bj_log_attach_llama();
    llama_backend_init();
    struct fixture *f = calloc(1, sizeof *f);
    bj_config_defaults(&f->cfg); /* matrix: SUBJECT, OBSERVER, GOD */
    char err[512];
    assert_int_equal(bj_config_finish(&f->cfg, err, sizeof err), 0);
    f->bus = bj_bus_new();
    f->sub = bj_bus_subscribe(f->bus, "test", BJ_EV_ALL, 1u << 20);
    f->prompts = bj_prompts_load(NULL, err, sizeof err);
    struct bj_plan_settings ps = bj_plan_default_settings();
    ps.n_threads = 2;
    ps.profile = true; /* the engine counts its ubatches and fillers */
    struct bj_plan_facts facts = bj_plan_facts_here(2, 0);
    long jars[3] = {3000, 3000, 3000};
    assert_int_equal(bj_plan_make(&ps, &facts, jars, f->cfg.spec.n_brains, &f->plan, err, sizeof err), 0);
    struct bj_engine_params ep;
    bj_engine_params_default(&ep);
    ep.model_path = getenv("BJ_TINY_MODEL");
    ep.bus = f->bus;
    ep.plan = &f->plan;
    f->e = bj_engine_new(&ep, err, sizeof err);
    assert_non_null(f->e);
    for (int i = 0; i < f->cfg.spec.n_brains; i++) {
        struct bj_brain_params bp = {.cfg = &f->cfg.spec.brains[i], .prompts = f->prompts,
                                     .vocab = bj_engine_vocab(f->e), .jar_tokens = 3000};
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
    free(f);
    llama_backend_free();
    return 0;
}

/* Waits (up to 10 s) for an event matching type and brain; counts the tokens of `count_brain`
 * seen meanwhile. Returns 1 when found. */
static int wait_for(struct fixture *f, enum bj_event_type type, const char *brain, struct bj_event *out,
                    const char *count_brain, int *tokens)
{
    for (int i = 0; i < 100000; i++) {
        struct bj_event ev;
        int rc = bj_sub_next(f->sub, &ev, 10000);
        if (rc != 1)
            return 0;
        if (tokens && ev.type == BJ_EV_TOKEN && strcmp(ev.brain, count_brain) == 0)
            (*tokens)++;
        if (ev.type == type && (!brain || strcmp(ev.brain, brain) == 0)) {
            *out = ev;
            return 1;
        }
        bj_event_clear(&ev);
    }
    return 0;
}

static void test_operator_kill(void **state)
{
    struct fixture *f = *state;
    struct bj_event ev;
    assert_int_equal(wait_for(f, BJ_EV_TOKEN, "OBSERVER", &ev, NULL, NULL), 1);
    bj_event_clear(&ev);
    assert_int_equal(bj_engine_kill(f->e, 7, "OPERATOR"), -ENOENT);
    assert_int_equal(bj_engine_kill(f->e, bj_engine_index(f->e, "OBSERVER"), "OPERATOR"), 0);
    assert_int_equal(wait_for(f, BJ_EV_DEATH, NULL, &ev, NULL, NULL), 1);
    assert_string_equal(ev.brain, "OBSERVER"); /* the first death is the one asked for */
    assert_string_equal(ev.cause, "OPERATOR");
    assert_int_equal(ev.crash_count, 1);
    bj_event_clear(&ev);
    assert_int_equal(wait_for(f, BJ_EV_RESURRECTION, "OBSERVER", &ev, NULL, NULL), 1);
    assert_int_equal(ev.crash_count, 1);
    bj_event_clear(&ev);
    assert_int_equal(wait_for(f, BJ_EV_TOKEN, "OBSERVER", &ev, NULL, NULL), 1);
    bj_event_clear(&ev);
}

/* Pauses brain `name` and waits until its status says so. */
static void pause_until_reported(struct fixture *f, const char *name)
{
    struct bj_event ev;
    assert_int_equal(bj_engine_pause(f->e, bj_engine_index(f->e, name), true), 0);
    for (;;) {
        assert_int_equal(wait_for(f, BJ_EV_STATUS, name, &ev, NULL, NULL), 1);
        bool paused = strcmp(ev.state, "paused") == 0;
        bj_event_clear(&ev);
        if (paused)
            break;
    }
}

static void test_pause_and_resume(void **state)
{
    struct fixture *f = *state;
    struct bj_event ev;
    /* Once SUBJECT reports itself paused, the others go on and SUBJECT says nothing. */
    pause_until_reported(f, "SUBJECT");
    int subject_tokens = 0;
    for (int i = 0; i < 200; i++) {
        assert_int_equal(wait_for(f, BJ_EV_TOKEN, "GOD", &ev, "SUBJECT", &subject_tokens), 1);
        bj_event_clear(&ev);
    }
    assert_int_equal(subject_tokens, 0);
    assert_int_equal(bj_engine_pause(f->e, bj_engine_index(f->e, "SUBJECT"), false), 0);
    assert_int_equal(wait_for(f, BJ_EV_TOKEN, "SUBJECT", &ev, NULL, NULL), 1);
    bj_event_clear(&ev);
}

/* A paused brain between two that generate gets a filler token in every step (engine_batch.c), so
 * with a stream per brain every generation-only step stays one ubatch. */
static void test_idle_brain_filled(void **state)
{
    struct fixture *f = *state;
    struct bj_event ev;
    int obs = bj_engine_index(f->e, "OBSERVER");
    assert_int_equal(obs, 1); /* between SUBJECT and GOD */
    pause_until_reported(f, "OBSERVER");
    for (int i = 0; i < 100; i++) {
        assert_int_equal(wait_for(f, BJ_EV_TOKEN, "GOD", &ev, NULL, NULL), 1);
        bj_event_clear(&ev);
    }
    bj_engine_stop(f->e); /* its counts are read once its thread has ended */
    assert_false(f->e->plan.unified);
    assert_true(f->e->filled[1] >= 50);
    assert_int_equal(f->e->ubatches[1], f->e->prof[1].steps);
}

/* Decodes tokens [0, n) of t at positions p0.. in sequence seq; the last row's logits into out. */
static void decode_into(struct llama_context *ctx, const llama_token *t, int n, int p0, llama_seq_id seq, float *out,
                        int n_vocab)
{
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int k = 0; k < n; k++) {
        b.token[k] = t[k];
        b.pos[k] = p0 + k;
        b.n_seq_id[k] = 1;
        b.seq_id[k][0] = seq;
        b.logits[k] = k == n - 1;
    }
    b.n_tokens = n;
    assert_int_equal(llama_decode(ctx, b), 0);
    memcpy(out, llama_get_logits_ith(ctx, n - 1), (size_t)n_vocab * sizeof *out);
    llama_batch_free(b);
}

/* Brains 0 and 1 have prompts a and b, alike in their first 40 tokens. Brain 1 takes those from
 * brain 0's sequence and decodes its last 6; brain 2 decodes b whole. Their logits agree (up to
 * the float noise of other batch shapes); brain 1 without the lent part does not, which shows
 * that the comparison would see a wrong or missing copy. */
static void share_case(struct llama_model *model, bool unified)
{
    enum { COMMON = 40, TAIL = 6, N = COMMON + TAIL };
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 3 * 64;
    cp.n_seq_max = 3;
    cp.n_batch = cp.n_ubatch = 64;
    cp.kv_unified = unified;
    cp.n_threads = cp.n_threads_batch = 2;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    assert_non_null(ctx);
    int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
    llama_token a[N], b[N];
    for (int k = 0; k < N; k++) {
        a[k] = (llama_token)(100 + 37 * k % 900);
        b[k] = k < COMMON ? a[k] : (llama_token)(1000 + 53 * k % 900);
    }
    float *own = malloc((size_t)n_vocab * sizeof *own), *lent = malloc((size_t)n_vocab * sizeof *lent);
    assert_non_null(own);
    assert_non_null(lent);
    decode_into(ctx, a, N, 0, 0, lent, n_vocab);
    decode_into(ctx, b, N, 0, 2, own, n_vocab);
    assert_true(engine_share_lend(ctx, unified, 0, 1, COMMON));
    assert_int_equal(llama_memory_seq_pos_max(llama_get_memory(ctx), 1), COMMON - 1);
    decode_into(ctx, b + COMMON, TAIL, COMMON, 1, lent, n_vocab);
    float scale = 0;
    for (int k = 0; k < n_vocab; k++)
        scale = fabsf(own[k]) > scale ? fabsf(own[k]) : scale;
    float gap = bj_intervene_logits_gap(own, lent, n_vocab);
    fprintf(stderr, "share (%s): logits gap %g of %g\n", unified ? "one pool" : "a stream each", gap, scale);
    assert_true(scale > 0);
    assert_true(gap <= 1e-3f * scale);
    /* without the common part, the same tail gives other logits */
    llama_memory_seq_rm(llama_get_memory(ctx), 1, -1, -1);
    decode_into(ctx, b + COMMON, TAIL, COMMON, 1, lent, n_vocab);
    assert_true(bj_intervene_logits_gap(own, lent, n_vocab) > 100 * gap + 1e-3f * scale);
    free(own);
    free(lent);
    llama_free(ctx);
}

/* Counts the graphs llama.cpp computes: the first layer's "attn_norm-0" is asked about once per ubatch. */
static bool count_ubatch(struct ggml_tensor *t, bool ask, void *ud)
{
    if (ask && strcmp(t->name, "attn_norm-0") == 0)
        (*(int *)ud)++;
    return false;
}

/* Puts n tokens of sequence seq, from position p0, into b. */
static void put_seq(struct llama_batch *b, llama_seq_id seq, llama_pos p0, int n)
{
    for (int k = 0; k < n; k++) {
        int j = b->n_tokens++;
        b->token[j] = (llama_token)(100 + 7 * j);
        b->pos[j] = p0 + k;
        b->n_seq_id[j] = 1;
        b->seq_id[j][0] = seq;
        b->logits[j] = false;
    }
}

/* Decodes b, checks that llama.cpp computed as many ubatches as engine_batch_ubatches says and
 * that this is `want`, then removes what b put into each sequence from position `from` on. */
static void expect_ubatches(struct llama_context *ctx, struct llama_batch *b, bool streams, int n_ubatch, int *count,
                            int want, llama_pos from)
{
    int order[256];
    *count = 0;
    assert_int_equal(llama_decode(ctx, *b), 0);
    llama_synchronize(ctx);
    assert_int_equal(engine_batch_ubatches(b, streams, n_ubatch, order), *count);
    assert_int_equal(*count, want);
    for (llama_seq_id s = 0; s < 6; s++)
        llama_memory_seq_rm(llama_get_memory(ctx), s, from, -1);
    b->n_tokens = 0;
}

/* A step of six sequences that each hold 4 tokens: one token each at position 4, except `idle`
 * (none) and `late` (late_n tokens put after all the others: the layout before engine_batch.c);
 * then the rests of longer works from position 5. The ubatches llama.cpp makes with a stream per
 * sequence and with one pool (n_ubatch 64). */
static const struct ucase {
    const char *what;
    llama_seq_id idle, late;
    int late_n;
    struct {
        llama_seq_id seq;
        int n;
    } rest[2];
    int streams, unified;
} k_ucases[] = {
    {"an opening put whole after the others: its first token ends the run", -1, 2, 8, {{-1, 0}, {-1, 0}}, 3, 1},
    {"first tokens in order, then the opening's rest", -1, -1, 0, {{2, 7}, {-1, 0}}, 2, 1},
    {"an idle sequence breaks the run (what a filler mends)", 3, -1, 0, {{2, 7}, {-1, 0}}, 3, 1},
    {"equal rests in neighbouring sequences share a ubatch", -1, -1, 0, {{2, 7}, {3, 7}}, 2, 1},
    {"rests apart take one each", -1, -1, 0, {{1, 7}, {4, 7}}, 3, 1},
    {"a rest longer than n_ubatch", -1, -1, 0, {{0, 99}, {-1, 0}}, 3, 2},
};

/* engine_batch.c's model of how llama.cpp cuts a batch, against what llama.cpp does: with a
 * stream per sequence, a batch is cut into runs of consecutive sequence ids with equal token
 * counts; the engine's layout (every sequence's first token in order, then the longer rests) and
 * its fillers keep a step with openings to one ubatch plus one per opening. */
static void test_ubatches(void **state)
{
    (void)state;
    llama_backend_init();
    struct llama_model *model = llama_model_load_from_file(getenv("BJ_TINY_MODEL"), llama_model_default_params());
    assert_non_null(model);
    int count = 0;
    for (int unified = 0; unified < 2; unified++) {
        struct llama_context_params cp = llama_context_default_params();
        cp.n_ctx = 6 * 256;
        cp.n_seq_max = 6;
        cp.n_batch = 256;
        cp.n_ubatch = 64;
        cp.kv_unified = unified;
        cp.n_threads = cp.n_threads_batch = 2;
        cp.cb_eval = count_ubatch;
        cp.cb_eval_user_data = &count;
        struct llama_context *ctx = llama_init_from_model(model, cp);
        assert_non_null(ctx);
        struct llama_batch b = llama_batch_init(256, 0, 1);
        for (llama_seq_id s = 0; s < 6; s++) /* every sequence holds 4 tokens */
            put_seq(&b, s, 0, 4);
        expect_ubatches(ctx, &b, !unified, 64, &count, unified ? 1 : 1, 4);
        for (size_t c = 0; c < sizeof k_ucases / sizeof *k_ucases; c++) {
            const struct ucase *u = &k_ucases[c];
            fprintf(stderr, "ubatches (%s): %s\n", unified ? "one pool" : "a stream each", u->what);
            for (llama_seq_id s = 0; s < 6; s++) /* one token each, from position 4 */
                if (s != u->idle && s != u->late)
                    put_seq(&b, s, 4, 1);
            if (u->late >= 0)
                put_seq(&b, u->late, 4, u->late_n);
            for (int r = 0; r < 2; r++)
                if (u->rest[r].seq >= 0)
                    put_seq(&b, u->rest[r].seq, 5, u->rest[r].n);
            expect_ubatches(ctx, &b, !unified, 64, &count, unified ? u->unified : u->streams, 4);
        }
        /* a decode of openings alone (step_batched's first, with no fillers): neighbours of equal
         * length share one ubatch, where fillers between them would have cut it after one round */
        put_seq(&b, 2, 4, 8);
        put_seq(&b, 3, 4, 8);
        expect_ubatches(ctx, &b, !unified, 64, &count, 1, 4);
        put_seq(&b, 1, 4, 8); /* apart: one each, as their rests took beside the single tokens */
        put_seq(&b, 4, 4, 8);
        expect_ubatches(ctx, &b, !unified, 64, &count, unified ? 1 : 2, 4);
        llama_batch_free(b);
        llama_free(ctx);
    }
    llama_model_free(model);
}

/* A wave of openings as engine.c's decode_openings takes it: runs of consecutive sequence ids
 * (each one ubatch, as test_ubatches shows), each in sequence order; the run with the least work
 * per brain (a pass counted as 40 tokens) first, equal ones in sequence order. */
static void test_opening_runs(void **state)
{
    (void)state;
    struct work w[BJ_MAX_BRAINS];
    int n = 0, ends[BJ_MAX_BRAINS];
    static const int seqs[] = {55, 7, 30, 1, 2, 3, 4, 5, 6, 8, 23, 24, 25, 26, 27, 28, 29, 31, 32, 60, 61};
    for (size_t k = 0; k < sizeof seqs / sizeof *seqs; k++)
        w[n++] = (struct work){.i = seqs[k], .n = seqs[k] >= 60 ? 5 : 10};
    /* runs: 1-8 (80 tokens: (40 + 80) / 8 = 15 a brain), 23-32 (100: 14), 55 (50), 60-61 (10: 25) */
    assert_int_equal(engine_batch_runs(w, n, 40, ends), 4);
    static const int want[] = {23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 1, 2, 3, 4, 5, 6, 7, 8, 60, 61, 55};
    for (int k = 0; k < n; k++)
        assert_int_equal(w[k].i, want[k]);
    assert_int_equal(ends[0], 10);
    assert_int_equal(ends[1], 18);
    assert_int_equal(ends[2], 20);
    assert_int_equal(ends[3], 21);
    /* equal work per brain keeps sequence order; one run is the whole wave */
    n = 0;
    for (int s = 9; s >= 0; s -= 2)
        w[n++] = (struct work){.i = s, .n = 4};
    assert_int_equal(engine_batch_runs(w, n, 40, ends), 5);
    for (int k = 0; k < n; k++)
        assert_int_equal(w[k].i, 2 * k + 1);
    w[0].i = 2, w[1].i = 0, w[2].i = 1;
    assert_int_equal(engine_batch_runs(w, 3, 40, ends), 1);
    assert_int_equal(ends[0], 3);
    assert_int_equal(w[0].i, 0);
    assert_int_equal(w[2].i, 2);
    assert_int_equal(engine_batch_runs(w, 0, 40, ends), 0);
}

static void test_share_openings(void **state)
{
    (void)state;
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(getenv("BJ_TINY_MODEL"), mp);
    assert_non_null(model);
    share_case(model, true);
    share_case(model, false);
    llama_model_free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_operator_kill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pause_and_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_brain_filled, setup, teardown),
        cmocka_unit_test(test_share_openings),
        cmocka_unit_test(test_ubatches),
        cmocka_unit_test(test_opening_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
