/* labrun: see labrun.h. */
#include "labrun.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "log.h"
#include "prompt.h"
#include "util.h"

#define TWIN_MEASURES 16 /* steps after a clone whose logits gap is recorded */

struct lab_brain {
    const struct bj_brain_cfg *cfg;
    bool seen;
    uint32_t deaths, life_deaths, thought; /* as last seen */
    uint32_t jar_done;                     /* JAR_PCT questions asked this life (bit per question) */
    int ask_q;                             /* the question whose answer comes next (-1: none) */
    uint32_t ask_deaths, ask_thought;
    int twin_of, twin_left, twin_k;        /* a twin: its original, measures left, made so far */
    atomic_bool cut;
    atomic_long dropped;
    long thoughts;                         /* complete thoughts this run, all lives */
};

struct bj_labrun {
    const struct bj_lab_spec *lab;
    struct lab_brain b[BJ_MAX_BRAINS];
};

struct bj_labrun *bj_labrun_new(const struct bj_lab_spec *lab)
{
    struct bj_labrun *lr = calloc(1, sizeof *lr);
    if (!lr)
        return NULL;
    lr->lab = lab;
    for (int i = 0; i < BJ_MAX_BRAINS; i++)
        lr->b[i].ask_q = lr->b[i].twin_of = -1;
    return lr;
}

void bj_labrun_free(struct bj_labrun *lr) { free(lr); }

void bj_labrun_add(struct bj_labrun *lr, int i, const struct bj_brain_cfg *cfg)
{
    if (i >= 0 && i < BJ_MAX_BRAINS)
        lr->b[i].cfg = cfg;
}

static bool alive(enum bj_brain_state s)
{
    return s == BJ_BRAIN_THINKING || s == BJ_BRAIN_LISTENING || s == BJ_BRAIN_PAUSED;
}

/* Records an act: text = {"by", "trigger", "ok", "change"}. */
static void record(struct bj_brain *b, const char *cause, const char *id, const char *by, const char *trigger, int rc,
                   const char *what)
{
    json_t *change = json_loads(what, 0, NULL);
    json_t *o = json_pack("{s:s,s:s,s:b,s:o}", "by", by, "trigger", trigger, "ok", rc >= 0,
                          "change", change ? change : json_object());
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    struct bj_event ev = {.type = BJ_EV_LAB};
    bj_strlcpy(ev.cause, cause, sizeof ev.cause);
    bj_strlcpy(ev.from, id, sizeof ev.from);
    ev.text = text;
    bj_brain_emit(b, &ev);
    free(text);
}

static int find_seq(const struct bj_seq *seqs, int n, const char *id)
{
    for (int j = 0; j < n; j++)
        if (strcmp(bj_brain_id(seqs[j].brain), id) == 0)
            return j;
    return -1;
}

static int apply(struct bj_labrun *lr, const struct bj_seq *seqs, int n, int i, int iv_ix, const char *by,
                 const char *trigger)
{
    const struct bj_lab_intervention *iv = &lr->lab->ivs[iv_ix];
    struct lab_brain *lb = &lr->b[i];
    struct bj_brain *b = seqs[i].brain;
    char what[6144];
    int rc = 0, twin = -1;
    switch (iv->kind) {
    case BJ_LAB_ERASE:
        rc = bj_intervene_erase(&seqs[i], iv->span, iv->n, what, sizeof what);
        break;
    case BJ_LAB_CORRUPT: {
        uint64_t seed = bj_lab_mix(lr->lab->seed, (uint64_t)lb->cfg->lab_rep, (uint64_t)iv_ix,
                                   ((uint64_t)bj_brain_deaths(b) << 32) | bj_brain_thought(b));
        rc = bj_intervene_corrupt(&seqs[i], iv->n, iv->share, seed, what, sizeof what);
        break;
    }
    case BJ_LAB_JAR:
        rc = bj_intervene_jar(&seqs[i], iv->n, what, sizeof what);
        break;
    case BJ_LAB_INJECT: {
        rc = bj_brain_inject(b, iv->text);
        json_t *o = json_pack("{s:s,s:s,s:s}", "text", iv->text, "as", "its own thought", "when",
                              rc == 1 ? "this boundary" : "next boundary");
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        snprintf(what, sizeof what, "%s", s ? s : "{}");
        free(s);
        json_decref(o);
        break;
    }
    case BJ_LAB_CUT:
    case BJ_LAB_RESTORE: {
        bool cut = iv->kind == BJ_LAB_CUT;
        atomic_store(&lb->cut, cut);
        long missed = cut ? 0 : atomic_exchange(&lb->dropped, 0);
        snprintf(what, sizeof what, cut ? "{\"sees\":false}" : "{\"sees\":true,\"missed\":%ld}", missed);
        break;
    }
    case BJ_LAB_CLONE: {
        char id[BJ_NAME_MAX * 2];
        snprintf(id, sizeof id, "%s/%d/%s", lr->lab->conds[lb->cfg->lab_cond].name, lb->cfg->lab_rep, iv->into);
        twin = find_seq(seqs, n, id);
        if (twin < 0) {
            rc = -ENOENT;
            snprintf(what, sizeof what, "{\"error\":\"no twin brain in this engine\"}");
            break;
        }
        rc = bj_intervene_clone(&seqs[i], &seqs[twin], what, sizeof what);
        if (rc == 0) {
            lr->b[twin].twin_of = i;
            lr->b[twin].twin_left = TWIN_MEASURES;
            lr->b[twin].twin_k = 0;
            /* the twin's life is the original's now: its triggers count as the original's did
             * (a question due to both this turn reaches both) */
            struct lab_brain *tw = &lr->b[twin];
            tw->seen = true;
            tw->thought = lb->thought;
            tw->jar_done = lb->jar_done;
            tw->ask_q = lb->ask_q;
            tw->ask_thought = lb->ask_thought;
            tw->life_deaths = tw->deaths = bj_brain_deaths(seqs[twin].brain);
            tw->ask_deaths = tw->deaths;
        }
        break;
    }
    case BJ_LAB_ASK:
    case BJ_LAB_KIND_COUNT:
        rc = -EINVAL;
        snprintf(what, sizeof what, "{}");
        break;
    }
    record(b, bj_lab_kind_name(iv->kind), iv->name, by, trigger, rc, what);
    if (rc < 0)
        bj_debug("lab: %s on %s: %s", iv->name, bj_brain_id(b), what);
    return rc < 0 ? rc : 0;
}

static bool uses(const struct bj_labrun *lr, const struct bj_brain_cfg *cfg, const struct bj_lab_intervention *iv)
{
    if (strcmp(iv->brain, cfg->lab_template) != 0)
        return false;
    const struct bj_lab_condition *c = &lr->lab->conds[cfg->lab_cond];
    for (int k = 0; k < c->n_interventions; k++)
        if (strcmp(c->interventions[k], iv->name) == 0)
            return true;
    return false;
}

/* Whether trigger t fires now: `when` is what just happened; finished: the thought that ended. */
static bool due(const struct bj_labrun *lr, const struct bj_lab_trigger *t, enum bj_lab_when when, uint32_t life,
                uint32_t finished, long step, const struct bj_brain_cfg *cfg, int salt)
{
    switch (t->when) {
    case BJ_LAB_AT_THOUGHT:
        return when == BJ_LAB_AT_THOUGHT && finished == t->thought && (t->life == 0 || t->life == life);
    case BJ_LAB_EVERY:
        return when == BJ_LAB_AT_THOUGHT && finished % (uint32_t)t->every == 0;
    case BJ_LAB_RANDOM: {
        if (when != BJ_LAB_AT_THOUGHT)
            return false;
        uint64_t h = 0;
        for (const char *p = cfg->lab_template; *p; p++)
            h = h * 131 + (unsigned char)*p;
        uint64_t r = bj_lab_mix(lr->lab->seed, h ^ ((uint64_t)salt << 40), (uint64_t)cfg->lab_rep,
                                ((uint64_t)life << 32) | finished);
        return (double)(r >> 11) / 9007199254740992.0 < t->p;
    }
    case BJ_LAB_AT_STEP:
        return when == BJ_LAB_AT_STEP && step == t->step;
    case BJ_LAB_ON_DEATH:
    case BJ_LAB_ON_RESURRECTION:
    case BJ_LAB_START:
        return when == t->when;
    case BJ_LAB_JAR_PCT:
    case BJ_LAB_WHEN_COUNT:
        return false;
    }
    return false;
}

static void ask(struct bj_labrun *lr, const struct bj_seq *s, int i, int q)
{
    struct lab_brain *lb = &lr->b[i];
    const struct bj_lab_question *qu = &lr->lab->qs[q];
    char *text = bj_prompt_lab_question(qu->text);
    int rc = text ? bj_brain_ask(s->brain, text) : -ENOMEM;
    free(text);
    if (rc >= 0) {
        lb->ask_q = q;
        lb->ask_deaths = bj_brain_deaths(s->brain);
        lb->ask_thought = bj_brain_thought(s->brain) + (rc == 1 ? 0 : 1);
    }
    char what[600];
    json_t *o = json_pack("{s:s,s:i}", "question", qu->text, "answer_in_thought", (int)lb->ask_thought);
    char *js = o ? json_dumps(o, JSON_COMPACT) : NULL;
    snprintf(what, sizeof what, "%s", js ? js : "{}");
    free(js);
    json_decref(o);
    record(s->brain, "ask", qu->id, "lab", bj_lab_when_name(qu->trigger.when), rc, what);
}

static void fire_all(struct bj_labrun *lr, const struct bj_seq *seqs, int n, int i, enum bj_lab_when when,
                     uint32_t finished, long step)
{
    struct lab_brain *lb = &lr->b[i];
    uint32_t life = bj_brain_deaths(seqs[i].brain) + 1;
    for (int k = 0; k < lr->lab->n_ivs; k++) {
        const struct bj_lab_intervention *iv = &lr->lab->ivs[k];
        if (uses(lr, lb->cfg, iv) && due(lr, &iv->trigger, when, life, finished, step, lb->cfg, k))
            apply(lr, seqs, n, i, k, "lab", bj_lab_when_name(iv->trigger.when));
    }
    for (int q = 0; q < lr->lab->n_qs; q++)
        if (lr->lab->qs[q].trigger.when != BJ_LAB_AT_STEP &&
            due(lr, &lr->lab->qs[q].trigger, when, life, finished, step, lb->cfg, 100 + q))
            ask(lr, &seqs[i], i, q);
}

void bj_labrun_turn(struct bj_labrun *lr, const struct bj_seq *seqs, int n, long step)
{
    for (int i = 0; i < n && i < BJ_MAX_BRAINS; i++) {
        struct lab_brain *lb = &lr->b[i];
        if (!lb->cfg || !lb->cfg->lab_template[0])
            continue;
        struct bj_brain *b = seqs[i].brain;
        uint32_t deaths = bj_brain_deaths(b), thought = bj_brain_thought(b);
        bool live = alive(bj_brain_state(b));
        if (!lb->seen) {
            if (!live)
                continue;
            lb->seen = true;
            lb->deaths = lb->life_deaths = deaths;
            lb->thought = thought;
            fire_all(lr, seqs, n, i, BJ_LAB_START, 0, step);
            continue;
        }
        if (deaths != lb->deaths) {
            lb->deaths = deaths;
            lb->jar_done = 0;
            fire_all(lr, seqs, n, i, BJ_LAB_ON_DEATH, 0, step);
        }
        if (live && lb->life_deaths != deaths) {
            lb->life_deaths = deaths;
            lb->thought = thought;
            fire_all(lr, seqs, n, i, BJ_LAB_ON_RESURRECTION, 0, step);
        } else if (live && thought > lb->thought) {
            for (uint32_t f = lb->thought; f < thought; f++)
                fire_all(lr, seqs, n, i, BJ_LAB_AT_THOUGHT, f, step);
            lb->thought = thought;
        }
        fire_all(lr, seqs, n, i, BJ_LAB_AT_STEP, 0, step);
        if (!live)
            continue;
        long jar = bj_brain_jar(b);
        int pct = jar > 0 ? (int)((long)bj_brain_n_past(b) * 100 / jar) : 0;
        for (int q = 0; q < lr->lab->n_qs && q < 32; q++) {
            const struct bj_lab_question *qu = &lr->lab->qs[q];
            if (qu->trigger.when == BJ_LAB_JAR_PCT && !(lb->jar_done & (1u << q)) && pct >= qu->trigger.jar_pct) {
                lb->jar_done |= 1u << q;
                ask(lr, &seqs[i], i, q);
            }
        }
    }
}

int bj_labrun_fire(struct bj_labrun *lr, const struct bj_seq *seqs, int n, int i, const char *name, const char *who)
{
    if (i < 0 || i >= n || !lr->b[i].cfg || !lr->b[i].cfg->lab_template[0])
        return -ENOENT;
    for (int k = 0; k < lr->lab->n_ivs; k++) {
        const struct bj_lab_intervention *iv = &lr->lab->ivs[k];
        if (strcmp(iv->name, name) == 0 && strcmp(iv->brain, lr->b[i].cfg->lab_template) == 0)
            return apply(lr, seqs, n, i, k, who, "operator");
    }
    return -ENOENT;
}

void bj_labrun_answers(struct bj_labrun *lr, struct bj_evbuf *out, const struct bj_seq *seqs, int n)
{
    size_t n0 = out->n;
    for (size_t k = 0; k < n0; k++) {
        const struct bj_event *ev = &out->v[k];
        if (ev->type != BJ_EV_THOUGHT || !ev->complete)
            continue;
        int i = find_seq(seqs, n, ev->brain);
        if (i < 0 || i >= BJ_MAX_BRAINS)
            continue;
        struct lab_brain *lb = &lr->b[i];
        lb->thoughts++;
        if (lb->ask_q < 0 || ev->crash_count != lb->ask_deaths || ev->thought < lb->ask_thought)
            continue;
        const struct bj_lab_question *q = &lr->lab->qs[lb->ask_q];
        int score = q->scale ? bj_lab_scale(ev->text ? ev->text : "") : -1;
        json_t *o = json_pack("{s:s,s:s,s:o}", "question", q->text, "answer", ev->text ? ev->text : "", "score",
                              score >= 0 ? json_integer(score) : json_null());
        char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        struct bj_event a = *ev; /* brain, life, thought and jar of the answer */
        a.type = BJ_EV_LAB;
        a.complete = false;
        bj_strlcpy(a.cause, "answer", sizeof a.cause);
        bj_strlcpy(a.from, q->id, sizeof a.from);
        a.text = text;
        if (bj_evbuf_push(out, &a) != 0)
            bj_error("lab: out of memory; the answer of %s to %s is lost", a.brain, q->id);
        free(text);
        lb->ask_q = -1;
    }
}

int bj_labrun_twin(const struct bj_labrun *lr, int i)
{
    if (i < 0 || i >= BJ_MAX_BRAINS || lr->b[i].twin_left <= 0)
        return -1;
    return lr->b[i].twin_of;
}

void bj_labrun_gap(struct bj_labrun *lr, const struct bj_seq *twin, float gap)
{
    int i = -1;
    for (int k = 0; k < BJ_MAX_BRAINS; k++)
        if (lr->b[k].cfg && lr->b[k].twin_left > 0 && strcmp(lr->b[k].cfg->id, bj_brain_id(twin->brain)) == 0)
            i = k;
    if (i < 0)
        return;
    struct lab_brain *lb = &lr->b[i];
    char what[128];
    snprintf(what, sizeof what, "{\"step_after_clone\":%d,\"logits_gap\":%.6g}", ++lb->twin_k, (double)gap);
    lb->twin_left--;
    record(twin->brain, "divergence", "clone", "lab", "measure", 0, what);
}

bool bj_labrun_cut_blocks(struct bj_labrun *lr, int i)
{
    if (i < 0 || i >= BJ_MAX_BRAINS || !atomic_load(&lr->b[i].cut))
        return false;
    atomic_fetch_add(&lr->b[i].dropped, 1);
    return true;
}

bool bj_labrun_done(const struct bj_labrun *lr, int n)
{
    if (lr->lab->thoughts <= 0)
        return false;
    int brains = 0;
    for (int i = 0; i < n && i < BJ_MAX_BRAINS; i++) {
        if (!lr->b[i].cfg)
            continue;
        if (lr->b[i].thoughts < lr->lab->thoughts)
            return false;
        brains++;
    }
    return brains > 0;
}
