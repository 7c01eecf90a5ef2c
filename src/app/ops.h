/* ops: what keeps a long run whole, wired around the hive by main: the store (history, restored
 * death counts, unclean-exit recovery), the watchdog, and systemd notification.
 *
 * The order main follows (each call is one line in main.c):
 *   bj_ops_new()          before bj_hive_new: lock the data directory, open and recover the store,
 *                          record the run, fill initial_deaths for bj_hive_params
 *   bj_ops_start_store()   once the bus exists, before bj_hive_new publishes anything
 *   bj_ops_hive_started()  after bj_hive_start: the watchdog starts, READY=1
 *   bj_ops_tick()          from the main loop about once a second: STATUS=, WATCHDOG=1 while
 *                          healthy, data-directory checks
 *   bj_ops_stopping()      when a stop begins (signal, duration): STOPPING=1, the watchdog stops
 *   bj_ops_stop()        after bj_hive_stop: the store writes what is queued and closes
 * bj_ops_exit_status() says whether the watchdog asked for a non-zero exit (its last resort).
 *
 * Threads: main only. */
#ifndef BJ_OPS_H
#define BJ_OPS_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "bus.h"
#include "watchdog.h"

struct bj_config;
struct bj_hive;
struct bj_ops;

/* Settings of the store and the watchdog (part of struct bj_config, app only). */
struct bj_ops_config {
    bool no_store;               /* --no-store: no history, no restored counts (tests, benchmarks) */
    int store_commit_ms;         /* --store-commit-ms (100) */
    int store_keep_days;         /* --store-keep-days N: thoughts older than N days pruned (0: kept) */
    double store_max_mb;         /* --store-max-mb M: the oldest thoughts pruned past M MB (0: no cap) */
    bool no_watchdog;            /* --no-watchdog */
    int wd_interval_ms;          /* --watchdog-interval MS (1000) */
    struct bj_wd_limits wd_mem, wd_psi, wd_temp, wd_gpu; /* --watchdog-mem|psi|temp|gpu W,S,K,E */
    char wd_thermal_types[256];  /* --watchdog-thermal-types LIST */
    char wd_sysroot[PATH_MAX];   /* --watchdog-sysroot DIR: sensors read under DIR (tests) */
    int wd_calm;                 /* --watchdog-calm N samples */
    int wd_kill_cooldown_ms;     /* --watchdog-kill-cooldown SECONDS */
    int wd_exit_after;           /* --watchdog-exit-after N samples */
    long replay_run;             /* --replay R (rewritten by bj_replay_args): run R's counts at its start */
    char replay_from[PATH_MAX];  /* --replay-from DIR: the data directory that recorded run R */
};
/* Defaults: the watchdog's own (bj_watchdog_params_default; unit_watchdog checks they agree).
 * Inline, so that config.c links alone (the fuzz target builds it without the rest). */
static inline void bj_ops_config_defaults(struct bj_ops_config *o)
{
    *o = (struct bj_ops_config){
        .store_commit_ms = 100,
        .wd_interval_ms = 1000,
        .wd_mem = {85, 90, 95, 98},
        .wd_psi = {20, 40, 60, 0},
        .wd_temp = {80, 85, 90, 95},
        .wd_gpu = {90, 95, 98, 0},
        .wd_calm = 5,
        .wd_kill_cooldown_ms = 10000,
        .wd_exit_after = 10,
    };
}

/* Long options of the group, for getopt_long (ids from 1000). */
#define BJ_OPS_OPT_BASE 1000
#define BJ_OPS_OPTIONS                                                                                   \
    {"no-store", no_argument, 0, BJ_OPS_OPT_BASE + 0}, {"store-commit-ms", required_argument, 0, BJ_OPS_OPT_BASE + 1}, \
    {"no-watchdog", no_argument, 0, BJ_OPS_OPT_BASE + 2}, {"watchdog-interval", required_argument, 0, BJ_OPS_OPT_BASE + 3}, \
    {"watchdog-mem", required_argument, 0, BJ_OPS_OPT_BASE + 4}, {"watchdog-psi", required_argument, 0, BJ_OPS_OPT_BASE + 5}, \
    {"watchdog-temp", required_argument, 0, BJ_OPS_OPT_BASE + 6}, {"watchdog-gpu", required_argument, 0, BJ_OPS_OPT_BASE + 7}, \
    {"watchdog-thermal-types", required_argument, 0, BJ_OPS_OPT_BASE + 8},                               \
    {"watchdog-sysroot", required_argument, 0, BJ_OPS_OPT_BASE + 9},                                     \
    {"watchdog-calm", required_argument, 0, BJ_OPS_OPT_BASE + 10},                                       \
    {"watchdog-kill-cooldown", required_argument, 0, BJ_OPS_OPT_BASE + 11},                              \
    {"watchdog-exit-after", required_argument, 0, BJ_OPS_OPT_BASE + 12},                                 \
    {"replay-run", required_argument, 0, BJ_OPS_OPT_BASE + 13},                                          \
    {"replay-from", required_argument, 0, BJ_OPS_OPT_BASE + 14},                                         \
    {"store-keep-days", required_argument, 0, BJ_OPS_OPT_BASE + 15},                                     \
    {"store-max-mb", required_argument, 0, BJ_OPS_OPT_BASE + 16}

/* Applies option `opt` (from getopt_long) with `arg`. Returns -1 when opt is not of this group,
 * 0 when applied, 2 after printing why the value is bad. */
int bj_ops_parse_option(const char *cmd, int opt, const char *arg, struct bj_ops_config *o);
void bj_ops_usage(FILE *to);

/* Returns NULL with *status (2: the data directory is held by another daemon, or bad input; 1:
 * the store cannot be opened) after logging why. initial_deaths: spec.n_brains entries, filled.
 * default_model: the model of brains that name none (hashed into the run's record). */
struct bj_ops *bj_ops_new(const struct bj_config *c, int argc, char **argv, const char *default_model,
                           uint32_t *initial_deaths, int *status);
int bj_ops_start_store(struct bj_ops *o, struct bj_bus *bus);
int bj_ops_hive_started(struct bj_ops *o, struct bj_hive *h, struct bj_bus *bus);
void bj_ops_tick(struct bj_ops *o);
void bj_ops_stopping(struct bj_ops *o);
/* The hive never ran (a start refused, or abandoned by a stop signal): the run is recorded as
 * refused with this reason, never as an unclean run. Before bj_ops_stop. */
void bj_ops_refused(struct bj_ops *o, const char *reason);
/* clean: the run stopped in order. Returns 0 when the store wrote everything. */
int bj_ops_stop(struct bj_ops *o, bool clean);
/* 0, or 3 when the watchdog's last resort asked the process to end (systemd restarts it). */
int bj_ops_exit_status(const struct bj_ops *o);
void bj_ops_free(struct bj_ops *o);

/* The store of this run (NULL with --no-store), for the web's history reads. */
struct bj_store *bj_ops_store(struct bj_ops *o);
/* The watchdog (NULL with --no-watchdog or before the hive started), for metrics. */
struct bj_watchdog *bj_ops_watchdog(struct bj_ops *o);

#endif
