/* Unit tests for brain: the state machine driven by hand as an engine would drive it, with no
 * engine and no weights (the tiny model's vocabulary only, loaded with vocab_only). Checks the
 * events it emits and their order, the jar accounting (what was decoded, what fits), thoughts
 * ending at end-of-generation, at max_tokens and at a blank line, what it observes, death,
 * the pause, resurrection with the death count in the next life's prompt, operator pause, bad
 * prompts, context dumps and the chat format. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <llama.h>

#include "brain.h"
#include "log.h"
#include "prompt.h"
#include "util.h"

static struct llama_model *g_model;
static const struct llama_vocab *g_vocab;
static struct bj_prompts *g_prompts;

struct fixture {
    struct bj_brain_cfg cfg;
    struct bj_brain_params p;
    struct bj_evbuf out;
    struct bj_brain *b;
};

static int group_setup(void **state)
{
    (void)state;
    bj_log_attach_llama();
    llama_backend_init();
    const char *path = getenv("BJ_TINY_MODEL");
    assert_non_null(path);
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = true;
    g_model = llama_model_load_from_file(path, mp);
    assert_non_null(g_model);
    g_vocab = llama_model_get_vocab(g_model);
    char err[200];
    g_prompts = bj_prompts_load(NULL, err, sizeof err);
    assert_non_null(g_prompts);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    bj_prompts_free(g_prompts);
    llama_model_free(g_model);
    llama_backend_free();
    return 0;
}

static struct fixture *fixture_new(long jar, int max_tokens, uint32_t initial_deaths)
{
    struct fixture *f = calloc(1, sizeof *f);
    bj_strlcpy(f->cfg.id, "SUBJECT", sizeof f->cfg.id);
    bj_strlcpy(f->cfg.role, "subject", sizeof f->cfg.role);
    f->cfg.jar_tokens = jar;
    f->cfg.sampling = (struct bj_sampling){.temp = 0.8f, .top_p = 1.0f, .min_p = 0.05f, .max_tokens = max_tokens,
                                           .seed = 1};
    f->p.cfg = &f->cfg;
    f->p.prompts = g_prompts;
    f->p.vocab = g_vocab;
    f->p.out = &f->out;
    f->p.jar_tokens = jar;
    f->p.pause_ms = 0;
    f->p.initial_deaths = initial_deaths;
    f->b = bj_brain_new(&f->p);
    assert_non_null(f->b);
    return f;
}

static void fixture_free(struct fixture *f)
{
    bj_brain_free(f->b);
    bj_evbuf_free(&f->out);
    free(f);
}

/* The events emitted since the last call, as "type" or "status:state" joined by commas; the
 * buffer is emptied. */
static void take_events(struct fixture *f, char *sig, size_t len)
{
    sig[0] = '\0';
    for (size_t i = 0; i < f->out.n; i++) {
        const struct bj_event *ev = &f->out.v[i];
        char one[64];
        if (ev->type == BJ_EV_STATUS)
            snprintf(one, sizeof one, "status:%s", ev->state);
        else if (ev->type == BJ_EV_THOUGHT)
            snprintf(one, sizeof one, "thought:%s", ev->complete ? "complete" : "cut");
        else
            snprintf(one, sizeof one, "%s", bj_event_type_name(ev->type));
        if (i)
            strncat(sig, ",", len - strlen(sig) - 1);
        strncat(sig, one, len - strlen(sig) - 1);
        assert_string_equal(ev->brain, "SUBJECT");
        assert_int_equal(ev->jar_tokens, (int32_t)f->p.jar_tokens);
    }
}

#define EXPECT_EVENTS(f, want)                                                   \
    do {                                                                         \
        char sig_[4096];                                                         \
        take_events(f, sig_, sizeof sig_);                                       \
        if (strcmp(sig_, want) != 0)                                             \
            fail_msg("line %d: events\n  %s\nexpected\n  %s", __LINE__, sig_, want); \
        bj_evbuf_reset(&(f)->out);                                               \
    } while (0)

/* Decodes (pretends to) everything queued, in chunks of `chunk`, as the engine does: checks
 * that the jar holds it, reports it consumed. Returns the text of what was decoded. */
static char *decode_all(struct fixture *f, int chunk)
{
    size_t cap = 1 << 16, n = 0;
    char *text = calloc(1, cap);
    for (;;) {
        const llama_token *toks;
        bool logits = false;
        int before = bj_brain_n_past(f->b);
        int k = bj_brain_next_chunk(f->b, chunk, &toks, &logits);
        if (k == 0)
            break;
        assert_true(k <= chunk);
        assert_true(bj_brain_fits(f->b, k));
        for (int i = 0; i < k; i++) { /* piece by piece: detokenizing chunks would drop spaces */
            int m = llama_token_to_piece(g_vocab, toks[i], text + n, (int32_t)(cap - n - 1), 0, false);
            assert_true(m >= 0);
            n += (size_t)m;
        }
        bj_brain_consumed(f->b, k);
        assert_int_equal(bj_brain_n_past(f->b), before + k);
        if (logits)
            break; /* the brain samples next */
    }
    text[n] = '\0';
    return text;
}

/* The one token whose text is `piece`. */
static llama_token token_of(const char *piece)
{
    llama_token t[8];
    int n = llama_tokenize(g_vocab, piece, (int32_t)strlen(piece), t, 8, false, false);
    for (int i = 0; i < n; i++) {
        char buf[64];
        int m = llama_token_to_piece(g_vocab, t[i], buf, sizeof buf - 1, 0, false);
        if (m > 0 && (size_t)m == strlen(piece) && memcmp(buf, piece, (size_t)m) == 0)
            return t[i];
    }
    fail_msg("'%s' is not one token of this vocabulary", piece);
    return 0;
}

/* Samples `t`: accepts it, then decodes the token it queued (as the engine's next step). */
static int sample(struct fixture *f, llama_token t)
{
    int before = bj_brain_n_past(f->b);
    int rc = bj_brain_accept(f->b, t);
    if (rc == 0 && bj_brain_state(f->b) == BJ_BRAIN_THINKING) {
        const llama_token *toks;
        bool logits;
        int k = bj_brain_next_chunk(f->b, 64, &toks, &logits);
        assert_true(k >= 1);
        assert_true(logits);
        if (k == 1) { /* the thought goes on: decode the token (else the next cue is queued too) */
            assert_int_equal(toks[0], t);
            bj_brain_consumed(f->b, 1);
            assert_int_equal(bj_brain_n_past(f->b), before + 1);
        }
    }
    return rc;
}

static void test_first_life(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(4096, 96, 0);
    assert_int_equal(bj_brain_state(f->b), BJ_BRAIN_LOADING);
    assert_string_equal(bj_brain_id(f->b), "SUBJECT");
    assert_int_equal(bj_brain_jar(f->b), 4096);
    assert_int_equal(bj_brain_deaths(f->b), 0);
    const llama_token *toks;
    bool logits;
    assert_int_equal(bj_brain_next_chunk(f->b, 64, &toks, &logits), 0); /* nothing before a life */
    assert_int_equal(bj_brain_begin_life(f->b), 0);
    assert_int_equal(bj_brain_state(f->b), BJ_BRAIN_THINKING);
    EXPECT_EVENTS(f, "status:thinking");
    /* The prompt: the system prompt with the death sentence, then the thought cue; prefilled in
     * chunks, logits only for the last. */
    int k = bj_brain_next_chunk(f->b, 16, &toks, &logits);
    assert_int_equal(k, 16);
    assert_false(logits);
    assert_int_equal(bj_brain_n_past(f->b), 0); /* nothing consumed yet */
    char *text = decode_all(f, 16);
    assert_non_null(strstr(text, "SUBJECT"));  /* {name} */
    assert_non_null(strstr(text, "4096"));     /* {jar} */
    assert_non_null(strstr(text, "You have never died."));
    assert_non_null(strstr(text, "My thought:"));
    int prompt_tokens = bj_brain_n_past(f->b);
    assert_true(prompt_tokens > 50);
    free(text);
    EXPECT_EVENTS(f, ""); /* prefill emits nothing */
    assert_int_equal(bj_brain_next_chunk(f->b, 64, &toks, &logits), 0); /* waiting to sample */

    /* A thought: tokens stream, the thought ends at end-of-generation. */
    assert_int_equal(sample(f, token_of(" I")), 0);
    assert_int_equal(sample(f, token_of(" am")), 0);
    assert_int_equal(sample(f, token_of(" here")), 0);
    char sig[512];
    take_events(f, sig, sizeof sig);
    assert_string_equal(sig, "token,token,token");
    char joined[256] = "";
    for (size_t i = 0; i < f->out.n; i++) {
        assert_int_equal(f->out.v[i].thought, 1);
        assert_int_equal(f->out.v[i].crash_count, 0);
        strcat(joined, f->out.v[i].text);
    }
    assert_string_equal(joined, " I am here");
    bj_evbuf_reset(&f->out);
    /* Each sampled token was decoded in the next step: the jar holds it. */
    assert_int_equal(bj_brain_n_past(f->b), prompt_tokens + 3);
    assert_int_equal(bj_brain_next_chunk(f->b, 64, &toks, &logits), 0);
    assert_int_equal(bj_brain_accept(f->b, llama_vocab_eos(g_vocab)), 0);
    /* The thought is published whole, the brain listens (nothing delivered) and thinks again. */
    take_events(f, sig, sizeof sig);
    assert_string_equal(sig, "thought:complete,status:listening,status:thinking");
    assert_string_equal(f->out.v[0].text, " I am here");
    assert_int_equal(f->out.v[0].thought, 1);
    assert_int_equal(f->out.v[2].thought, 2);
    bj_evbuf_reset(&f->out);
    assert_int_equal(bj_brain_state(f->b), BJ_BRAIN_THINKING);
    /* The next cue is queued after the last sampled tokens. */
    text = decode_all(f, 64);
    assert_non_null(strstr(text, "My thought:"));
    free(text);
    fixture_free(f);
}

static void test_thought_ends(void **state)
{
    (void)state;
    /* max_tokens */
    struct fixture *f = fixture_new(4096, 3, 0);
    assert_int_equal(bj_brain_begin_life(f->b), 0);
    free(decode_all(f, 64));
    bj_evbuf_reset(&f->out);
    assert_int_equal(sample(f, token_of(" a")), 0);
    assert_int_equal(sample(f, token_of(" b")), 0);
    assert_int_equal(sample(f, token_of(" c")), 0);
    EXPECT_EVENTS(f, "token,token,token,thought:complete,status:listening,status:thinking");
    fixture_free(f);

    /* A blank line ends a thought once it has 8 tokens, not before. */
    f = fixture_new(4096, 96, 0);
    assert_int_equal(bj_brain_begin_life(f->b), 0);
    free(decode_all(f, 64));
    bj_evbuf_reset(&f->out);
    llama_token nl = token_of("\n");
    assert_int_equal(sample(f, token_of(" x")), 0);
    assert_int_equal(sample(f, nl), 0);
    assert_int_equal(sample(f, nl), 0); /* 3 tokens: goes on */
    assert_int_equal(bj_brain_state(f->b), BJ_BRAIN_THINKING);
    for (int i = 0; i < 5; i++)
        assert_int_equal(sample(f, token_of(" y")), 0);
    assert_int_equal(sample(f, nl), 0);
    assert_int_equal(sample(f, nl), 0); /* 10 tokens ending in a blank line */
    EXPECT_EVENTS(f, "token,token,token,token,token,token,token,token,token,token,"
                     "thought:complete,status:listening,status:thinking");
    fixture_free(f);
}

static void test_observe(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(4096, 2, 0);
    assert_int_equal(bj_brain_begin_life(f->b), 0);
    free(decode_all(f, 64));
    bj_evbuf_reset(&f->out);
    bj_brain_deliver(f->b, "OBSERVER", "\n\n[OBSERVER thinks:] you are watched");
    bj_brain_deliver(f->b, "operator", "\n\n[A voice:] hello");
    assert_int_equal(sample(f, token_of(" a")), 0);
    assert_int_equal(sample(f, token_of(" b")), 0);
    char sig[512];
    take_events(f, sig, sizeof sig);
    assert_string_equal(sig, "token,token,thought:complete,status:listening,observe,observe,status:thinking");
    assert_string_equal(f->out.v[4].from, "OBSERVER");
    assert_string_equal(f->out.v[4].text, "\n\n[OBSERVER thinks:] you are watched");
    assert_string_equal(f->out.v[5].from, "operator");
    bj_evbuf_reset(&f->out);
    /* What it observed is in its context before the next cue, in order. */
    char *text = decode_all(f, 64);
    char *w = strstr(text, "you are watched"), *v = strstr(text, "hello"), *cue = strstr(text, "My thought:");
    assert_true(w && v && cue && w < v && v < cue);
    free(text);
    /* Delivered once: the next thought observes nothing. */
    assert_int_equal(sample(f, token_of(" c")), 0);
    assert_int_equal(sample(f, token_of(" d")), 0);
    EXPECT_EVENTS(f, "token,token,thought:complete,status:listening,status:thinking");
    fixture_free(f);
}

/* A jar-full death, the pause, and the next life knows how often it died. */
static void test_death_and_resurrection(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(4096, 96, 0);
    f->p.pause_ms = 0;
    assert_int_equal(bj_brain_begin_life(f->b), 0);
    free(decode_all(f, 64));
    assert_int_equal(sample(f, token_of(" last")), 0);
    assert_int_equal(sample(f, token_of(" words")), 0);
    int n_past = bj_brain_n_past(f->b);
    bj_evbuf_reset(&f->out);
    /* The engine finds the next token does not fit and kills the brain. */
    bj_brain_die(f->b, "JAR_FULL", "the jar is full");
    char sig[512];
    take_events(f, sig, sizeof sig);
    assert_string_equal(sig, "status:dying,thought:cut,death,status:dead");
    assert_string_equal(f->out.v[1].text, " last words"); /* last words are never lost */
    const struct bj_event *d = &f->out.v[2];
    assert_string_equal(d->cause, "JAR_FULL");
    assert_string_equal(d->text, "the jar is full");
    assert_int_equal(d->crash_count, 1); /* after the death */
    assert_int_equal(d->jar_used, n_past); /* how full the jar was */
    assert_int_equal(f->out.v[3].jar_used, 0);
    bj_evbuf_reset(&f->out);
    assert_int_equal(bj_brain_state(f->b), BJ_BRAIN_DEAD);
    assert_int_equal(bj_brain_deaths(f->b), 1);
    assert_int_equal(bj_brain_n_past(f->b), 0); /* memory cleared */
    const llama_token *toks;
    bool logits;
    assert_int_equal(bj_brain_next_chunk(f->b, 64, &toks, &logits), 0); /* the dead do not decode */
    assert_true(bj_brain_due(f->b, bj_now_us()));
    assert_int_equal(bj_brain_resurrect(f->b), 0);
    take_events(f, sig, sizeof sig);
    assert_string_equal(sig, "status:resurrecting,resurrection,status:thinking");
    assert_int_equal(f->out.v[1].crash_count, 1);
    assert_int_equal(f->out.v[1].thought, 0);
    bj_evbuf_reset(&f->out);
    char *text = decode_all(f, 64);
    assert_non_null(strstr(text, "died 1 time before."));
    assert_null(strstr(text, "never died"));
    assert_null(strstr(text, "last words")); /* a new life starts empty */
    free(text);
    /* Thoughts count again from 1, tokens carry the new crash count. */
    assert_int_equal(sample(f, token_of(" again")), 0);
    assert_int_equal(f->out.v[0].thought, 1);
    assert_int_equal(f->out.v[0].crash_count, 1);
    bj_evbuf_reset(&f->out);
    /* A death with no thought begun publishes no empty last words. */
    assert_int_equal(bj_brain_accept(f->b, llama_vocab_eos(g_vocab)), 0);
    bj_evbuf_reset(&f->out);
    bj_brain_die(f->b, "OPERATOR", NULL);
    EXPECT_EVENTS(f, "status:dying,death,status:dead");
    assert_int_equal(bj_brain_resurrect(f->b), 0);
    text = decode_all(f, 64);
    assert_non_null(strstr(text, "2 times before."));
    free(text);
    fixture_free(f);
}

/* A new life decodes only what differs from the last one's opening: the context keeps the
 * system prompt up to the death count, which the prompt files put last. What a life never decoded is not counted as kept. */
static void test_opening_reused(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(4096, 96, 0);
    assert_int_equal(bj_brain_begin_life(f->b), 0);
    assert_int_equal(bj_brain_kv_kept(f->b), 0); /* a first life has nothing to take over */
    free(decode_all(f, 64));
    int opening = bj_brain_n_past(f->b);
    assert_int_equal(sample(f, token_of(" words")), 0);
    bj_brain_die(f->b, "JAR_FULL", "");
    assert_int_equal(bj_brain_kv_kept(f->b), opening); /* the opening, not the thoughts after it */
    assert_int_equal(bj_brain_n_past(f->b), 0);         /* the dead hold nothing in their jar */
    assert_int_equal(bj_brain_resurrect(f->b), 0);
    int reused = bj_brain_n_past(f->b);
    /* up to the death sentence, which ends the prompt: only it and the cue are decoded again */
    assert_true(reused > 10 && reused < opening && opening - reused <= 16);
    assert_int_equal(bj_brain_kv_kept(f->b), reused);
    char *rest = decode_all(f, 64);
    assert_non_null(strstr(rest, "died 1 time before."));
    assert_null(strstr(rest, "I am SUBJECT")); /* the kept part is not decoded again */
    assert_null(strstr(rest, "jar holds"));
    free(rest);
    bj_evbuf_reset(&f->out);

    /* Killed after only 5 tokens of its opening: at most those are kept. */
    bj_brain_die(f->b, "OPERATOR", NULL);
    assert_int_equal(bj_brain_resurrect(f->b), 0);
    const llama_token *toks;
    bool logits;
    int n = bj_brain_next_chunk(f->b, 5, &toks, &logits);
    assert_int_equal(n, 5);
    bj_brain_consumed(f->b, 5);
    int past = bj_brain_n_past(f->b);
    bj_brain_die(f->b, "OPERATOR", NULL);
    assert_int_equal(bj_brain_kv_kept(f->b), past);
    assert_int_equal(bj_brain_resurrect(f->b), 0);
    assert_true(bj_brain_n_past(f->b) <= past);

    /* The context lost them: everything is decoded from the start. */
    bj_brain_kv_lost(f->b);
    assert_int_equal(bj_brain_n_past(f->b), 0);
    assert_int_equal(bj_brain_kv_kept(f->b), 0);
    rest = decode_all(f, 64);
    assert_non_null(strstr(rest, "I am SUBJECT"));
    free(rest);
    bj_evbuf_reset(&f->out);
    fixture_free(f);
}

/* Brain a's opening is brain b's, token for token. */
static void expect_same_opening(const struct bj_brain *a, const struct bj_brain *b)
{
    const llama_token *ta, *tb;
    int na = bj_brain_opening(a, &ta), nb = bj_brain_opening(b, &tb);
    assert_true(na > 10);
    assert_int_equal(na, nb);
    assert_memory_equal(ta, tb, (size_t)na * sizeof *ta);
    assert_int_equal(bj_brain_n_past(a), bj_brain_n_past(b));
}

/* A life prepared ahead (its prompt tokenized on another thread) begins as one that was not;
 * one prepared for a prompt that changed since (a death in between) tokenizes the new one. */
static void test_prepared_life(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(4096, 96, 0), *g = fixture_new(4096, 96, 0);
    f->p.pause_ms = g->p.pause_ms = 0;
    assert_int_equal(bj_brain_prepare_life(f->b), 0);
    assert_int_equal(bj_brain_begin_life(f->b), 0);
    assert_int_equal(bj_brain_begin_life(g->b), 0);
    expect_same_opening(f->b, g->b);
    free(decode_all(f, 64));
    free(decode_all(g, 64));
    assert_int_equal(bj_brain_prepare_life(f->b), 0); /* for "never died": stale after the death */
    bj_brain_die(f->b, "JAR_FULL", "");
    bj_brain_die(g->b, "JAR_FULL", "");
    assert_int_equal(bj_brain_resurrect(f->b), 0);
    assert_int_equal(bj_brain_resurrect(g->b), 0);
    expect_same_opening(f->b, g->b);
    char *text = decode_all(f, 64);
    assert_non_null(strstr(text, "died 1 time before."));
    free(text);
    free(decode_all(g, 64));
    bj_brain_die(f->b, "OPERATOR", NULL);
    bj_brain_die(g->b, "OPERATOR", NULL);
    assert_int_equal(bj_brain_prepare_life(f->b), 0); /* dead, about to return: what the engine does */
    assert_int_equal(bj_brain_resurrect(f->b), 0);
    assert_int_equal(bj_brain_resurrect(g->b), 0);
    expect_same_opening(f->b, g->b);
    text = decode_all(f, 64);
    assert_non_null(strstr(text, "2 times before."));
    free(text);
    fixture_free(f);
    fixture_free(g);
}

/* A brain that died before (another run, the store) starts with its count. */
static void test_initial_deaths(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(4096, 96, 4);
    assert_int_equal(bj_brain_begin_life(f->b), 0);
    char *text = decode_all(f, 64);
    assert_non_null(strstr(text, "You have died 4 times before."));
    free(text);
    bj_evbuf_reset(&f->out);
    bj_brain_die(f->b, "DECODE_ERROR", "llama_decode returned -1");
    assert_int_equal(f->out.v[1].crash_count, 5);
    fixture_free(f);
}

/* A brain rebuilt after its engine was given up starts dead and due: its first life begins with
 * a resurrection that knows its deaths. */
static void test_start_dead(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(4096, 96, 2);
    f->p.start_dead = true;
    bj_brain_free(f->b);
    f->b = bj_brain_new(&f->p);
    assert_int_equal(bj_brain_state(f->b), BJ_BRAIN_DEAD);
    assert_true(bj_brain_due(f->b, bj_now_us()));
    const llama_token *toks;
    bool logits;
    assert_int_equal(bj_brain_next_chunk(f->b, 64, &toks, &logits), 0);
    assert_int_equal(bj_brain_resurrect(f->b), 0);
    char sig[256];
    take_events(f, sig, sizeof sig);
    assert_string_equal(sig, "status:resurrecting,resurrection,status:thinking");
    assert_int_equal(f->out.v[1].crash_count, 2);
    bj_evbuf_reset(&f->out);
    char *text = decode_all(f, 64);
    assert_non_null(strstr(text, "2 times before."));
    free(text);
    fixture_free(f);
}

static void test_pause_before_resurrection(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(4096, 96, 0);
    f->p.pause_ms = 60000;
    bj_brain_free(f->b);
    f->b = bj_brain_new(&f->p);
    assert_int_equal(bj_brain_begin_life(f->b), 0);
    int64_t t0 = bj_now_us();
    bj_brain_die(f->b, "JAR_FULL", "");
    int64_t at = bj_brain_resurrect_at(f->b);
    assert_true(at >= t0 + 60000LL * 1000 && at <= bj_now_us() + 60000LL * 1000);
    assert_false(bj_brain_due(f->b, bj_now_us()));
    assert_false(bj_brain_due(f->b, at - 1));
    assert_true(bj_brain_due(f->b, at));
    /* Paused while dead: not due until resumed. */
    bj_brain_set_paused(f->b, true);
    assert_int_equal(bj_brain_state(f->b), BJ_BRAIN_DEAD);
    assert_false(bj_brain_due(f->b, at + 1));
    bj_brain_set_paused(f->b, false);
    assert_true(bj_brain_due(f->b, at + 1));
    fixture_free(f);
}

static void test_operator_pause(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(4096, 96, 0);
    assert_int_equal(bj_brain_begin_life(f->b), 0);
    bj_evbuf_reset(&f->out);
    const llama_token *toks;
    bool logits;
    bj_brain_set_paused(f->b, true);
    assert_int_equal(bj_brain_state(f->b), BJ_BRAIN_PAUSED);
    assert_int_equal(bj_brain_next_chunk(f->b, 64, &toks, &logits), 0); /* no decode while paused */
    bj_brain_set_paused(f->b, true);                                      /* idempotent */
    EXPECT_EVENTS(f, "status:paused");
    bj_brain_set_paused(f->b, false);
    EXPECT_EVENTS(f, "status:thinking");
    char *text = decode_all(f, 64); /* memory kept: the prompt is still queued */
    assert_non_null(strstr(text, "You have never died."));
    free(text);
    /* Killed while paused; resurrected still paused. */
    bj_brain_set_paused(f->b, true);
    bj_brain_die(f->b, "OPERATOR", "kill");
    bj_evbuf_reset(&f->out);
    assert_int_equal(bj_brain_resurrect(f->b), 0);
    assert_int_equal(bj_brain_state(f->b), BJ_BRAIN_PAUSED);
    EXPECT_EVENTS(f, "status:resurrecting,resurrection,status:paused");
    bj_brain_set_paused(f->b, false);
    assert_int_equal(bj_brain_state(f->b), BJ_BRAIN_THINKING);
    fixture_free(f);
}

/* Jar accounting: n_past is what was decoded, fits() what may come. */
static void test_jar_accounting(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(999, 96, 0);
    assert_int_equal(bj_brain_begin_life(f->b), 0);
    free(decode_all(f, 64));
    int prompt = bj_brain_n_past(f->b);
    assert_true(bj_brain_fits(f->b, 999 - prompt));
    assert_false(bj_brain_fits(f->b, 999 - prompt + 1));
    fixture_free(f);
    /* The prompt states its jar ({jar}), so its length depends on the jar's digits: find the jar
     * that holds exactly its own prompt and one token (a fixed point, reached in a step or two). */
    for (int round = 0; round < 4; round++) {
        f = fixture_new(prompt + 1, 96, 0);
        assert_int_equal(bj_brain_begin_life(f->b), 0);
        free(decode_all(f, 64));
        int again = bj_brain_n_past(f->b);
        fixture_free(f);
        if (again == prompt)
            break;
        prompt = again;
    }
    assert_true(prompt >= 10 && prompt < 998);
    /* A jar just big enough for the prompt and a token: fits exactly, then nothing more does. */
    f = fixture_new(prompt + 1, 96, 0);
    assert_int_equal(bj_brain_begin_life(f->b), 0);
    free(decode_all(f, 64));
    assert_int_equal(bj_brain_n_past(f->b), prompt);
    assert_true(bj_brain_fits(f->b, 1));
    assert_false(bj_brain_fits(f->b, 2));
    assert_int_equal(sample(f, token_of(" x")), 0);
    assert_int_equal(bj_brain_n_past(f->b), prompt + 1);
    assert_false(bj_brain_fits(f->b, 1));
    assert_true(bj_brain_fits(f->b, 0));
    fixture_free(f);
    /* A jar that holds the prompt but not one token more: the life cannot begin. */
    enum bj_log_level lv = bj_log_get_level();
    bj_log_set_level(BJ_LOG_ERROR + 1);
    f = fixture_new(prompt, 96, 0);
    assert_int_equal(bj_brain_begin_life(f->b), -1);
    fixture_free(f);
    f = fixture_new(10, 96, 0);
    assert_int_equal(bj_brain_begin_life(f->b), -1);
    bj_log_set_level(lv);
    /* The engine then kills it (PROMPT_ERROR): a death like any other, counted; it comes back
     * after its pause and fails again, never decoding a truncated prompt. */
    assert_int_equal(bj_brain_state(f->b), BJ_BRAIN_LOADING);
    bj_evbuf_reset(&f->out);
    bj_brain_die(f->b, "PROMPT_ERROR", "its system prompt does not fit in its jar");
    EXPECT_EVENTS(f, "status:dying,death,status:dead");
    assert_int_equal(bj_brain_deaths(f->b), 1);
    const llama_token *toks;
    bool logits;
    assert_int_equal(bj_brain_next_chunk(f->b, 64, &toks, &logits), 0);
    bj_log_set_level(BJ_LOG_ERROR + 1);
    assert_int_equal(bj_brain_resurrect(f->b), -1);
    bj_log_set_level(lv);
    assert_int_equal(bj_brain_next_chunk(f->b, 64, &toks, &logits), 0); /* RESURRECTING: no decode */
    bj_brain_die(f->b, "PROMPT_ERROR", "again");
    assert_int_equal(bj_brain_deaths(f->b), 2);
    fixture_free(f);
}

static void test_bad_role(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(4096, 96, 0);
    bj_strlcpy(f->cfg.role, "nobody", sizeof f->cfg.role);
    enum bj_log_level lv = bj_log_get_level();
    bj_log_set_level(BJ_LOG_ERROR + 1);
    assert_int_equal(bj_brain_begin_life(f->b), -1);
    bj_log_set_level(lv);
    assert_int_equal(bj_brain_state(f->b), BJ_BRAIN_LOADING);
    fixture_free(f);
}

static void test_dump_context(void **state)
{
    (void)state;
    char dir[400], path[500];
    const char *tmp = getenv("BJ_TEST_TMP");
    snprintf(dir, sizeof dir, "%s/bj-brain-dump-%d", tmp && *tmp ? tmp : "/tmp", (int)getpid());
    assert_int_equal(bj_mkdirs(dir), 0);
    struct fixture *f = fixture_new(4096, 96, 0);
    f->p.dump_dir = dir;
    bj_brain_free(f->b);
    f->b = bj_brain_new(&f->p);
    assert_int_equal(bj_brain_begin_life(f->b), 0);
    free(decode_all(f, 64));
    assert_int_equal(sample(f, token_of(" here")), 0);
    bj_brain_die(f->b, "JAR_FULL", "");
    snprintf(path, sizeof path, "%s/SUBJECT-life1.txt", dir);
    char *s;
    assert_int_equal(bj_read_file(path, &s, NULL), 0);
    assert_non_null(strstr(s, "You have never died."));
    if (!strstr(s, "My thought: here"))
        fail_msg("the dump lacks the thought: %s", s);
    free(s);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    fixture_free(f);
}

static void test_chat_format(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(4096, 2, 1);
    f->p.chat_template = "chatml";
    bj_brain_free(f->b);
    f->b = bj_brain_new(&f->p);
    assert_int_equal(bj_brain_begin_life(f->b), 0);
    char *text = decode_all(f, 64);
    assert_non_null(strstr(text, "system"));
    assert_non_null(strstr(text, "died 1 time before."));
    assert_non_null(strstr(text, bj_prompt_chat_opening()));
    free(text);
    bj_brain_deliver(f->b, "OBSERVER", "\n\nseen");
    assert_int_equal(sample(f, token_of(" a")), 0);
    assert_int_equal(sample(f, token_of(" b")), 0);
    text = decode_all(f, 64);
    assert_non_null(strstr(text, "seen"));
    assert_null(strstr(text, "You have died")); /* only what is new is queued */
    free(text);
    fixture_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_life),
        cmocka_unit_test(test_thought_ends),
        cmocka_unit_test(test_observe),
        cmocka_unit_test(test_death_and_resurrection),
        cmocka_unit_test(test_opening_reused),
        cmocka_unit_test(test_prepared_life),
        cmocka_unit_test(test_initial_deaths),
        cmocka_unit_test(test_start_dead),
        cmocka_unit_test(test_pause_before_resurrection),
        cmocka_unit_test(test_operator_pause),
        cmocka_unit_test(test_jar_accounting),
        cmocka_unit_test(test_bad_role),
        cmocka_unit_test(test_dump_context),
        cmocka_unit_test(test_chat_format),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
