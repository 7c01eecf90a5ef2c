/* watchdog: samples the machine once a second and escalates in stages when it runs short.
 *
 * Sensors (each may be missing: a missing sensor is reported once and never stands in for a
 * value): memory in use of what the budget may use (sysmem: MemAvailable capped by the cgroup),
 * this process's RSS, PSI memory pressure (/proc/pressure/memory, "some avg10"), the hottest
 * thermal zone among those whose `type` matches the configured names (all when none given), and
 * GPU memory in use (NVML through sysmem, where present).
 *
 * Stages, from the worst sensor against its thresholds (a threshold of 0 turns it off):
 *   OK -> WARN (event, log) -> SLOW (bj_hive_throttle, one more level each sample while it lasts)
 *      -> KILL (the alive brain with the largest jar dies with cause WATCHDOG; it resurrects
 *         after its pause; at most one kill per `kill_cooldown_ms`)
 *      -> EXIT (only when the exit threshold holds for `exit_after` samples after a kill was
 *         tried, or with no brain left to kill: on_exit is called and the process should end
 *         non-zero so that systemd restarts it).
 * It goes down a stage after `calm_samples` samples below it (throttling is lifted at OK). It
 * never exits the process for one brain's growth: a brain's jar is bounded by itself.
 * Every stage change is a BJ_EV_WATCHDOG event (cause: the stage; brain: the one killed), a log
 * line, and a counter (bj_watchdog_stats).
 *
 * Threads: new/start/stop/free on one thread (main); the watchdog samples on its own thread;
 * bj_watchdog_stats from any thread. */
#ifndef BJ_WATCHDOG_H
#define BJ_WATCHDOG_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus.h"
#include "sysmem.h"

struct bj_hive;
struct bj_watchdog;

enum bj_wd_stage { BJ_WD_OK, BJ_WD_WARN, BJ_WD_SLOW, BJ_WD_KILL, BJ_WD_EXIT, BJ_WD_STAGES };
const char *bj_wd_stage_name(enum bj_wd_stage s);

/* Thresholds for one sensor: the value at which each stage starts (0: that stage is off). */
struct bj_wd_limits { double warn, slow, kill, exit; };

struct bj_watchdog_params {
    struct bj_hive *hive;         /* the actions: throttle, kill (NULL: the callbacks below only) */
    struct bj_bus *bus;           /* where stage events go (NULL: none) */
    struct bj_sysmem_paths paths; /* sysmem's files (tests point them at fakes) */
    char psi_path[PATH_MAX];      /* /proc/pressure/memory */
    char thermal_root[PATH_MAX];  /* /sys/class/thermal */
    char thermal_types[256];      /* comma-separated zone types to watch; empty: every zone */
    bool gpu;                     /* query GPU memory (NVML) */
    int interval_ms;              /* 1000 */
    int calm_samples;             /* samples below a stage before going down (5) */
    int kill_cooldown_ms;         /* 10000 */
    int exit_after;               /* samples at the exit threshold after a kill before exiting (10) */
    struct bj_wd_limits mem_pct;  /* % of usable memory in use: 85 90 95 98 */
    struct bj_wd_limits psi;      /* some avg10 %: 20 40 60 0 */
    struct bj_wd_limits temp_c;   /* hottest watched zone: 80 85 90 95 */
    struct bj_wd_limits gpu_pct;  /* % of GPU memory in use: 90 95 98 0 */
    /* Actions (tests, or to override the hive's); called on the watchdog thread. NULL: the hive's. */
    void (*throttle)(void *ud, int level);
    /* Kill the alive brain with the largest jar; returns 0 and its id, or -1 when none is alive. */
    int (*kill_largest)(void *ud, char *brain, size_t len);
    void (*on_exit)(void *ud, const char *why); /* NULL: SIGTERM to this process */
    void *ud;
};
void bj_watchdog_params_default(struct bj_watchdog_params *p);
/* The default paths with `root` prefixed (meminfo, cgroup, status, PSI, thermal), GPU off. */
void bj_watchdog_paths_under(struct bj_watchdog_params *p, const char *root);

/* One sample; a field is valid only when its sensor answered. */
struct bj_wd_sample {
    bool mem_ok, rss_ok, psi_ok, temp_ok, gpu_ok;
    double mem_pct;
    uint64_t rss;
    double psi_some10, psi_full10;
    double temp_c;
    char temp_zone[48];
    double gpu_pct;
};
/* Reads every sensor once (any thread). */
void bj_watchdog_sample(const struct bj_watchdog_params *p, struct bj_wd_sample *out);
/* The stage a sample calls for, and why (text). */
enum bj_wd_stage bj_watchdog_judge(const struct bj_watchdog_params *p, const struct bj_wd_sample *s, char *why,
                                   size_t len);

struct bj_watchdog_stats {
    enum bj_wd_stage stage;
    uint64_t entered[BJ_WD_STAGES]; /* times each stage was entered */
    uint64_t kills, samples;
    int throttle;
    struct bj_wd_sample last;
    bool exit_requested;
};

struct bj_watchdog *bj_watchdog_new(const struct bj_watchdog_params *p);
/* Starts sampling. 0 or -1. */
int bj_watchdog_start(struct bj_watchdog *w);
void bj_watchdog_stop(struct bj_watchdog *w);
void bj_watchdog_free(struct bj_watchdog *w);
void bj_watchdog_stats(struct bj_watchdog *w, struct bj_watchdog_stats *out);

#endif
