/* watchdog: see watchdog.h. */
#include "watchdog.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hive.h"
#include "log.h"
#include "util.h"

static const char *const k_stage_names[BJ_WD_STAGES] = {"OK", "WARN", "SLOW", "KILL", "EXIT"};
const char *bj_wd_stage_name(enum bj_wd_stage s) { return s < BJ_WD_STAGES ? k_stage_names[s] : "?"; }

struct bj_watchdog {
    struct bj_watchdog_params p;
    pthread_t thread;
    bool started;
    pthread_mutex_t lock; /* guards stats and the stop flag */
    pthread_cond_t cond;
    bool stop;
    struct bj_watchdog_stats stats;
    /* the thread's own state */
    int calm, at_exit;
    int64_t last_kill_us;
    uint64_t kills_since_ok;
    bool none_alive;
    bool told_missing[5];
};

void bj_watchdog_params_default(struct bj_watchdog_params *p)
{
    memset(p, 0, sizeof *p);
    bj_sysmem_paths_default(&p->paths);
    bj_strlcpy(p->psi_path, "/proc/pressure/memory", sizeof p->psi_path);
    bj_strlcpy(p->thermal_root, "/sys/class/thermal", sizeof p->thermal_root);
    p->gpu = true;
    p->interval_ms = 1000;
    p->calm_samples = 5;
    p->kill_cooldown_ms = 10000;
    p->exit_after = 10;
    p->mem_pct = (struct bj_wd_limits){85, 90, 95, 98};
    p->psi = (struct bj_wd_limits){20, 40, 60, 0};
    p->temp_c = (struct bj_wd_limits){80, 85, 90, 95};
    p->gpu_pct = (struct bj_wd_limits){90, 95, 98, 0};
}

void bj_watchdog_paths_under(struct bj_watchdog_params *p, const char *root)
{
    bj_sysmem_paths_under(&p->paths, root);
    bj_strlcpy(p->paths.self_status, "/proc/self/status", sizeof p->paths.self_status); /* RSS stays real */
    snprintf(p->psi_path, sizeof p->psi_path, "%s/proc/pressure/memory", root);
    snprintf(p->thermal_root, sizeof p->thermal_root, "%s/sys/class/thermal", root);
    p->gpu = false;
}

/* ---- sensors ---------------------------------------------------------------------------------- */

static int read_psi(const char *path, double *some10, double *full10)
{
    char *text;
    size_t len;
    if (bj_read_file(path, &text, &len))
        return -1;
    int found = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        double v;
        if (sscanf(line, "some avg10=%lf", &v) == 1) {
            *some10 = v;
            found |= 1;
        } else if (sscanf(line, "full avg10=%lf", &v) == 1) {
            *full10 = v;
            found |= 2;
        }
    }
    free(text);
    return found & 1 ? 0 : -1;
}

void bj_watchdog_sample(const struct bj_watchdog_params *p, struct bj_wd_sample *out)
{
    memset(out, 0, sizeof *out);
    struct bj_sysmem sm;
    char err[256];
    if (bj_sysmem_read(&p->paths, &sm, err, sizeof err) == 0 && sm.total > 0) {
        out->mem_ok = true;
        out->mem_pct = 100.0 * (double)(sm.total - (sm.available < sm.total ? sm.available : sm.total)) /
                       (double)sm.total;
    }
    struct bj_proc_mem pm;
    if (bj_sysmem_read_proc(&p->paths, &pm) == 0) {
        out->rss_ok = true;
        out->rss = pm.rss;
    }
    out->psi_ok = read_psi(p->psi_path, &out->psi_some10, &out->psi_full10) == 0;
    out->temp_ok = bj_sysmem_hottest_zone(p->thermal_root, p->thermal_types, &out->temp_c, out->temp_zone,
                                sizeof out->temp_zone) == 0;
    if (p->gpu) {
        struct bj_gpu_info gi;
        bj_sysmem_read_gpu(&p->paths, out->mem_ok ? &sm : NULL, &gi);
        if (gi.available && !gi.unified) { /* unified: the same memory as mem_pct */
            for (int i = 0; i < gi.n; i++) {
                if (gi.dev[i].total == 0)
                    continue;
                double pct = 100.0 * (double)(gi.dev[i].total - gi.dev[i].free) / (double)gi.dev[i].total;
                if (!out->gpu_ok || pct > out->gpu_pct)
                    out->gpu_pct = pct;
                out->gpu_ok = true;
            }
        }
    }
}

static enum bj_wd_stage stage_of(const struct bj_wd_limits *l, double v)
{
    if (l->exit > 0 && v >= l->exit) return BJ_WD_EXIT;
    if (l->kill > 0 && v >= l->kill) return BJ_WD_KILL;
    if (l->slow > 0 && v >= l->slow) return BJ_WD_SLOW;
    if (l->warn > 0 && v >= l->warn) return BJ_WD_WARN;
    return BJ_WD_OK;
}

enum bj_wd_stage bj_watchdog_judge(const struct bj_watchdog_params *p, const struct bj_wd_sample *s, char *why,
                                   size_t len)
{
    enum bj_wd_stage worst = BJ_WD_OK;
    *why = '\0';
    struct { bool ok; double v; const struct bj_wd_limits *l; const char *fmt; } k[] = {
        {s->mem_ok, s->mem_pct, &p->mem_pct, "memory %.1f%% in use"},
        {s->psi_ok, s->psi_some10, &p->psi, "memory pressure (PSI some avg10) %.1f%%"},
        {s->temp_ok, s->temp_c, &p->temp_c, "temperature %.1f C"},
        {s->gpu_ok, s->gpu_pct, &p->gpu_pct, "GPU memory %.1f%% in use"},
    };
    for (size_t i = 0; i < BJ_ARRAY_LEN(k); i++) {
        if (!k[i].ok)
            continue;
        enum bj_wd_stage st = stage_of(k[i].l, k[i].v);
        if (st > worst || (st == worst && st > BJ_WD_OK && !*why)) {
            worst = st;
            snprintf(why, len, k[i].fmt, k[i].v);
            if (i == 2 && s->temp_zone[0]) {
                size_t n = strlen(why);
                snprintf(why + n, len - n, " (%s)", s->temp_zone);
            }
        }
    }
    if (worst == BJ_WD_OK)
        snprintf(why, len, "below every threshold");
    return worst;
}

/* ---- actions ---------------------------------------------------------------------------------- */

static void do_throttle(struct bj_watchdog *w, int level)
{
    if (w->p.throttle)
        w->p.throttle(w->p.ud, level);
    else if (w->p.hive)
        bj_hive_throttle(w->p.hive, level);
}

static int do_kill(struct bj_watchdog *w, char *brain, size_t len)
{
    if (w->p.kill_largest)
        return w->p.kill_largest(w->p.ud, brain, len);
    if (!w->p.hive)
        return -1;
    struct bj_hive_snapshot snap;
    if (bj_hive_snapshot(w->p.hive, &snap))
        return -1;
    int best = -1;
    for (int i = 0; i < snap.n_brains; i++) {
        const struct bj_brain_view *b = &snap.brains[i];
        if (!b->started || strcmp(b->state, "dead") == 0 || strcmp(b->state, "dying") == 0)
            continue;
        if (best < 0 || b->jar_used > snap.brains[best].jar_used)
            best = i;
    }
    int rc = -1;
    if (best >= 0) {
        bj_strlcpy(brain, snap.brains[best].id, len);
        rc = bj_hive_kill(w->p.hive, brain, bj_death_cause_name(BJ_DEATH_WATCHDOG), "watchdog") == 0 ? 0 : -1;
    }
    bj_hive_snapshot_free(&snap);
    return rc;
}

static void publish(struct bj_watchdog *w, enum bj_wd_stage st, const char *brain, const char *text)
{
    if (!w->p.bus)
        return;
    struct bj_event ev = {.type = BJ_EV_WATCHDOG};
    bj_strlcpy(ev.cause, bj_wd_stage_name(st), sizeof ev.cause);
    if (brain)
        bj_strlcpy(ev.brain, brain, sizeof ev.brain);
    ev.text = (char *)text;
    bj_bus_publish(w->p.bus, &ev);
}

static void enter(struct bj_watchdog *w, enum bj_wd_stage st, const char *why)
{
    char text[400];
    snprintf(text, sizeof text, "watchdog: %s: %s", bj_wd_stage_name(st), why);
    if (st == BJ_WD_OK)
        bj_info("%s", text);
    else if (st <= BJ_WD_SLOW)
        bj_warn("%s", text);
    else
        bj_error("%s", text);
    pthread_mutex_lock(&w->lock);
    w->stats.stage = st;
    w->stats.entered[st]++;
    pthread_mutex_unlock(&w->lock);
    publish(w, st, NULL, text);
}

static void report_missing(struct bj_watchdog *w, const struct bj_wd_sample *s)
{
    const bool ok[] = {s->mem_ok, s->rss_ok, s->psi_ok, s->temp_ok, s->gpu_ok || !w->p.gpu};
    static const char *const what[] = {"system memory (meminfo)", "process RSS", "PSI memory pressure",
                                       "thermal zones", "GPU memory (NVML)"};
    for (int i = 0; i < 5; i++)
        if (!ok[i] && !w->told_missing[i]) {
            w->told_missing[i] = true;
            bj_info("watchdog: no %s sensor here; it is not watched", what[i]);
        }
}

/* One step of the escalation, after a sample. */
static void step(struct bj_watchdog *w, const struct bj_wd_sample *s)
{
    char why[200];
    enum bj_wd_stage target = bj_watchdog_judge(&w->p, s, why, sizeof why);
    enum bj_wd_stage cur = w->stats.stage;
    report_missing(w, s);
    pthread_mutex_lock(&w->lock);
    w->stats.samples++;
    w->stats.last = *s;
    pthread_mutex_unlock(&w->lock);

    if (target > cur && cur < BJ_WD_KILL) {
        /* One stage per sample, so that each gets its chance to help. */
        w->calm = 0;
        cur++;
        enter(w, cur, why);
    } else if (target == BJ_WD_EXIT && cur == BJ_WD_KILL) {
        w->calm = 0;
        w->at_exit++;
        if (w->at_exit >= w->p.exit_after && (w->kills_since_ok > 0 || w->none_alive)) {
            enter(w, BJ_WD_EXIT, why);
            pthread_mutex_lock(&w->lock);
            w->stats.exit_requested = true;
            w->stop = true;
            pthread_mutex_unlock(&w->lock);
            if (w->p.on_exit)
                w->p.on_exit(w->p.ud, why);
            else
                kill(getpid(), SIGTERM);
            return;
        }
    } else if (target < cur) {
        w->at_exit = 0;
        if (++w->calm >= w->p.calm_samples) {
            w->calm = 0;
            cur--;
            enter(w, cur, why);
        }
    } else {
        w->calm = 0;
        if (target < BJ_WD_EXIT)
            w->at_exit = 0;
    }

    /* What the stage does while it lasts. */
    int level = w->stats.throttle;
    if (cur >= BJ_WD_SLOW)
        level = level < 10 ? level + 1 : 10;
    else
        level = 0;
    if (cur == BJ_WD_OK)
        w->kills_since_ok = 0, w->none_alive = false;
    if (level != w->stats.throttle) {
        do_throttle(w, level);
        pthread_mutex_lock(&w->lock);
        w->stats.throttle = level;
        pthread_mutex_unlock(&w->lock);
    }
    int64_t now = bj_now_us();
    if (cur >= BJ_WD_KILL && (w->last_kill_us == 0 || now - w->last_kill_us >= (int64_t)w->p.kill_cooldown_ms * 1000)) {
        char brain[64] = "";
        w->last_kill_us = now;
        if (do_kill(w, brain, sizeof brain) == 0) {
            w->kills_since_ok++;
            pthread_mutex_lock(&w->lock);
            w->stats.kills++;
            pthread_mutex_unlock(&w->lock);
            char text[400];
            snprintf(text, sizeof text, "watchdog: KILL: brain %s (the largest jar) dies with cause WATCHDOG: %s", brain,
                     why);
            bj_error("%s", text);
            publish(w, BJ_WD_KILL, brain, text);
        } else {
            w->none_alive = true;
        }
    }
}

static void *watch_main(void *arg)
{
    struct bj_watchdog *w = arg;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        pthread_mutex_unlock(&w->lock);
        struct bj_wd_sample s;
        bj_watchdog_sample(&w->p, &s);
        step(w, &s);
        pthread_mutex_lock(&w->lock);
        struct timespec dl = bj_deadline_after((int64_t)w->p.interval_ms * 1000);
        while (!w->stop && pthread_cond_timedwait(&w->cond, &w->lock, &dl) != ETIMEDOUT) {
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

struct bj_watchdog *bj_watchdog_new(const struct bj_watchdog_params *p)
{
    struct bj_watchdog *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->p = *p;
    if (w->p.interval_ms <= 0) w->p.interval_ms = 1000;
    if (w->p.calm_samples <= 0) w->p.calm_samples = 1;
    if (w->p.exit_after <= 0) w->p.exit_after = 1;
    pthread_mutex_init(&w->lock, NULL);
    bj_cond_init_monotonic(&w->cond);
    return w;
}

int bj_watchdog_start(struct bj_watchdog *w)
{
    int rc = pthread_create(&w->thread, NULL, watch_main, w);
    if (rc) {
        bj_error("watchdog thread: %s", strerror(rc));
        return -1;
    }
    w->started = true;
    return 0;
}

void bj_watchdog_stop(struct bj_watchdog *w)
{
    if (!w || !w->started)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    w->started = false;
}

void bj_watchdog_free(struct bj_watchdog *w)
{
    if (!w)
        return;
    bj_watchdog_stop(w);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w);
}

void bj_watchdog_stats(struct bj_watchdog *w, struct bj_watchdog_stats *out)
{
    pthread_mutex_lock(&w->lock);
    *out = w->stats;
    pthread_mutex_unlock(&w->lock);
}
