/* spec: see spec.h. */
#include "spec.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *const k_schedules[] = {"auto", "batched", "parallel"};

const char *bj_schedule_name(enum bj_schedule s) { return k_schedules[s]; }

int bj_schedule_parse(const char *name, enum bj_schedule *out)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, k_schedules[i]) == 0) {
            *out = (enum bj_schedule)i;
            return 0;
        }
    return -1;
}

const char *bj_spec_brain_model(const struct bj_hive_spec *s, const struct bj_brain_cfg *b)
{
    return b->model[0] ? b->model : s->model;
}

int bj_spec_find_brain(const struct bj_hive_spec *s, const char *id)
{
    for (int i = 0; i < s->n_brains; i++)
        if (strcmp(s->brains[i].id, id) == 0)
            return i;
    return -1;
}

bool bj_spec_watches(const struct bj_brain_cfg *w, const char *id)
{
    if (strcmp(w->id, id) == 0)
        return false;
    if (w->watches_all)
        return true;
    for (int i = 0; i < w->n_watches; i++)
        if (strcmp(w->watches[i], id) == 0)
            return true;
    return false;
}

const char *bj_spec_brain_name(const struct bj_brain_cfg *b)
{
    return b->lab_template[0] ? b->lab_template : b->id;
}

int bj_spec_lab_refuses(const struct bj_hive_spec *s, const char *brain, const char *name, char *why, size_t len)
{
    if (!s || !s->lab.on) {
        snprintf(why, len, "This run is not an experiment (no [experiment] section)");
        return -EPERM;
    }
    int k = name ? bj_lab_find_intervention(&s->lab, name) : -1;
    if (k < 0) {
        snprintf(why, len, "No intervention called '%.40s' in the experiment", name ? name : "");
        return -ENOENT;
    }
    int b = brain ? bj_spec_find_brain(s, brain) : -1;
    if (b < 0) {
        snprintf(why, len, "Brain not found");
        return -ENOENT;
    }
    if (strcmp(s->lab.ivs[k].brain, s->brains[b].lab_template) != 0) {
        snprintf(why, len, "Intervention '%.40s' acts on copies of %.31s, not on %.31s", name, s->lab.ivs[k].brain,
                 brain);
        return -EINVAL;
    }
    return 0;
}
