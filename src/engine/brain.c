/* brain: see brain.h. */
#include "brain.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* A thought also ends at a blank line once it has this many tokens. */
#define MIN_TOKENS_BEFORE_BLANK_LINE 8

static const char *const k_state_names[] = {
    "loading", "thinking", "listening", "dying", "dead", "resurrecting", "paused",
};

const char *bj_brain_state_name(enum bj_brain_state s) { return k_state_names[s]; }

struct inbox_msg {
    struct inbox_msg *next;
    char from[BJ_NAME_MAX];
    char *text;
};

struct textbuf {
    char *s;
    size_t len, cap;
};

/* Chat format: the life as messages; `shown` is the formatted text the context already holds
 * (up to and including the assistant prefix of the thought being generated). */
struct chat {
    struct llama_chat_message *msg;
    int n, cap;
    char *shown;
};

struct bj_brain {
    struct bj_brain_params p;
    enum bj_brain_state state;
    bool paused;
    uint32_t deaths, thought;
    int n_past;

    llama_token *pending; /* input not yet decoded: [off, n) */
    int n_pending, off_pending, cap_pending;
    /* This life's opening (system prompt and first cue), and how many of its first tokens the
     * context still holds (kept): the next life decodes only what differs from it. */
    llama_token *opening;
    int n_opening, cap_opening, kept;
    /* The next life's system prompt, tokenized ahead (bj_brain_prepare_life), and its text. */
    char *ready_text;
    llama_token *ready;
    int n_ready;
    bool sampling;        /* the brain samples once its input is decoded */
    int n_gen;

    /* What its KV sequence holds, position by position (n_past of them): the lab's
     * interventions edit it with the memory (engine/intervene.c). */
    llama_token *ctx;
    int cap_ctx;
    int thought_at;       /* position of the current thought's first generated token */
    int last_at, last_n;  /* the last finished thought's span */
    char *last_words;     /* what it was thinking when it last died (remembers_deaths) */
    char *injected;       /* a false memory to take in as its own thought at the next boundary */
    char *ask;            /* a question to read just before the next thought */

    struct textbuf text;  /* the current thought */
    struct textbuf life;  /* everything in the context this life (for dumps) */
    struct chat chat;
    struct bj_utf8 utf8;
    struct bj_sampler *smpl;

    pthread_mutex_t inbox_lock;
    struct inbox_msg *inbox_head, *inbox_tail;
    size_t inbox_bytes;

    int64_t resurrect_at;
    int64_t next_token_at; /* with a pace: when its next generated token is due */
    uint64_t window_tokens;
    int64_t window_start;
    double tok_s;
};

static int tb_put(struct textbuf *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t nc = (t->len + n + 1) * 2;
        char *b = realloc(t->s, nc);
        if (!b)
            return -ENOMEM;
        t->s = b;
        t->cap = nc;
    }
    memcpy(t->s + t->len, s, n);
    t->len += n;
    t->s[t->len] = '\0';
    return 0;
}

static void tb_reset(struct textbuf *t)
{
    t->len = 0;
    if (t->s)
        t->s[0] = '\0';
}

/* ---- chat format -------------------------------------------------------------------------- */

static void chat_clear(struct chat *c)
{
    for (int i = 0; i < c->n; i++) {
        free((char *)c->msg[i].role);
        free((char *)c->msg[i].content);
    }
    c->n = 0;
    free(c->shown);
    c->shown = NULL;
}

static int chat_push(struct chat *c, const char *role, const char *content)
{
    if (c->n == c->cap) {
        int nc = c->cap ? c->cap * 2 : 8;
        struct llama_chat_message *m = realloc(c->msg, (size_t)nc * sizeof *m);
        if (!m)
            return -ENOMEM;
        c->msg = m;
        c->cap = nc;
    }
    char *r = strdup(role), *t = strdup(content);
    if (!r || !t) {
        free(r);
        free(t);
        return -ENOMEM;
    }
    c->msg[c->n++] = (struct llama_chat_message){r, t};
    return 0;
}

/* The whole conversation formatted, ending with the assistant prefix; caller frees. */
static char *chat_format(const struct bj_brain *b)
{
    int len = llama_chat_apply_template(b->p.chat_template, b->chat.msg, (size_t)b->chat.n, true, NULL, 0);
    if (len < 0)
        return NULL;
    char *buf = malloc((size_t)len + 1);
    if (buf && llama_chat_apply_template(b->p.chat_template, b->chat.msg, (size_t)b->chat.n, true, buf, len + 1) != len) {
        free(buf);
        return NULL;
    }
    if (buf)
        buf[len] = '\0';
    return buf;
}

static int queue_text(struct bj_brain *b, const char *text, bool add_bos);

/* Adds messages to the conversation and queues what the context lacks: the formatted text past
 * what it already shows (and past the thought it generated, which is already decoded). */
static int chat_extend(struct bj_brain *b, const char *assistant, const char *user)
{
    if ((assistant && chat_push(&b->chat, "assistant", assistant)) || chat_push(&b->chat, "user", user))
        return -ENOMEM;
    char *all = chat_format(b);
    if (!all)
        return -EINVAL;
    const char *delta = all;
    size_t shown = b->chat.shown ? strlen(b->chat.shown) : 0;
    if (shown && strncmp(all, b->chat.shown, shown) == 0) {
        delta = all + shown;
        size_t t = assistant ? strlen(assistant) : 0;
        if (t && strncmp(delta, assistant, t) == 0)
            delta += t;
        else if (t)
            bj_debug("brain %s: the chat template rewrote a thought; it is re-read", b->p.cfg->id);
    }
    int rc = queue_text(b, delta, shown == 0);
    free(b->chat.shown);
    b->chat.shown = all;
    return rc;
}

struct bj_brain *bj_brain_new(const struct bj_brain_params *p)
{
    struct bj_brain *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->p = *p;
    b->deaths = p->initial_deaths;
    b->state = p->start_dead ? BJ_BRAIN_DEAD : BJ_BRAIN_LOADING;
    b->resurrect_at = 0;
    if (!(b->smpl = bj_sampler_new(&p->cfg->sampling, llama_vocab_n_tokens(p->vocab)))) {
        free(b);
        return NULL;
    }
    pthread_mutex_init(&b->inbox_lock, NULL);
    b->window_start = bj_now_us();
    return b;
}

void bj_brain_free(struct bj_brain *b)
{
    if (!b)
        return;
    for (struct inbox_msg *m = b->inbox_head, *n; m; m = n) {
        n = m->next;
        free(m->text);
        free(m);
    }
    pthread_mutex_destroy(&b->inbox_lock);
    bj_sampler_free(b->smpl);
    chat_clear(&b->chat);
    free(b->chat.msg);
    free(b->pending);
    free(b->opening);
    free(b->ready_text);
    free(b->ready);
    free(b->text.s);
    free(b->life.s);
    free(b->ctx);
    free(b->last_words);
    free(b->injected);
    free(b->ask);
    free(b);
}

const char *bj_brain_id(const struct bj_brain *b) { return b->p.cfg->id; }
enum bj_brain_state bj_brain_state(const struct bj_brain *b) { return b->state; }
uint32_t bj_brain_deaths(const struct bj_brain *b) { return b->deaths; }
int bj_brain_n_past(const struct bj_brain *b) { return b->n_past; }
long bj_brain_jar(const struct bj_brain *b) { return b->p.jar_tokens; }
struct bj_sampler *bj_brain_sampler(struct bj_brain *b) { return b->smpl; }

static void event_init(const struct bj_brain *b, struct bj_event *ev, enum bj_event_type type)
{
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    bj_strlcpy(ev->brain, b->p.cfg->id, sizeof ev->brain);
    ev->crash_count = b->deaths;
    ev->thought = b->thought;
    ev->jar_used = b->n_past;
    ev->jar_tokens = (int32_t)b->p.jar_tokens;
}

/* Every event goes to the engine's step buffer: the engine publishes a step's events together,
 * after the hive has made its deaths durable. */
static void emit(struct bj_brain *b, const struct bj_event *ev)
{
    if (bj_evbuf_push(b->p.out, ev) != 0)
        bj_error("brain %s: out of memory; a %s event is lost", b->p.cfg->id, bj_event_type_name(ev->type));
}

static void set_state(struct bj_brain *b, enum bj_brain_state s)
{
    if (b->state == s)
        return;
    b->state = s;
    bj_brain_publish_status(b, bj_now_us());
}

/* Tokenizes text onto the input queue and into the life's text. */
static int queue_text(struct bj_brain *b, const char *text, bool add_bos)
{
    int len = (int)strlen(text);
    int room = len + 8;
    if (b->n_pending + room > b->cap_pending) {
        int nc = (b->n_pending + room) * 2;
        llama_token *np = realloc(b->pending, (size_t)nc * sizeof *np);
        if (!np)
            return -ENOMEM;
        b->pending = np;
        b->cap_pending = nc;
    }
    /* Chat templates carry special tokens (<|im_start|>, [INST]) that must be parsed as such. */
    int n = llama_tokenize(b->p.vocab, text, len, b->pending + b->n_pending, b->cap_pending - b->n_pending,
                           add_bos, b->p.chat_template != NULL);
    if (n < 0)
        return -EINVAL;
    b->n_pending += n;
    return tb_put(&b->life, text, (size_t)len);
}

static int queue_token(struct bj_brain *b, llama_token t)
{
    if (b->n_pending + 1 > b->cap_pending) {
        int nc = (b->n_pending + 1) * 2 + 16;
        llama_token *np = realloc(b->pending, (size_t)nc * sizeof *np);
        if (!np)
            return -ENOMEM;
        b->pending = np;
        b->cap_pending = nc;
    }
    b->pending[b->n_pending++] = t;
    return 0;
}

/* The new opening is queued: what the context still holds of the last one and equals it is
 * not decoded again (the same tokens at the same positions); at least the last token is, for
 * its logits. Then the new opening is remembered for the next life. */
static int keep_opening(struct bj_brain *b)
{
    int same = 0;
    while (same < b->kept && same < b->n_pending - 1 && b->opening[same] == b->pending[same])
        same++;
    if (b->n_pending > b->cap_opening) {
        llama_token *o = realloc(b->opening, (size_t)b->n_pending * sizeof *o);
        if (!o)
            return -ENOMEM;
        b->opening = o;
        b->cap_opening = b->n_pending;
    }
    memcpy(b->opening, b->pending, (size_t)b->n_pending * sizeof *b->opening);
    b->n_opening = b->n_pending;
    b->last_at = b->last_n = 0;
    b->n_past = b->off_pending = b->kept = same;
    return 0;
}

/* The system prompt of the life to begin (a lab frame's included); NULL on failure, logged. */
static char *life_prompt(const struct bj_brain *b)
{
    /* A lab frame: remembers_deaths false hides its deaths; true carries its last words over. */
    bool lab = b->p.cfg->lab_template[0] != '\0';
    uint32_t told = lab && b->p.cfg->remembers_deaths == 0 ? 0 : b->deaths;
    char *sys = bj_prompt_system(b->p.prompts, b->p.cfg->role, bj_spec_brain_name(b->p.cfg), told,
                                 b->p.jar_tokens);
    if (!sys) {
        bj_error("brain %s: no prompt for role '%s'", b->p.cfg->id, b->p.cfg->role);
        return NULL;
    }
    if (lab && (b->p.cfg->frame[0] || (b->p.cfg->remembers_deaths == 1 && b->last_words))) {
        char *framed = bj_prompt_framed(sys, b->p.cfg->frame, b->p.cfg->remembers_deaths == 1 ? b->last_words : NULL);
        free(sys);
        sys = framed;
    }
    return sys;
}

static void drop_ready(struct bj_brain *b)
{
    free(b->ready_text);
    free(b->ready);
    b->ready_text = NULL;
    b->ready = NULL;
    b->n_ready = 0;
}

int bj_brain_prepare_life(struct bj_brain *b)
{
    drop_ready(b);
    if (b->p.chat_template) /* its opening is the template's delta, made at the life's start */
        return 0;
    char *sys = life_prompt(b);
    if (!sys)
        return -EINVAL;
    int cap = (int)strlen(sys) + 8;
    llama_token *t = malloc((size_t)cap * sizeof *t);
    int n = t ? llama_tokenize(b->p.vocab, sys, (int)strlen(sys), t, cap, true, false) : -1;
    if (n < 0) {
        free(sys);
        free(t);
        return t ? -EINVAL : -ENOMEM;
    }
    b->ready_text = sys;
    b->ready = t;
    b->n_ready = n;
    return 0;
}

/* Queues the system prompt sys with its beginning-of-text token: tokenized ahead when that was
 * this very text, else now. */
static int queue_system(struct bj_brain *b, const char *sys)
{
    if (!b->ready_text || strcmp(b->ready_text, sys) != 0)
        return queue_text(b, sys, true);
    for (int k = 0; k < b->n_ready; k++)
        if (queue_token(b, b->ready[k]) != 0)
            return -ENOMEM;
    return tb_put(&b->life, sys, strlen(sys));
}

int bj_brain_begin_life(struct bj_brain *b)
{
    b->n_past = 0;
    b->n_pending = b->off_pending = 0;
    b->n_gen = 0;
    b->thought = 1;
    tb_reset(&b->text);
    tb_reset(&b->life);
    memset(&b->utf8, 0, sizeof b->utf8);
    bj_sampler_begin_life(b->smpl, (uint64_t)b->deaths + 1);
    char *sys = life_prompt(b);
    if (!sys)
        return -1;
    int rc;
    if (b->p.chat_template) {
        chat_clear(&b->chat);
        rc = chat_push(&b->chat, "system", sys);
        if (rc == 0)
            rc = chat_extend(b, NULL, bj_prompt_chat_opening());
    } else {
        rc = queue_system(b, sys);
        if (rc == 0)
            rc = queue_text(b, bj_prompt_thought_cue(), false);
    }
    drop_ready(b);
    free(sys);
    if (rc) {
        bj_error("brain %s: cannot tokenize its system prompt", b->p.cfg->id);
        return -1;
    }
    if (b->n_pending + 1 > b->p.jar_tokens) {
        bj_error("brain %s: its system prompt (%d tokens) does not fit in its jar (%ld tokens)", b->p.cfg->id,
                 b->n_pending, b->p.jar_tokens);
        return -1;
    }
    if (keep_opening(b) != 0) {
        bj_error("brain %s: out of memory", b->p.cfg->id);
        return -1;
    }
    b->sampling = true;
    set_state(b, b->paused ? BJ_BRAIN_PAUSED : BJ_BRAIN_THINKING);
    return 0;
}

/* Mid-thought, the one queued token is the last one sampled: decoding it makes the next. */
static bool generating(const struct bj_brain *b) { return b->n_gen > 0 && b->n_pending - b->off_pending == 1; }

int64_t bj_brain_due_at(const struct bj_brain *b)
{
    if (b->p.pace <= 0 || b->state != BJ_BRAIN_THINKING || !generating(b))
        return INT64_MAX;
    return b->next_token_at;
}

int bj_brain_next_chunk(struct bj_brain *b, int max_n, const llama_token **tokens, bool *want_logits)
{
    if (b->state != BJ_BRAIN_THINKING)
        return 0;
    if (b->p.pace > 0 && generating(b) && bj_now_us() < b->next_token_at)
        return 0; /* thinking at its pace; what it reads is not paced */
    int avail = b->n_pending - b->off_pending;
    int n = avail < max_n ? avail : max_n;
    *tokens = b->pending + b->off_pending;
    *want_logits = n == avail && b->sampling;
    return n;
}

int bj_brain_kv_kept(const struct bj_brain *b) { return b->kept; }

void bj_brain_kv_lost(struct bj_brain *b)
{
    b->kept = 0;
    if (b->state != BJ_BRAIN_DEAD)
        b->n_past = b->off_pending = 0;
}

bool bj_brain_fits(const struct bj_brain *b, int n) { return (long)b->n_past + n <= b->p.jar_tokens; }

static int ctx_reserve(struct bj_brain *b, int n)
{
    if (n <= b->cap_ctx)
        return 0;
    int nc = n * 2 + 64;
    llama_token *c = realloc(b->ctx, (size_t)nc * sizeof *c);
    if (!c)
        return -ENOMEM;
    b->ctx = c;
    b->cap_ctx = nc;
    return 0;
}

void bj_brain_consumed(struct bj_brain *b, int n)
{
    /* the KV's tokens are mirrored for the lab; without memory for it the mirror stops growing
     * (interventions then refuse: bj_brain_ctx_ok) */
    if (ctx_reserve(b, b->n_past + n) == 0)
        memcpy(b->ctx + b->n_past, b->pending + b->off_pending, (size_t)n * sizeof *b->ctx);
    else
        b->cap_ctx = -1;
    b->n_past += n;
    b->off_pending += n;
    if (b->off_pending == b->n_pending)
        b->off_pending = b->n_pending = 0;
}

/* The next thought's cue, with what the lab left for this boundary: a question just before it
 * (the thought that follows is the answer), a false memory just after it (a thought of its own,
 * then a new cue). */
static int queue_cue(struct bj_brain *b)
{
    int rc = 0;
    if (b->ask) {
        rc = queue_text(b, b->ask, false);
        free(b->ask);
        b->ask = NULL;
    }
    if (rc == 0)
        rc = queue_text(b, bj_prompt_thought_cue(), false);
    if (rc == 0 && b->injected) {
        rc = queue_text(b, " ", false);
        if (rc == 0)
            rc = queue_text(b, b->injected, false);
        if (rc == 0)
            rc = queue_text(b, bj_prompt_thought_cue(), false);
        free(b->injected);
        b->injected = NULL;
    }
    return rc;
}

/* Takes in everything delivered since the last thought, then the cue for the next one (in chat
 * format: the thought becomes the assistant's message, what was observed the user's). */
static int listen(struct bj_brain *b)
{
    set_state(b, BJ_BRAIN_LISTENING);
    pthread_mutex_lock(&b->inbox_lock);
    struct inbox_msg *m = b->inbox_head;
    b->inbox_head = b->inbox_tail = NULL;
    b->inbox_bytes = 0;
    pthread_mutex_unlock(&b->inbox_lock);
    struct textbuf seen = {0};
    while (m) {
        struct inbox_msg *next = m->next;
        struct bj_event ev;
        event_init(b, &ev, BJ_EV_OBSERVE);
        bj_strlcpy(ev.from, m->from, sizeof ev.from);
        ev.text = m->text;
        emit(b, &ev);
        tb_put(&seen, m->text, strlen(m->text));
        free(m->text);
        free(m);
        m = next;
    }
    int rc;
    if (b->p.chat_template) {
        const char *user = seen.s ? seen.s + strspn(seen.s, "\n") : bj_prompt_chat_continue();
        rc = chat_extend(b, b->text.s ? b->text.s : "", user);
    } else {
        rc = seen.s ? queue_text(b, seen.s, false) : 0;
        if (rc == 0)
            rc = queue_cue(b);
    }
    free(seen.s);
    if (rc != 0) {
        bj_error("brain %s: cannot take in what it observed (%s)", b->p.cfg->id, strerror(-rc));
        return rc;
    }
    b->thought++;
    b->n_gen = 0;
    tb_reset(&b->text);
    set_state(b, BJ_BRAIN_THINKING);
    return 0;
}

static void publish_thought(struct bj_brain *b, bool complete)
{
    struct bj_event ev;
    event_init(b, &ev, BJ_EV_THOUGHT);
    ev.complete = complete;
    ev.text = b->text.s ? b->text.s : (char *)"";
    emit(b, &ev);
}

static int end_thought(struct bj_brain *b)
{
    publish_thought(b, true);
    b->last_at = b->thought_at;
    b->last_n = b->n_gen;
    return listen(b);
}

int bj_brain_accept(struct bj_brain *b, llama_token t)
{
    assert(b->state == BJ_BRAIN_THINKING);
    b->window_tokens++;
    if (b->n_gen == 0)
        b->thought_at = b->n_past;
    if (llama_vocab_is_eog(b->p.vocab, t))
        return end_thought(b);
    char piece[256], clean[3 * 256 + 8];
    int n = llama_token_to_piece(b->p.vocab, t, piece, sizeof piece, 0, false);
    if (n < 0)
        n = 0;
    size_t m = bj_utf8_feed(&b->utf8, piece, (size_t)n, clean);
    if (m > 0) {
        if (tb_put(&b->text, clean, m) != 0 || tb_put(&b->life, clean, m) != 0)
            return -ENOMEM;
        struct bj_event ev;
        event_init(b, &ev, BJ_EV_TOKEN);
        ev.text = clean;
        emit(b, &ev);
    }
    int rc = queue_token(b, t);
    if (rc != 0)
        return rc;
    b->n_gen++;
    if (b->p.pace > 0) { /* the average holds the pace; a late token does not make the next early */
        int64_t now = bj_now_us(), next = b->next_token_at + (int64_t)(1e6 / b->p.pace);
        b->next_token_at = next > now ? next : now;
    }
    bool blank_line = b->text.len >= 2 && strcmp(b->text.s + b->text.len - 2, "\n\n") == 0;
    if (b->n_gen >= b->p.cfg->sampling.max_tokens || (blank_line && b->n_gen >= MIN_TOKENS_BEFORE_BLANK_LINE))
        return end_thought(b);
    return 0;
}

void bj_brain_die(struct bj_brain *b, const char *cause, const char *detail)
{
    /* LOADING too: a first life whose prompt does not fit dies (PROMPT_ERROR), as the engine
     * does at start, like a resurrection that fails. */
    assert(b->state != BJ_BRAIN_DEAD);
    set_state(b, BJ_BRAIN_DYING);
    if (b->text.len > 0)
        publish_thought(b, false); /* last words: nothing observable is lost */
    bj_brain_dump_context(b);
    free(b->last_words);
    b->last_words = b->text.len > 0 ? strdup(b->text.s) : NULL;
    b->deaths++;
    b->kept = b->n_past < b->n_opening ? b->n_past : b->n_opening;
    /* The engine hands the step's events to the hive, which writes the deaths to
     * crash_reports.log and syncs once, before they are published: whoever saw the death can
     * find it there, even if the process is killed right after. */
    struct bj_event ev;
    event_init(b, &ev, BJ_EV_DEATH);
    bj_strlcpy(ev.cause, cause, sizeof ev.cause);
    ev.text = (char *)detail;
    emit(b, &ev);
    b->n_past = 0;
    b->n_pending = b->off_pending = 0;
    tb_reset(&b->text);
    b->resurrect_at = (b->p.clock ? b->p.clock(b->p.clock_ud) : bj_now_us()) + (int64_t)b->p.pause_ms * 1000;
    set_state(b, BJ_BRAIN_DEAD);
}

bool bj_brain_due(const struct bj_brain *b, int64_t now_us)
{
    return b->state == BJ_BRAIN_DEAD && !b->paused && now_us >= b->resurrect_at;
}

int64_t bj_brain_resurrect_at(const struct bj_brain *b) { return b->resurrect_at; }

int bj_brain_resurrect(struct bj_brain *b)
{
    assert(b->state == BJ_BRAIN_DEAD);
    set_state(b, BJ_BRAIN_RESURRECTING);
    struct bj_event ev;
    event_init(b, &ev, BJ_EV_RESURRECTION);
    ev.thought = 0;
    emit(b, &ev);
    return bj_brain_begin_life(b);
}

void bj_brain_set_prompts(struct bj_brain *b, const struct bj_prompts *prompts)
{
    if (prompts)
        b->p.prompts = prompts;
}

void bj_brain_set_paused(struct bj_brain *b, bool paused)
{
    b->paused = paused;
    if (paused && b->state == BJ_BRAIN_THINKING)
        set_state(b, BJ_BRAIN_PAUSED);
    else if (!paused && b->state == BJ_BRAIN_PAUSED)
        set_state(b, BJ_BRAIN_THINKING);
}

void bj_brain_deliver(struct bj_brain *b, const char *from, const char *text)
{
    struct inbox_msg *m = calloc(1, sizeof *m);
    if (!m || !(m->text = strdup(text))) {
        free(m);
        bj_error("brain %s: out of memory; a message from %s is lost", b->p.cfg->id, from);
        return;
    }
    bj_strlcpy(m->from, from, sizeof m->from);
    pthread_mutex_lock(&b->inbox_lock);
    if (b->inbox_tail)
        b->inbox_tail->next = m;
    else
        b->inbox_head = m;
    b->inbox_tail = m;
    b->inbox_bytes += strlen(m->text);
    /* It keeps at most about a jar's worth of unread news (a token is ~4 bytes of text): more
     * could not fit anyway, and a brain paused or dead for long neither grows without bound nor
     * wakes to a jar filled with stale news; the oldest goes first. */
    size_t cap = 4 * (size_t)b->p.jar_tokens;
    while (b->inbox_bytes > cap && b->inbox_head != b->inbox_tail) {
        struct inbox_msg *old = b->inbox_head;
        b->inbox_head = old->next;
        b->inbox_bytes -= strlen(old->text);
        free(old->text);
        free(old);
    }
    pthread_mutex_unlock(&b->inbox_lock);
}

void bj_brain_publish_status(struct bj_brain *b, int64_t now_us)
{
    int64_t dt = now_us - b->window_start;
    if (dt >= 1000000) {
        b->tok_s = (double)b->window_tokens * 1e6 / (double)dt;
        b->window_tokens = 0;
        b->window_start = now_us;
    }
    struct bj_event ev;
    event_init(b, &ev, BJ_EV_STATUS);
    bj_strlcpy(ev.state, k_state_names[b->state], sizeof ev.state);
    ev.tok_s = b->tok_s;
    emit(b, &ev);
}

void bj_brain_dump_context(const struct bj_brain *b)
{
    if (!b->p.dump_dir || !b->life.s)
        return;
    char path[4200];
    char name[BJ_NAME_MAX];
    bj_strlcpy(name, b->p.cfg->id, sizeof name);
    for (char *c = name; *c; c++) /* a lab copy's ARM/REP/BRAIN is one file name */
        if (*c == '/')
            *c = '_';
    snprintf(path, sizeof path, "%s/%s-life%u.txt", b->p.dump_dir, name, b->deaths + 1);
    FILE *f = fopen(path, "w");
    if (!f) {
        bj_warn("brain %s: cannot write %s", b->p.cfg->id, path);
        return;
    }
    fwrite(b->life.s, 1, b->life.len, f);
    fclose(f);
}

/* ---- lab interventions: the brain's side (engine/intervene.c edits the KV sequence) -------- */

int bj_brain_ctx(const struct bj_brain *b, const llama_token **tokens)
{
    *tokens = b->ctx;
    return b->cap_ctx < 0 ? -1 : b->n_past;
}

int bj_brain_opening_len(const struct bj_brain *b) { return b->n_opening; }

int bj_brain_opening(const struct bj_brain *b, const llama_token **tokens)
{
    *tokens = b->opening;
    return b->n_opening;
}

int bj_brain_adopt(struct bj_brain *b, int n)
{
    if (b->state != BJ_BRAIN_THINKING || b->n_past != 0 || b->off_pending != 0 || n <= 0 ||
        n >= b->n_pending || n > b->n_opening || memcmp(b->pending, b->opening, (size_t)n * sizeof *b->pending) != 0)
        return -EINVAL;
    bj_brain_consumed(b, n);
    return 0;
}
uint32_t bj_brain_thought(const struct bj_brain *b) { return b->thought; }

int bj_brain_last_thought(const struct bj_brain *b, int *p0)
{
    /* right after the thought, its last token may still wait to be decoded */
    int n = b->last_at + b->last_n <= b->n_past ? b->last_n : b->n_past - b->last_at;
    if (b->last_n <= 0 || n <= 0)
        return 0;
    *p0 = b->last_at;
    return n;
}

/* The life's text again, from what its memory holds and what it has yet to read. */
static int rebuild_life(struct bj_brain *b)
{
    int n = b->n_past + (b->n_pending - b->off_pending);
    llama_token *all = malloc(((size_t)n + 1) * sizeof *all);
    if (!all)
        return -ENOMEM;
    memcpy(all, b->ctx, (size_t)b->n_past * sizeof *all);
    memcpy(all + b->n_past, b->pending + b->off_pending, (size_t)(n - b->n_past) * sizeof *all);
    int cap = n * 16 + 16;
    char *text = malloc((size_t)cap);
    int len = text ? llama_detokenize(b->p.vocab, all, n, text, cap, false, true) : -1;
    free(all);
    if (len < 0) {
        free(text);
        return -ENOMEM;
    }
    tb_reset(&b->life);
    int rc = tb_put(&b->life, text, (size_t)len);
    free(text);
    return rc;
}

int bj_brain_forget(struct bj_brain *b, int p0, int n)
{
    if (b->cap_ctx < 0 || p0 < 0 || n <= 0 || p0 + n > b->n_past)
        return -EINVAL;
    memmove(b->ctx + p0, b->ctx + p0 + n, (size_t)(b->n_past - p0 - n) * sizeof *b->ctx);
    b->n_past -= n;
    if (b->last_at >= p0 + n)
        b->last_at -= n;
    else if (b->last_at + b->last_n > p0)
        b->last_n = 0; /* the last thought is (partly) gone */
    if (b->thought_at >= p0 + n)
        b->thought_at -= n;
    if (p0 < b->kept) /* its opening is no longer what the next life could keep */
        b->kept = p0;
    return rebuild_life(b);
}

int bj_brain_rewrite(struct bj_brain *b, int p0, const llama_token *tokens, int n)
{
    if (b->cap_ctx < 0 || p0 < 0 || p0 > b->n_past || n < 0)
        return -EINVAL;
    int tail = b->n_pending - b->off_pending;
    int total = n + tail;
    llama_token *np = malloc(((size_t)total + 1) * sizeof *np);
    if (!np)
        return -ENOMEM;
    memcpy(np, tokens, (size_t)n * sizeof *np);
    memcpy(np + n, b->pending + b->off_pending, (size_t)tail * sizeof *np);
    free(b->pending);
    b->pending = np;
    b->cap_pending = total + 1;
    b->n_pending = total;
    b->off_pending = 0;
    b->n_past = p0;
    if (p0 < b->kept)
        b->kept = p0;
    b->last_n = 0;
    return rebuild_life(b);
}

/* Right after a thought ended, nothing of the next cue decoded yet: the cue can be taken back
 * and queued again with what the lab adds, so that it counts from the very next thought. */
static int requeue_cue(struct bj_brain *b)
{
    if (b->p.chat_template || (b->state != BJ_BRAIN_THINKING && b->state != BJ_BRAIN_PAUSED) || b->n_gen != 0)
        return 0;
    const char *cue = bj_prompt_thought_cue();
    llama_token t[64];
    int n = llama_tokenize(b->p.vocab, cue, (int)strlen(cue), t, 64, false, false);
    size_t cl = strlen(cue);
    if (n <= 0 || n > b->n_pending - b->off_pending || memcmp(b->pending + b->n_pending - n, t, (size_t)n * sizeof *t) != 0 ||
        b->life.len < cl || strcmp(b->life.s + b->life.len - cl, cue) != 0)
        return 0;
    b->n_pending -= n;
    b->life.len -= cl;
    b->life.s[b->life.len] = '\0';
    int rc = queue_cue(b);
    return rc ? rc : 1;
}

static int lab_input(struct bj_brain *b, char **slot, const char *text)
{
    char *t = strdup(text);
    if (!t)
        return -ENOMEM;
    free(*slot);
    *slot = t;
    return requeue_cue(b);
}

int bj_brain_inject(struct bj_brain *b, const char *text) { return lab_input(b, &b->injected, text); }
int bj_brain_ask(struct bj_brain *b, const char *text) { return lab_input(b, &b->ask, text); }

void bj_brain_set_jar(struct bj_brain *b, long tokens) { b->p.jar_tokens = tokens; }

static int copy_tokens(llama_token **dst, int *cap, const llama_token *src, int n)
{
    if (n > *cap) {
        llama_token *d = realloc(*dst, ((size_t)n + 1) * sizeof *d);
        if (!d)
            return -ENOMEM;
        *dst = d;
        *cap = n + 1;
    }
    if (n > 0)
        memcpy(*dst, src, (size_t)n * sizeof **dst);
    return 0;
}

int bj_brain_take_mind(struct bj_brain *dst, const struct bj_brain *src)
{
    if (src->cap_ctx < 0 || src->p.chat_template || (src->state != BJ_BRAIN_THINKING && src->state != BJ_BRAIN_PAUSED))
        return -EINVAL;
    if (copy_tokens(&dst->ctx, &dst->cap_ctx, src->ctx, src->n_past) ||
        copy_tokens(&dst->pending, &dst->cap_pending, src->pending, src->n_pending) ||
        copy_tokens(&dst->opening, &dst->cap_opening, src->opening, src->n_opening))
        return -ENOMEM;
    dst->n_past = src->n_past;
    dst->n_pending = src->n_pending;
    dst->off_pending = src->off_pending;
    dst->n_opening = src->n_opening;
    dst->kept = src->kept;
    dst->sampling = src->sampling;
    dst->n_gen = src->n_gen;
    dst->thought = src->thought;
    dst->thought_at = src->thought_at;
    dst->last_at = src->last_at;
    dst->last_n = src->last_n;
    dst->utf8 = src->utf8;
    dst->next_token_at = src->next_token_at;
    tb_reset(&dst->text);
    tb_reset(&dst->life);
    if ((src->text.len && tb_put(&dst->text, src->text.s, src->text.len)) ||
        (src->life.len && tb_put(&dst->life, src->life.s, src->life.len)))
        return -ENOMEM;
    if (dst->state == BJ_BRAIN_DEAD || dst->state == BJ_BRAIN_LOADING)
        dst->state = BJ_BRAIN_THINKING; /* a twin with no life of its own takes this one */
    set_state(dst, dst->paused ? BJ_BRAIN_PAUSED : BJ_BRAIN_THINKING);
    return 0;
}

void bj_brain_emit(struct bj_brain *b, struct bj_event *ev)
{
    char brain[sizeof ev->brain];
    bj_strlcpy(brain, ev->brain, sizeof brain);
    enum bj_event_type type = ev->type;
    char *text = ev->text;
    char cause[sizeof ev->cause];
    bj_strlcpy(cause, ev->cause, sizeof cause);
    char from[sizeof ev->from];
    bj_strlcpy(from, ev->from, sizeof from);
    event_init(b, ev, type);
    bj_strlcpy(ev->cause, cause, sizeof ev->cause);
    bj_strlcpy(ev->from, from, sizeof ev->from);
    ev->text = text;
    emit(b, ev);
}
