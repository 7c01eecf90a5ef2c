/* hive_int: what the hive's files share (hive.c: set-up, routing, the view, supervision;
 * hive_ops.c: the operator calls). Not for use outside src/hive. */
#ifndef BJ_HIVE_INT_H
#define BJ_HIVE_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "budget.h"
#include "estimate.h"
#include "hive.h"
#include "jar.h"
#include "journal.h"
#include "modelinfo.h"
#include "prompt.h"
#include "sysmem.h"

struct model_slot {
    char path[PATH_MAX];
    const char *chat_template; /* the model's own, or "chatml" when it has none */
    struct bj_modelinfo info;
    struct llama_model *model;  /* loaded once; outlives every engine built on it */
    /* Atomic: the supervisor swaps in a rebuilt engine while other threads route to it. */
    struct bj_engine *_Atomic engine;
};

/* Engines given up by the supervisor, freed once their thread has come back. */
struct grave {
    struct grave *next;
    struct bj_engine *engine;
    int model;
};

struct bj_hive {
    struct bj_hive_params p;
    const struct bj_hive_spec *s;
    struct bj_bus *bus;
    struct bj_prompts *prompts;
    struct bj_prompts *old_prompts[8]; /* replaced by SIGHUP; brains may still read them until their next life */
    int n_old_prompts;
    struct model_slot *models; /* n_models; at most one per brain */
    int n_models;
    int *model_of;             /* brain -> model slot */
    int *engine_ix;            /* brain -> index in its engine; -1: not started */
    struct bj_jar *jars;
    uint32_t *initial_deaths;
    struct bj_journal *journal;
    int done_fd;
    atomic_int engines_done;
    bool running;
    /* memory budget: the estimate (made once), the facts it was checked against, the ledger */
    struct bj_est_hive *est;
    struct bj_sysmem_paths mem_paths;
    struct bj_sysmem sm;
    struct bj_gpu_info gpu;
    struct bj_budget_settings budget_settings;
    struct bj_budget_manager *budget;
    char *budget_report;
    /* the view: fed by a bus tap, read by snapshots */
    pthread_mutex_t view_lock;
    struct bj_brain_view *views;
    int64_t started_us;
    uint64_t deaths, tokens;
    /* supervision (main thread) */
    struct grave *graveyard;
    int64_t restarts[5];       /* monotonic times of the last restarts (intensity limit) */
    int n_restarts;
};

#endif
