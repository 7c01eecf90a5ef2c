/* hive: all brains of one process, their engines, and who watches whom, as one object.
 *
 * bj_hive_new() checks everything before anything runs (models, jars, prompts, the memory
 * budget), loads each model once and builds one engine per model from the plan (plan.h);
 * bj_hive_start() starts the engines. The hive routes each brain's thoughts, deaths and
 * resurrections to the brains that watch it, makes every death durable in the journal
 * (crash_reports.log) before it is published, and keeps a small view of every brain, fed by the
 * bus, from which snapshots are answered.
 *
 * Operator calls (kill, resurrect, pause, resume, say) take a brain id, may be made from any
 * thread, and go through the owning engine's request queue: nothing outside the engine ever
 * touches a brain. The process loop (signals, timers, sd_notify) belongs to the caller (main).
 *
 * Threads: new/start/stop/free on one thread (main); everything else from any thread. */
#ifndef BJ_HIVE_H
#define BJ_HIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bus.h"
#include "spec.h"

struct bj_hive;

struct bj_hive_params {
    const struct bj_hive_spec *spec; /* read-only, must outlive the hive */
    struct bj_bus *bus;              /* where the hive publishes; owned by the caller, outlives the hive */
    const char *default_model;       /* path used when a brain has no model (the embedded one); may be NULL */
    /* Deaths so far per brain (index as in spec->brains), e.g. restored from the store so that
     * counts never go backwards across restarts; NULL: all 0. Copied by bj_hive_new. */
    const uint32_t *initial_deaths;
};
struct bj_hive_params bj_hive_params_default(void);

/* Why bj_hive_new refused to build a hive; the app decides what each means for the process. */
enum bj_hive_refusal {
    BJ_HIVE_BAD_INPUT,  /* what it was given cannot work: a model, a prompt, a jar, a setting */
    BJ_HIVE_CANNOT_RUN, /* it could work, but not here and now: the memory budget, a load, the disk */
};

/* Checks and loads. NULL with err and *why on failure. */
struct bj_hive *bj_hive_new(const struct bj_hive_params *p, enum bj_hive_refusal *why, char *err, size_t errlen);
/* Starts every engine. 0, or -1 with err. */
int bj_hive_start(struct bj_hive *h, char *err, size_t errlen);
/* Readable (eventfd) when an engine has stopped by itself (--steps reached); owned by the hive. */
int bj_hive_fd(const struct bj_hive *h);
/* Whether every engine has stopped by itself. */
bool bj_hive_done(const struct bj_hive *h);
/* Reopens crash_reports.log (SIGHUP, after a log rotation). Any thread. */
void bj_hive_reopen_logs(struct bj_hive *h);
/* Reads the prompt files again (SIGHUP); brains use them from their next life on. Main thread.
 * 0, or -1 with err (the old prompts stay). */
int bj_hive_reload_prompts(struct bj_hive *h, char *err, size_t errlen);
/* Stops every engine after its current step (idempotent) and prints the run summary. */
void bj_hive_stop(struct bj_hive *h);
void bj_hive_free(struct bj_hive *h);

/* ---- operator calls: any thread; applied at the owning engine's next step -----------------
 * Each returns 0, -ENOENT for an unknown brain, -EINVAL for bad arguments, -EBUSY for what the
 * brain cannot do now (bj_hive_refuses: a kill of a dead brain, a resurrection of a living one),
 * and publishes an OPERATOR event (who = the caller's name for the actor, e.g. "web:admin"). */
/* Whether action ("kill", "resurrect", "pause", ...) cannot apply to the brain as it is now (a
 * kill of a dead brain, a resurrection of a living one, a pause of a paused one, anything before
 * the brain started): true with the reason in why. Judged on the hive's view; false for an
 * unknown brain. */
bool bj_hive_refuses(struct bj_hive *h, const char *brain, const char *action, char *why, size_t len);
/* cause: NULL for OPERATOR, or WATCHDOG (the watchdog's stages). */
int bj_hive_kill(struct bj_hive *h, const char *brain, const char *cause, const char *who);
int bj_hive_resurrect(struct bj_hive *h, const char *brain, const char *who);  /* a dead brain now, skipping its pause */
int bj_hive_pause(struct bj_hive *h, const char *brain, const char *who);
int bj_hive_resume(struct bj_hive *h, const char *brain, const char *who);
/* Text the brain takes in at its next thought boundary, framed as an outside voice (from). */
int bj_hive_say(struct bj_hive *h, const char *brain, const char *from, const char *text, const char *who);
/* Fires the experiment's intervention `name` (an [intervention NAME] of the lab file) on the
 * brain at its engine's next step. -ENOENT for an unknown brain or intervention, -EINVAL when
 * it acts on copies of another brain, -EPERM when the hive is not a lab run. */
int bj_hive_intervene(struct bj_hive *h, const char *brain, const char *name, const char *who);
/* Watchdog stage "slow down": level 0 runs normally; level n > 0 makes every engine sleep n x 10 ms
 * between steps (fewer steps per second, less heat and memory churn). Any thread. */
void bj_hive_throttle(struct bj_hive *h, int level);
/* Text from another mind (a remote brain) for every local brain that watches `from`. */
void bj_hive_observe_remote(struct bj_hive *h, const char *from, const char *text, bool lifecycle);

/* ---- snapshots: built from events, never from a brain's struct -------------------------- */
#define BJ_VIEW_TEXT 2048
struct bj_brain_view {
    char id[BJ_NAME_MAX], role[BJ_NAME_MAX];
    char model[256];             /* file name of its model */
    char state[16];              /* thinking, listening, dead, paused, ... ("not started" when denied) */
    bool started;
    uint32_t deaths;             /* total, across restarts */
    uint32_t life;               /* current life number */
    uint32_t thought;            /* thought number within the life */
    uint32_t deaths_by_cause[BJ_DEATH_CAUSES]; /* this run, by enum bj_death_cause */
    int32_t jar_used, jar_tokens;
    double tok_s;
    uint64_t tokens;             /* generated this run */
    int64_t last_death_us;       /* wall clock, 0: none this run */
    int64_t updated_us;
    char current[BJ_VIEW_TEXT];  /* the thought in progress (its tail when long) */
    char last[BJ_VIEW_TEXT];     /* the last finished thought */
    char watches[BJ_MAX_WATCHES][BJ_NAME_MAX];
    int n_watches;
    bool watches_all, sees_lifecycle;
};

struct bj_hive_snapshot {
    int n_brains;
    struct bj_brain_view *brains; /* n_brains, in spec order */
    int64_t started_us;           /* wall clock at bj_hive_start */
    uint64_t deaths, tokens;      /* totals this run */
    double tok_s;                 /* sum of the brains' recent tokens/s */
};
/* Fills *out (the caller frees with bj_hive_snapshot_free). 0 or -1 when out of memory. */
int bj_hive_snapshot(struct bj_hive *h, struct bj_hive_snapshot *out);
void bj_hive_snapshot_free(struct bj_hive_snapshot *s);
/* One brain's view; 0, or -ENOENT. */
int bj_hive_brain(struct bj_hive *h, const char *brain, struct bj_brain_view *out);

/* The supervisor's round (main thread, about once a second): an engine whose loop has not turned
 * for the spec's stall timeout is given up and rebuilt on the same loaded model; its brains die
 * (WATCHDOG) and come back. At most 5 restarts in 60 s. Returns the number of engines rebuilt,
 * or -1 with err when the hive cannot go on (the caller exits non-zero). */
int bj_hive_supervise(struct bj_hive *h, char *err, size_t errlen);

/* Health for the supervisor: each engine thread beats once per step; returns the number of
 * engines whose last beat is older than stall_ms (0: all healthy). Any thread. */
int bj_hive_stalled(struct bj_hive *h, int stall_ms);

/* The spec the hive runs (read-only). */
const struct bj_hive_spec *bj_hive_spec_of(const struct bj_hive *h);
/* The memory budget report (validation + ledger) as text; the caller frees. */
char *bj_hive_budget_report(struct bj_hive *h);

#endif
