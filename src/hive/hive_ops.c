/* hive_ops: the operator calls (see hive.h): each finds the brain's engine, refuses what the
 * brain cannot do now, queues the request for the engine's next step and publishes an OPERATOR
 * event saying who asked. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "hive_int.h"
#include "util.h"

/* ---- operator calls ---------------------------------------------------------------------- */

static void publish_operator(struct bj_hive *h, const char *brain, const char *action, const char *who,
                             const char *text)
{
    struct bj_event ev = {.type = BJ_EV_OPERATOR};
    bj_strlcpy(ev.brain, brain, sizeof ev.brain);
    bj_strlcpy(ev.cause, action, sizeof ev.cause);
    bj_strlcpy(ev.from, who ? who : "operator", sizeof ev.from);
    ev.text = (char *)text;
    bj_bus_publish(h->bus, &ev);
}

/* The engine and engine index of a started brain; -ENOENT when there is none. */
static int locate(struct bj_hive *h, const char *brain, struct bj_engine **e)
{
    if (!brain)
        return -EINVAL;
    int i = bj_spec_find_brain(h->s, brain);
    if (i < 0 || h->engine_ix[i] < 0)
        return -ENOENT;
    *e = h->models[h->model_of[i]].engine;
    return h->engine_ix[i];
}

bool bj_hive_refuses(struct bj_hive *h, const char *brain, const char *action, char *why, size_t len)
{
    struct bj_brain_view v;
    if (bj_hive_brain(h, brain, &v) != 0)
        return false; /* the call itself answers -ENOENT */
    bool dead = strcmp(v.state, "dead") == 0 || strcmp(v.state, "dying") == 0;
    if (!v.started)
        snprintf(why, len, "%s has not started (state: %s)", brain, v.state);
    else if (strcmp(action, "kill") == 0 && dead)
        snprintf(why, len, "%s is already dead (state: %s)", brain, v.state);
    else if (strcmp(action, "resurrect") == 0 && !dead)
        snprintf(why, len, "%s is alive (state: %s); only a dead brain can be resurrected", brain, v.state);
    else if (strcmp(action, "pause") == 0 && strcmp(v.state, "paused") == 0)
        snprintf(why, len, "%s is already paused", brain);
    else
        return false;
    return true;
}

/* locate, then -EBUSY when the brain cannot do action now (bj_hive_refuses). */
static int locate_for(struct bj_hive *h, const char *brain, const char *action, struct bj_engine **e)
{
    int ix = locate(h, brain, e);
    char why[160];
    if (ix >= 0 && bj_hive_refuses(h, brain, action, why, sizeof why))
        return -EBUSY;
    return ix;
}

int bj_hive_kill(struct bj_hive *h, const char *brain, const char *cause, const char *who)
{
    if (cause && bj_death_cause_of(cause) != BJ_DEATH_OPERATOR && bj_death_cause_of(cause) != BJ_DEATH_WATCHDOG)
        return -EINVAL;
    struct bj_engine *e;
    int ix = locate_for(h, brain, "kill", &e);
    if (ix < 0)
        return ix;
    int rc = bj_engine_kill(e, ix, cause ? cause : bj_death_cause_name(BJ_DEATH_OPERATOR));
    if (rc == 0)
        publish_operator(h, brain, "kill", who, cause);
    return rc;
}

int bj_hive_resurrect(struct bj_hive *h, const char *brain, const char *who)
{
    struct bj_engine *e;
    int ix = locate_for(h, brain, "resurrect", &e);
    if (ix < 0)
        return ix;
    int rc = bj_engine_resurrect(e, ix);
    if (rc == 0)
        publish_operator(h, brain, "resurrect", who, NULL);
    return rc;
}

static int pause_resume(struct bj_hive *h, const char *brain, bool paused, const char *who)
{
    struct bj_engine *e;
    int ix = locate(h, brain, &e);
    if (ix < 0)
        return ix;
    int rc = bj_engine_pause(e, ix, paused);
    if (rc == 0)
        publish_operator(h, brain, paused ? "pause" : "resume", who, NULL);
    return rc;
}

int bj_hive_pause(struct bj_hive *h, const char *brain, const char *who) { return pause_resume(h, brain, true, who); }
int bj_hive_resume(struct bj_hive *h, const char *brain, const char *who) { return pause_resume(h, brain, false, who); }

int bj_hive_say(struct bj_hive *h, const char *brain, const char *from, const char *text, const char *who)
{
    if (!text || !*text || !bj_utf8_valid(text, strlen(text)))
        return -EINVAL;
    struct bj_engine *e;
    int ix = locate(h, brain, &e);
    if (ix < 0)
        return ix;
    char *msg = bj_prompt_outside_voice(from && *from ? from : "an operator", text);
    if (!msg)
        return -ENOMEM;
    int rc = bj_engine_say(e, ix, from && *from ? from : "operator", msg);
    free(msg);
    if (rc == 0)
        publish_operator(h, brain, "say", who, text);
    return rc;
}

int bj_hive_intervene(struct bj_hive *h, const char *brain, const char *name, const char *who)
{
    char why[200];
    int rc = bj_spec_lab_refuses(h->s, brain, name, why, sizeof why);
    if (rc)
        return rc;
    struct bj_engine *e;
    int ix = locate(h, brain, &e);
    if (ix < 0)
        return ix;
    rc = bj_engine_intervene(e, ix, name, who);
    if (rc == 0)
        publish_operator(h, brain, "intervene", who, name);
    return rc;
}

