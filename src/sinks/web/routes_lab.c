/* routes_lab: the Lab page's routes (docs/API.md): GET /api/lab (the experiment, its arms side
 * by side, the interventions and answers so far) and POST /api/lab/interventions (an operator
 * fires a defined intervention at a brain, through the hive). Web thread only. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lab.h"
#include "log.h"
#include "spec.h"
#include "util.h"
#include "routes.h"

#define LAB_EVENTS_MAX 200 /* lab events /api/lab lists, newest first */

int routes_lab_check(const struct bj_hive_spec *s, const char *brain, const char *name, char *why, size_t len)
{
    int rc = bj_spec_lab_refuses(s, brain, name, why, len);
    return rc == 0 ? 0 : rc == -ENOENT ? 404 : 409;
}

/* One arm: its brains' totals, from the snapshot and the view. */
static json_t *arm_json(const struct bj_hive_spec *s, int c, const struct bj_hive_snapshot *snap,
                        const struct web_view *v)
{
    const struct bj_lab_condition *cond = &s->lab.conds[c];
    int alive = 0, n = 0;
    json_int_t lives = 0, deaths = 0, thoughts = 0, tokens = 0;
    json_t *brains = json_array();
    for (int i = 0; i < s->n_brains && i < snap->n_brains; i++) {
        if (s->brains[i].lab_cond != c || !s->brains[i].lab_template[0])
            continue;
        const struct bj_brain_view *bv = &snap->brains[i];
        const struct thought_ring *r = web_view_thoughts(v, i);
        n++;
        alive += bv->started && strcmp(bv->state, "dead") != 0;
        lives += bv->started ? bv->deaths + 1 : 0;
        deaths += bv->deaths;
        thoughts += r ? (json_int_t)r->total : 0;
        tokens += (json_int_t)bv->tokens;
        json_array_append_new(brains, json_pack("{s:s,s:s,s:i,s:i,s:I,s:i}", "id", bv->id, "state", bv->state,
                                                "life", (int)bv->life, "deaths", (int)bv->deaths, "thoughts",
                                                r ? (json_int_t)r->total : 0, "replicate", s->brains[i].lab_rep));
    }
    json_t *ivs = json_array();
    for (int k = 0; k < cond->n_interventions; k++)
        json_array_append_new(ivs, json_string(cond->interventions[k]));
    return json_pack("{s:s,s:i,s:i,s:I,s:I,s:I,s:I,s:o,s:o}", "name", cond->name, "brains_n", n, "alive", alive,
                     "lives", lives, "deaths", deaths, "thoughts", thoughts, "tokens", tokens, "interventions", ivs,
                     "brains", brains);
}

json_t *routes_lab_json(const struct bj_hive_spec *s, const struct bj_hive_snapshot *snap, const struct web_view *v)
{
    if (!s || !s->lab.on)
        return json_pack("{s:b}", "on", 0);
    const struct bj_lab_spec *L = &s->lab;
    json_t *arms = json_array();
    for (int c = 0; c < L->n_conds; c++)
        json_array_append_new(arms, arm_json(s, c, snap, v));
    json_t *defs = json_array();
    for (int k = 0; k < L->n_ivs; k++)
        json_array_append_new(defs, json_pack("{s:s,s:s,s:s,s:s}", "name", L->ivs[k].name, "kind",
                                              bj_lab_kind_name(L->ivs[k].kind), "brain", L->ivs[k].brain, "when",
                                              bj_lab_when_name(L->ivs[k].trigger.when)));
    json_t *qs = json_array();
    for (int q = 0; q < L->n_qs; q++)
        json_array_append_new(qs, json_pack("{s:s,s:s,s:b}", "id", L->qs[q].id, "text", L->qs[q].text, "scale",
                                            L->qs[q].scale));
    /* Interventions and answers as they came (the view's log lines of lab events), newest first. */
    json_t *events = json_array();
    for (int i = 0, n = web_view_logs(v); i < n && json_array_size(events) < LAB_EVENTS_MAX; i++) {
        const struct log_rec *l = web_view_log(v, i);
        if (strcmp(l->level, "lab") != 0 || !l->data)
            continue;
        json_t *e = json_deep_copy(l->data);
        json_object_set_new(e, "brain", json_string(l->brain));
        json_object_set_new(e, "time", web_view_iso_or_null(l->time_us));
        json_object_set_new(e, "time_us", json_integer(l->time_us));
        json_array_append_new(events, e);
    }
    return json_pack("{s:b,s:s,s:s,s:I,s:i,s:I,s:f,s:o,s:o,s:o,s:o}", "on", 1, "name", L->name, "question",
                     L->question, "seed", (json_int_t)L->seed, "replicates", L->replicates, "thoughts",
                     (json_int_t)L->thoughts, "duration_s", L->duration_s, "arms", arms, "interventions", defs,
                     "questions", qs, "events", events);
}

void routes_lab_state(struct web_ctx *w, struct web_resp *rs)
{
    struct bj_hive_snapshot snap;
    if (bj_hive_snapshot(w->hive, &snap) != 0) {
        routes_err(rs, 503, "Out of memory");
        return;
    }
    routes_json(rs, 200, routes_lab_json(bj_hive_spec_of(w->hive), &snap, w->view));
    bj_hive_snapshot_free(&snap);
}

void routes_lab_intervene(struct web_ctx *w, struct web_req *rq, struct web_resp *rs)
{
    json_t *o = routes_body(rq, rs);
    if (!o)
        return;
    const char *name = json_string_value(json_object_get(o, "name"));
    const char *brain = json_string_value(json_object_get(o, "brain"));
    if (!name || !brain || !*name || !*brain) {
        json_decref(o);
        routes_err(rs, 400, "'name' (an [intervention NAME] of the experiment) and 'brain' must be strings");
        return;
    }
    char why[200];
    int st = routes_lab_check(bj_hive_spec_of(w->hive), brain, name, why, sizeof why);
    if (st) {
        json_decref(o);
        routes_err(rs, st, why);
        return;
    }
    char who[96];
    snprintf(who, sizeof who, "web:%s", rq->user);
    int rc = bj_hive_intervene(w->hive, brain, name, who);
    if (rc == 0) {
        bj_info("web: %s fired intervention %s at %s", who, name, brain);
        routes_json(rs, 202, json_pack("{s:b,s:s,s:s}", "ok", 1, "name", name, "brain", brain));
    } else if (rc == -ENOENT) {
        routes_err(rs, 404, "Brain not found");
    } else {
        routes_err(rs, 409, "The intervention cannot be fired now");
    }
    json_decref(o);
}
