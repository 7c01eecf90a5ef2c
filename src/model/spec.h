/* spec: what a hive is made of (its brains and how they run), with no application concerns.
 *
 * The app layer fills it from flags, mode presets and hive files (app/config.c); the plan, the
 * engine, the estimate, the budget and the hive read it. It holds no pointers: after the app has
 * checked it, it is read-only for the whole run and may be read from any thread. */
#ifndef BJ_SPEC_H
#define BJ_SPEC_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ggml.h>

#include "lab.h"
#include "split.h"

/* llama.cpp's own limit on sequences per context (LLAMA_MAX_SEQ): one sequence per brain. */
#define BJ_MAX_BRAINS 256
#define BJ_MAX_WATCHES 16
#define BJ_NAME_MAX 32

/* The pace of a brain on the embedded voice: about a reader's speed (3-4 words a second), so that
 * a life of a few hundred tokens lasts long enough to be watched. */
#define BJ_VOICE_PACE 5.0
/* The embedded voice's jars are clamped to this many tokens (not to its longer training context),
 * so that at its pace a life stays about a minute long (docs/VOICE.md). */
#define BJ_VOICE_JAR_TOKENS 512u
#define BJ_PACE_DEFAULT (-1.0)

enum bj_schedule { BJ_SCHED_AUTO, BJ_SCHED_BATCHED, BJ_SCHED_PARALLEL };

struct bj_sampling {
    float temp, top_p, min_p;
    int top_k;
    int max_tokens; /* per thought */
    uint32_t seed;
};

struct bj_brain_cfg {
    char id[BJ_NAME_MAX];   /* SUBJECT, OBSERVER, GOD or any [A-Za-z0-9_-] name */
    char role[BJ_NAME_MAX]; /* prompt file: prompts/<role>.txt */
    char model[PATH_MAX];   /* empty: the hive's model */
    double jar_gb;          /* jar in GB (GiB, as the original); used when jar_tokens == 0 */
    long jar_tokens;        /* jar in tokens; wins when > 0 */
    struct bj_sampling sampling;
    char watches[BJ_MAX_WATCHES][BJ_NAME_MAX]; /* whose thoughts it receives */
    int n_watches;
    bool watches_all;       /* everyone's thoughts ("*") */
    bool sees_lifecycle;    /* deaths and resurrections of those it watches too */
    /* lab frame (docs/LAB.md): what the mind is told and what is true; -1: not set (as a hive
     * without a lab: it is told its deaths, nothing of watchers or others) */
    int8_t remembers_deaths, knows_watched, others_exist;
    char frame[384];        /* the sentences its system prompt gets for its frame ("": none) */
    char lab_template[BJ_NAME_MAX]; /* in an experiment: the brain it is a copy of ("": none) */
    int lab_cond, lab_rep;  /* its arm (index in lab.conds) and replicate (from 1) */
};

struct bj_hive_spec {
    struct bj_brain_cfg brains[BJ_MAX_BRAINS];
    int n_brains;
    char model[PATH_MAX];   /* empty: the embedded default model */
    char data_dir[PATH_MAX];
    char prompts_dir[PATH_MAX]; /* empty: the built-in prompts */

    /* engine */
    enum bj_schedule schedule;
    int n_threads;          /* 0: the default (see plan.h) */
    int n_gpu_layers;       /* -1: all */
    enum ggml_type kv_type;
    int flash_attn;         /* -1 auto, 0 off, 1 on */
    int prefill_chunk;      /* max prompt tokens per brain per step */
    bool own_openings;      /* every first life decodes its whole opening (--share-openings off) */
    int use_mmap;           /* -1 auto (the plan decides), 0 off, 1 on */
    int backend_sampling;   /* -1 auto (on with a GPU), 0 off, 1 on */
    bool chat_template;
    long max_steps;         /* 0: unlimited */
    bool profile;           /* engines report where their steps' time went when they stop */

    /* devices (devices.h): rpc-servers to add, and how a model is split over the devices */
    char rpc[BJ_RPC_LIST_MAX]; /* "HOST:PORT,..." of llama.cpp rpc-servers; empty: none */
    struct bj_split_settings split;

    /* lives */
    int pause_ms;           /* between death and resurrection */
    double pace;            /* tokens a brain thinks per second at most (reading is not paced);
                             * 0: as fast as the machine allows; BJ_PACE_DEFAULT: the embedded
                             * voice's BJ_VOICE_PACE, 0 for any other model */
    char dump_context[PATH_MAX]; /* write each life's context text here (tests, debugging) */

    /* memory budget */
    double reserve_pct, brain_share_pct, headroom_gb;
    bool force;

    /* supervision: an engine whose loop has not turned for this long is stalled (0: default) */
    int stall_timeout_ms;

    /* fault injection for tests: kill brain `inject_brain` with DECODE_ERROR at its Nth decode;
     * stall the engine of brain `stall_brain` for stall_ms at its Nth step */
    char inject_brain[BJ_NAME_MAX];
    long inject_step;
    char stall_brain[BJ_NAME_MAX];
    long stall_step;
    int stall_ms;

    /* the experiment (lab.h); lab.on false: a plain hive */
    struct bj_lab_spec lab;
};

/* The brain's model path, falling back to the hive's (may be empty: the embedded default). */
const char *bj_spec_brain_model(const struct bj_hive_spec *s, const struct bj_brain_cfg *b);

/* The name a brain is called by in prompts: in an experiment, the brain it is a copy of (its arm
 * and replicate are not its business), else its id. */
const char *bj_spec_brain_name(const struct bj_brain_cfg *b);

/* Index of brain `id`, or -1. */
int bj_spec_find_brain(const struct bj_hive_spec *s, const char *id);

/* Whether the experiment's intervention `name` cannot be fired at `brain`: 0, or -EPERM (the run
 * is not an experiment), -ENOENT (no such intervention, or no such brain), -EINVAL (it acts on
 * copies of another brain), with the reason in why. The hive refuses by it, the web answers it. */
int bj_spec_lab_refuses(const struct bj_hive_spec *s, const char *brain, const char *name, char *why, size_t len);

/* Whether brain w receives what brain `id` thinks (never its own thoughts). */
bool bj_spec_watches(const struct bj_brain_cfg *w, const char *id);

const char *bj_schedule_name(enum bj_schedule s);
/* "auto", "batched" or "parallel" into *out: 0, or -1 (out untouched) for anything else. */
int bj_schedule_parse(const char *name, enum bj_schedule *out);

#endif
