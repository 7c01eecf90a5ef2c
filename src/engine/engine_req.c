/* engine_req: what other threads ask of an engine (kill, pause, resume, resurrect, say, new
 * prompts, an intervention, words to deliver), queued under the engine's lock and applied by its
 * own thread between steps (engine_int.h). */
#include "engine.h"
#include "engine_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "labrun.h"
#include "util.h"

void engine_apply_requests(struct bj_engine *e)
{
    pthread_mutex_lock(&e->lock);
    struct request *r = e->req_head;
    e->req_head = e->req_tail = NULL;
    pthread_mutex_unlock(&e->lock);
    while (r) {
        struct request *next = r->next;
        struct bj_brain *b = e->brains[r->brain];
        enum bj_brain_state s = bj_brain_state(b);
        switch (r->kind) {
        case REQ_KILL:
            if (s != BJ_BRAIN_DEAD && s != BJ_BRAIN_LOADING)
                engine_kill_brain(e, r->brain, r->cause,
                           bj_death_cause_of(r->cause) == BJ_DEATH_OPERATOR ? "killed by an operator" : "killed by the watchdog");
            break;
        case REQ_RESURRECT:
            if (s != BJ_BRAIN_DEAD)
                break;
            if (bj_brain_resurrect(b) != 0)
                engine_kill_brain(e, r->brain, "PROMPT_ERROR", "its new system prompt does not fit in its jar");
            else {
                engine_trim_memory(e, r->brain);
                e->life_start[r->brain] = bj_now_us();
                e->life_step[r->brain] = engine_this_step(e);
                e->opening[r->brain] = true;
            }
            break;
        case REQ_SAY:
            bj_brain_deliver(b, r->from, r->text);
            break;
        case REQ_LAB:
            if (e->lab)
                bj_labrun_fire(e->lab, e->seqs, e->n_brains, r->brain, r->text, r->from);
            break;
        case REQ_PROMPTS:
            bj_brain_set_prompts(b, r->prompts);
            break;
        case REQ_PAUSE:
        case REQ_RESUME:
            bj_brain_set_paused(b, r->kind == REQ_PAUSE);
            break;
        }
        free(r->text);
        free(r);
        r = next;
    }
}

static void enqueue(struct bj_engine *e, struct request *r)
{
    pthread_mutex_lock(&e->lock);
    if (e->req_tail)
        e->req_tail->next = r;
    else
        e->req_head = r;
    e->req_tail = r;
    pthread_cond_signal(&e->cond);
    pthread_mutex_unlock(&e->lock);
}

static int post(struct bj_engine *e, int idx, enum req_kind kind, const char *cause, const char *from,
                const char *text)
{
    if (idx < 0 || idx >= e->n_brains)
        return -ENOENT;
    struct request *r = calloc(1, sizeof *r);
    if (!r || (text && !(r->text = strdup(text)))) {
        free(r);
        return -ENOMEM;
    }
    r->kind = kind;
    r->brain = idx;
    bj_strlcpy(r->cause, cause ? cause : bj_death_cause_name(BJ_DEATH_OPERATOR), sizeof r->cause);
    if (from)
        bj_strlcpy(r->from, from, sizeof r->from);
    enqueue(e, r);
    return 0;
}

int bj_engine_kill(struct bj_engine *e, int brain, const char *cause)
{
    return post(e, brain, REQ_KILL, cause, NULL, NULL);
}

int bj_engine_pause(struct bj_engine *e, int brain, bool paused)
{
    return post(e, brain, paused ? REQ_PAUSE : REQ_RESUME, NULL, NULL, NULL);
}

int bj_engine_resurrect(struct bj_engine *e, int brain)
{
    return post(e, brain, REQ_RESURRECT, NULL, NULL, NULL);
}

int bj_engine_intervene(struct bj_engine *e, int brain, const char *name, const char *who)
{
    if (!e->lab)
        return -ENOENT;
    return post(e, brain, REQ_LAB, NULL, who, name);
}

int bj_engine_say(struct bj_engine *e, int brain, const char *from, const char *text)
{
    return post(e, brain, REQ_SAY, NULL, from, text);
}

int bj_engine_set_prompts(struct bj_engine *e, const struct bj_prompts *prompts)
{
    for (int i = 0; i < e->n_brains; i++) {
        struct request *r = calloc(1, sizeof *r);
        if (!r)
            return -ENOMEM;
        *r = (struct request){.kind = REQ_PROMPTS, .brain = i, .prompts = prompts};
        enqueue(e, r);
    }
    return 0;
}

int bj_engine_deliver(struct bj_engine *e, int brain, const char *from, const char *text)
{
    if (brain < 0 || brain >= e->n_brains)
        return -ENOENT;
    if (e->lab && bj_labrun_cut_blocks(e->lab, brain))
        return 0; /* the lab cut what it sees */
    bj_brain_deliver(e->brains[brain], from, text); /* the inbox has its own lock */
    return 0;
}

void bj_engine_throttle(struct bj_engine *e, int ms)
{
    atomic_store(&e->throttle_ms, ms);
}
