/* config: everything a hive run needs, parsed and checked before anything starts.
 *
 * One plain struct filled from defaults, then a mode preset or a hive file, then flags
 * (cli.c). After bj_config_finish() succeeds the struct is read-only for the whole run and may
 * be read from any thread. */
#ifndef BJ_CONFIG_H
#define BJ_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ggml.h>

#define BJ_MAX_BRAINS 16
#define BJ_NAME_MAX 32

enum bj_mode { BJ_MODE_SINGLE, BJ_MODE_MATRIX, BJ_MODE_HIVE };
enum bj_schedule { BJ_SCHED_AUTO, BJ_SCHED_BATCHED, BJ_SCHED_PARALLEL };
enum bj_events_out { BJ_OUT_TEXT, BJ_OUT_JSONL, BJ_OUT_NONE };

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
    char watches[BJ_MAX_BRAINS][BJ_NAME_MAX]; /* whose thoughts it receives */
    int n_watches;
    bool watches_all;       /* everyone's thoughts ("*") */
    bool sees_lifecycle;    /* deaths and resurrections of those it watches too */
};

struct bj_config {
    enum bj_mode mode;
    char hive_file[PATH_MAX];
    struct bj_brain_cfg brains[BJ_MAX_BRAINS];
    int n_brains;

    char model[PATH_MAX];   /* empty: the embedded tiny model */
    char web_host[64];
    int web_port;
    char data_dir[PATH_MAX];
    char prompts_dir[PATH_MAX]; /* empty: the built-in prompts */

    /* engine */
    enum bj_schedule schedule;
    int n_threads;          /* 0: all online cores */
    int n_gpu_layers;       /* -1: all */
    enum ggml_type kv_type;
    int flash_attn;         /* -1 auto, 0 off, 1 on */
    int prefill_chunk;      /* max prompt tokens per brain per step */
    bool use_mmap;
    int backend_sampling;   /* -1 auto (on with a GPU), 0 off, 1 on */
    bool chat_template;

    /* lives */
    int pause_ms;           /* between death and resurrection */

    /* output and run length */
    enum bj_events_out events;
    char focus[BJ_NAME_MAX];/* text view: whose tokens stream live */
    double duration_s;      /* 0: until signalled */
    long max_steps;         /* 0: unlimited */
    char dump_context[PATH_MAX]; /* write each life's context text here (tests, debugging) */

    /* memory budget */
    double reserve_pct, brain_share_pct, headroom_gb;
    bool force;

    /* fault injection for tests: kill brain `inject_brain` with DECODE_ERROR at its Nth decode */
    char inject_brain[BJ_NAME_MAX];
    long inject_step;
};

/* Defaults (matrix mode, the original's 8/10/12 GB jars, 127.0.0.1:8095). */
void bj_config_defaults(struct bj_config *c);

/* Fills c->brains for c->mode (single or matrix) with the roles and watching of that mode. */
void bj_config_apply_mode(struct bj_config *c);

/* Reads a hive file (INI: [hive] and [brain NAME] sections). Returns 0 or -1 with err. */
int bj_config_load_hive(struct bj_config *c, const char *path, char *err, size_t errlen);

/* Final checks after all sources are applied: names, references, ranges. 0 or -1 with err. */
int bj_config_finish(struct bj_config *c, char *err, size_t errlen);

/* The brain's model path, falling back to the hive's. */
const char *bj_config_brain_model(const struct bj_config *c, const struct bj_brain_cfg *b);

/* Index of brain `id`, or -1. */
int bj_config_find_brain(const struct bj_config *c, const char *id);

const char *bj_mode_name(enum bj_mode m);
const char *bj_schedule_name(enum bj_schedule s);

#endif
