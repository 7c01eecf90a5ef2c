/* spec: see spec.h. */
#include "spec.h"

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
