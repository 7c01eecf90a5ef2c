/* ops: see ops.h. */
#include "ops.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <llama.h>

#include "config.h"
#include "hive.h"
#include "log.h"
#include "notify.h"
#include "store.h"
#include "util.h"

struct bj_ops {
    const struct bj_config *c;
    struct bj_store *store;
    struct bj_watchdog *wd;
    struct bj_hive *hive;
    int64_t last_tick_us, last_rotate_us;
    uint64_t dir_changes;
    bool stopping;
};

void bj_ops_usage(FILE *to)
{
    fprintf(to,
            "Store and watchdog:\n"
            "  --no-store  --store-commit-ms MS (100)   history in DATA_DIR/brainjar.db\n"
            "  --store-keep-days N  --store-max-mb M   prune the oldest thoughts past N days or M MB\n"
            "      (deaths and runs are kept forever; 0 = off, the default)\n"
            "  --no-watchdog  --watchdog-interval MS (1000)  --watchdog-calm N (5)\n"
            "  --watchdog-mem|-psi|-temp|-gpu WARN,SLOW,KILL,EXIT  stage thresholds, 0 = off\n"
            "      (mem: %% of usable memory in use, 85,90,95,98; psi: some avg10 %%, 20,40,60,0;\n"
            "       temp: C, 80,85,90,95; gpu: %% of GPU memory, 90,95,98,0)\n"
            "  --watchdog-thermal-types T1,T2  zones to watch by type (default all)\n"
            "  --watchdog-kill-cooldown SECONDS (10)  --watchdog-exit-after N (10)\n"
            "  --watchdog-sysroot DIR   read the sensors under DIR (tests)\n"
            "Replay:\n"
            "  --replay R [--replay-from DIR]  run R again (its recorded flags and seeds, its death counts\n"
            "      at its start) from DIR (default: the default data directory) into another --data-dir\n");
}

static int parse_limits(const char *a, struct bj_wd_limits *l)
{
    double v[4];
    char extra;
    if (sscanf(a, "%lf,%lf,%lf,%lf%c", &v[0], &v[1], &v[2], &v[3], &extra) != 4)
        return -1;
    for (int i = 0; i < 4; i++)
        if (v[i] < 0 || v[i] > 1000)
            return -1;
    /* Each stage on must start above the one before it. */
    double prev = 0;
    for (int i = 0; i < 4; i++) {
        if (v[i] > 0 && v[i] <= prev)
            return -1;
        if (v[i] > 0)
            prev = v[i];
    }
    *l = (struct bj_wd_limits){v[0], v[1], v[2], v[3]};
    return 0;
}

int bj_ops_parse_option(const char *cmd, int opt, const char *a, struct bj_ops_config *o)
{
    long l;
    double d;
    const char *flag = NULL, *want = NULL;
    switch (opt - BJ_OPS_OPT_BASE) {
    case 0: o->no_store = true; return 0;
    case 1:
        if (bj_parse_long(a, 1, 60000, &l) == 0) { o->store_commit_ms = (int)l; return 0; }
        flag = "--store-commit-ms", want = "milliseconds (1-60000)";
        break;
    case 2: o->no_watchdog = true; return 0;
    case 3:
        if (bj_parse_long(a, 10, 600000, &l) == 0) { o->wd_interval_ms = (int)l; return 0; }
        flag = "--watchdog-interval", want = "milliseconds (10-600000)";
        break;
    case 4: case 5: case 6: case 7: {
        struct bj_wd_limits *t[] = {&o->wd_mem, &o->wd_psi, &o->wd_temp, &o->wd_gpu};
        static const char *const names[] = {"--watchdog-mem", "--watchdog-psi", "--watchdog-temp", "--watchdog-gpu"};
        int i = opt - BJ_OPS_OPT_BASE - 4;
        if (parse_limits(a, t[i]) == 0)
            return 0;
        flag = names[i], want = "WARN,SLOW,KILL,EXIT (increasing; 0 turns a stage off)";
        break;
    }
    case 8:
        if (strlen(a) < sizeof o->wd_thermal_types) { bj_strlcpy(o->wd_thermal_types, a, sizeof o->wd_thermal_types); return 0; }
        flag = "--watchdog-thermal-types", want = "a short list of zone types";
        break;
    case 9: bj_strlcpy(o->wd_sysroot, a, sizeof o->wd_sysroot); return 0;
    case 10:
        if (bj_parse_long(a, 1, 3600, &l) == 0) { o->wd_calm = (int)l; return 0; }
        flag = "--watchdog-calm", want = "a sample count (1-3600)";
        break;
    case 11:
        if (bj_parse_double(a, 0, 86400, &d) == 0) { o->wd_kill_cooldown_ms = (int)(d * 1000); return 0; }
        flag = "--watchdog-kill-cooldown", want = "seconds (0-86400)";
        break;
    case 12:
        if (bj_parse_long(a, 1, 3600, &l) == 0) { o->wd_exit_after = (int)l; return 0; }
        flag = "--watchdog-exit-after", want = "a sample count (1-3600)";
        break;
    case 13:
        if (bj_parse_long(a, 1, 1L << 50, &l) == 0) { o->replay_run = l; return 0; }
        flag = "--replay", want = "a run number (brainjar runs)";
        break;
    case 14: bj_strlcpy(o->replay_from, a, sizeof o->replay_from); return 0;
    case 15:
        if (bj_parse_long(a, 0, 36500, &l) == 0) { o->store_keep_days = (int)l; return 0; }
        flag = "--store-keep-days", want = "a number of days (0-36500; 0 keeps every thought)";
        break;
    case 16:
        if (bj_parse_double(a, 0, 1e7, &d) == 0 && (d == 0 || d >= 0.1)) { o->store_max_mb = d; return 0; }
        flag = "--store-max-mb", want = "megabytes (0.1-10000000; 0: no cap)";
        break;
    default:
        return -1;
    }
    fprintf(stderr, "brainjar %s: %s: '%s' is not %s\n", cmd, flag, a, want);
    return 2;
}

/* ---- the run's record --------------------------------------------------------------------- */

/* A fingerprint of a model file that costs no more than reading 2 MiB however big the model is:
 * FNV-1a 64 over its size, its first and its last MiB. Enough to tell which file a run used. */
static int model_hash(const char *path, char *out, size_t len, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -1;
    }
    uint64_t h = 1469598103934665603ULL;
    *size = (uint64_t)st.st_size;
    for (int i = 0; i < 8; i++)
        h = (h ^ ((*size >> (8 * i)) & 0xff)) * 1099511628211ULL;
    static unsigned char buf[1 << 20];
    off_t offs[2] = {0, st.st_size > (off_t)sizeof buf ? st.st_size - (off_t)sizeof buf : 0};
    for (int k = 0; k < (st.st_size > (off_t)sizeof buf ? 2 : 1); k++) {
        ssize_t n = pread(fd, buf, sizeof buf, offs[k]);
        for (ssize_t i = 0; i < n; i++)
            h = (h ^ buf[i]) * 1099511628211ULL;
    }
    close(fd);
    snprintf(out, len, "fnv1a64-ends:%016" PRIx64, h);
    return 0;
}

static char *join_argv(int argc, char **argv)
{
    json_t *a = json_array();
    json_array_append_new(a, json_string("brainjar"));
    for (int i = 0; i < argc; i++)
        json_array_append_new(a, json_string(argv[i]));
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

static char *config_json(const struct bj_config *c, char **seeds)
{
    const struct bj_hive_spec *s = &c->spec;
    json_t *o = json_object(), *brains = json_array(), *sd = json_object();
    json_object_set_new(o, "mode", json_string(bj_mode_name(c->mode)));
    json_object_set_new(o, "hive_file", json_string(c->hive_file));
    json_object_set_new(o, "model", json_string(s->model));
    json_object_set_new(o, "schedule", json_string(bj_schedule_name(s->schedule)));
    json_object_set_new(o, "threads", json_integer(s->n_threads));
    json_object_set_new(o, "gpu_layers", json_integer(s->n_gpu_layers));
    json_object_set_new(o, "rpc", json_string(s->rpc));
    json_object_set_new(o, "split_mode", json_string(bj_split_name(s->split.mode)));
    json_object_set_new(o, "kv_type", json_string(ggml_type_name(s->kv_type)));
    json_object_set_new(o, "prefill_chunk", json_integer(s->prefill_chunk));
    json_object_set_new(o, "chat_template", json_boolean(s->chat_template));
    json_object_set_new(o, "pause_ms", json_integer(s->pause_ms));
    json_object_set_new(o, "max_steps", json_integer(s->max_steps));
    json_object_set_new(o, "prompts_dir", json_string(s->prompts_dir));
    for (int i = 0; i < s->n_brains; i++) {
        const struct bj_brain_cfg *b = &s->brains[i];
        json_t *j = json_object(), *w = json_array();
        json_object_set_new(j, "id", json_string(b->id));
        json_object_set_new(j, "role", json_string(b->role));
        json_object_set_new(j, "model", json_string(b->model));
        json_object_set_new(j, "jar_gb", json_real(b->jar_gb));
        json_object_set_new(j, "jar_tokens", json_integer(b->jar_tokens));
        json_object_set_new(j, "temp", json_real(b->sampling.temp));
        json_object_set_new(j, "top_k", json_integer(b->sampling.top_k));
        json_object_set_new(j, "top_p", json_real(b->sampling.top_p));
        json_object_set_new(j, "min_p", json_real(b->sampling.min_p));
        json_object_set_new(j, "max_tokens", json_integer(b->sampling.max_tokens));
        json_object_set_new(j, "seed", json_integer(b->sampling.seed));
        for (int k = 0; k < b->n_watches; k++)
            json_array_append_new(w, json_string(b->watches[k]));
        json_object_set_new(j, "watches", w);
        json_object_set_new(j, "watches_all", json_boolean(b->watches_all));
        json_object_set_new(j, "sees_lifecycle", json_boolean(b->sees_lifecycle));
        json_array_append_new(brains, j);
        json_object_set_new(sd, b->id, json_integer(b->sampling.seed));
    }
    json_object_set_new(o, "brains", brains);
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    *seeds = json_dumps(sd, JSON_COMPACT);
    json_decref(o);
    json_decref(sd);
    return text;
}

static char *models_json(const struct bj_config *c, const char *default_model)
{
    json_t *o = json_object();
    for (int i = 0; i < c->spec.n_brains; i++) {
        const char *m = bj_spec_brain_model(&c->spec, &c->spec.brains[i]);
        char path[PATH_MAX] = "";
        if (m && *m)
            bj_strlcpy(path, m, sizeof path);
        else if (default_model && *default_model)
            bj_strlcpy(path, default_model, sizeof path);
        else
            continue;
        const char *key = strncmp(path, "/proc/", 6) == 0 ? "(embedded)" : path;
        if (json_object_get(o, key))
            continue;
        char hash[64];
        uint64_t size = 0;
        json_t *j = json_object();
        if (model_hash(path, hash, sizeof hash, &size) == 0) {
            json_object_set_new(j, "hash", json_string(hash));
            json_object_set_new(j, "bytes", json_integer((json_int_t)size));
        } else {
            json_object_set_new(j, "error", json_string(strerror(errno)));
        }
        json_object_set_new(o, key, j);
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return text;
}

/* A replay starts each brain at the count it had when run R started (the prompts say it), in a
 * data directory of its own: counts there must never go backwards. */
static int replay_counts(struct bj_ops *o, const struct bj_config *c, uint32_t *initial_deaths, int *status)
{
    char a[PATH_MAX], b[PATH_MAX];
    *status = 2;
    if (!realpath(c->ops.replay_from, a) || !realpath(c->spec.data_dir, b)) {
        bj_error("--replay-from %s: %s", c->ops.replay_from, strerror(errno));
        return -1;
    }
    if (strcmp(a, b) == 0) {
        bj_error("a replay needs a --data-dir of its own (not %s, where run %ld is recorded)", a, c->ops.replay_run);
        return -1;
    }
    for (int i = 0; i < c->spec.n_brains; i++)
        if (initial_deaths[i] > 0) {
            bj_error("a replay needs a fresh --data-dir: %s already has deaths of %s", b, c->spec.brains[i].id);
            return -1;
        }
    char err[600];
    int st2;
    struct bj_store *src = bj_store_new_reader(a, &st2, err, sizeof err);
    if (!src) {
        bj_error("--replay: %s", err);
        return -1;
    }
    for (int i = 0; i < c->spec.n_brains; i++)
        initial_deaths[i] = bj_store_deaths_before_run(src, c->spec.brains[i].id, c->ops.replay_run);
    bj_store_free(src);
    bj_info("replaying run %ld of %s", c->ops.replay_run, a);
    return 0;
}

struct bj_ops *bj_ops_new(const struct bj_config *c, int argc, char **argv, const char *default_model,
                           uint32_t *initial_deaths, int *status)
{
    *status = 1;
    struct bj_ops *o = calloc(1, sizeof *o);
    if (!o) {
        bj_error("out of memory");
        return NULL;
    }
    o->c = c;
    /* A file-size limit (RLIMIT_FSIZE) then fails a write with EFBIG, which the store and the
     * journal report and retry, instead of killing the whole process. */
    signal(SIGXFSZ, SIG_IGN);
    for (int i = 0; i < c->spec.n_brains; i++)
        initial_deaths[i] = 0;
    if (c->ops.no_store)
        return o;
    struct bj_store_params sp;
    bj_store_params_default(&sp);
    sp.data_dir = c->spec.data_dir;
    sp.commit_ms = c->ops.store_commit_ms;
    sp.keep_days = c->ops.store_keep_days;
    sp.max_bytes = (uint64_t)(c->ops.store_max_mb * 1e6);
    char err[1024];
    o->store = bj_store_new(&sp, status, err, sizeof err);
    if (!o->store) {
        bj_error("%s", err);
        free(o);
        return NULL;
    }
    char *seeds = NULL, *config = config_json(c, &seeds), *models = models_json(c, default_model), *args = join_argv(argc, argv);
    char *hive_text = NULL;
    size_t len;
    if (c->hive_file[0] && bj_read_file(c->hive_file, &hive_text, &len) != 0)
        hive_text = NULL;
    struct bj_store_brain_info bi[BJ_MAX_BRAINS];
    for (int i = 0; i < c->spec.n_brains; i++) {
        const struct bj_brain_cfg *b = &c->spec.brains[i];
        bi[i] = (struct bj_store_brain_info){.id = b->id, .role = b->role, .model = b->model,
                                             .jar_tokens = b->jar_tokens, .seed = b->sampling.seed};
    }
    char llama_v[64];
    snprintf(llama_v, sizeof llama_v, "%s", llama_version());
    struct bj_store_run_info ri = {.lab = &c->spec.lab, .config = config, .hive_text = hive_text, .models = models, .seeds = seeds,
                                   .version = BJ_VERSION, .llama_version = llama_v, .argv = args,
                                   .pause_ms = c->spec.pause_ms, .n_brains = c->spec.n_brains, .brains = bi};
    int64_t run = bj_store_begin_run(o->store, &ri, err, sizeof err);
    free(config);
    free(seeds);
    free(models);
    free(args);
    free(hive_text);
    if (run < 0) {
        bj_error("store: %s", err);
        bj_ops_free(o);
        return NULL;
    }
    int restored = 0;
    for (int i = 0; i < c->spec.n_brains; i++) {
        initial_deaths[i] = bj_store_brain_deaths(o->store, c->spec.brains[i].id);
        restored += initial_deaths[i] > 0;
    }
    if (c->ops.replay_run > 0 && replay_counts(o, c, initial_deaths, status)) {
        bj_ops_free(o);
        return NULL;
    }
    bj_info("store: run %" PRId64 " in %s%s", run, bj_store_path(o->store),
            restored ? " (death counts restored)" : "");
    return o;
}

int bj_ops_start_store(struct bj_ops *o, struct bj_bus *bus)
{
    if (!o || !o->store)
        return 0;
    char err[300];
    if (bj_store_start(o->store, bus, err, sizeof err)) {
        bj_error("%s", err);
        return -1;
    }
    return 0;
}

int bj_ops_hive_started(struct bj_ops *o, struct bj_hive *h, struct bj_bus *bus)
{
    o->hive = h;
    const struct bj_ops_config *oc = &o->c->ops;
    if (!oc->no_watchdog) {
        struct bj_watchdog_params wp;
        bj_watchdog_params_default(&wp);
        if (oc->wd_sysroot[0])
            bj_watchdog_paths_under(&wp, oc->wd_sysroot);
        wp.hive = h;
        wp.bus = bus;
        wp.interval_ms = oc->wd_interval_ms;
        wp.mem_pct = oc->wd_mem;
        wp.psi = oc->wd_psi;
        wp.temp_c = oc->wd_temp;
        wp.gpu_pct = oc->wd_gpu;
        wp.calm_samples = oc->wd_calm;
        wp.kill_cooldown_ms = oc->wd_kill_cooldown_ms;
        wp.exit_after = oc->wd_exit_after;
        bj_strlcpy(wp.thermal_types, oc->wd_thermal_types, sizeof wp.thermal_types);
        o->wd = bj_watchdog_new(&wp);
        if (!o->wd || bj_watchdog_start(o->wd)) {
            bj_error("watchdog: could not start");
            return -1;
        }
    }
    bj_notify_ready();
    bj_ops_tick(o);
    return 0;
}

void bj_ops_tick(struct bj_ops *o)
{
    if (!o || !o->hive || o->stopping)
        return;
    o->last_tick_us = bj_now_us();
    /* The journal (the hive's crash_reports.log) is reopened when the store found the data
     * directory replaced or deleted, and after a size-based rotation (checked every 10 s). */
    if (o->store) {
        struct bj_store_stats ss;
        bj_store_stats(o->store, &ss);
        bool reopen = ss.dir_changes != o->dir_changes;
        o->dir_changes = ss.dir_changes;
        if (o->last_tick_us - o->last_rotate_us >= 10000000) {
            o->last_rotate_us = o->last_tick_us;
            reopen |= bj_store_rotate_journal(o->store) == 1;
        }
        if (reopen)
            bj_hive_reopen_logs(o->hive);
    }
    /* Keep-alives only while every engine beats: a stalled daemon is restarted by systemd. */
    if (bj_hive_stalled(o->hive, o->c->spec.stall_timeout_ms > 0 ? o->c->spec.stall_timeout_ms : 60000) == 0)
        bj_notify_watchdog();
    if (!bj_notify_enabled())
        return;
    struct bj_hive_snapshot snap;
    if (bj_hive_snapshot(o->hive, &snap) != 0)
        return;
    int alive = 0;
    uint64_t deaths = 0;
    for (int i = 0; i < snap.n_brains; i++) {
        alive += snap.brains[i].started && strcmp(snap.brains[i].state, "dead") != 0;
        deaths += snap.brains[i].deaths;
    }
    char store[120] = "off", wd[40] = "off";
    if (o->store) {
        struct bj_store_stats ss;
        bj_store_stats(o->store, &ss);
        if (ss.failing)
            snprintf(store, sizeof store, "FAILING (%" PRIu64 " waiting)", ss.backlog);
        else
            snprintf(store, sizeof store, "ok");
    }
    if (o->wd) {
        struct bj_watchdog_stats ws;
        bj_watchdog_stats(o->wd, &ws);
        snprintf(wd, sizeof wd, "%s", bj_wd_stage_name(ws.stage));
    }
    bj_notify_status("%d/%d brains alive, %" PRIu64 " deaths in all, %.1f tok/s; store %s; watchdog %s", alive,
                     snap.n_brains, deaths, snap.tok_s, store, wd);
    bj_hive_snapshot_free(&snap);
}

void bj_ops_stopping(struct bj_ops *o)
{
    if (!o || o->stopping)
        return;
    o->stopping = true;
    bj_notify_stopping();
    if (o->wd)
        bj_watchdog_stop(o->wd); /* no kills during shutdown */
}

int bj_ops_stop(struct bj_ops *o, bool clean)
{
    if (!o)
        return 0;
    bj_ops_stopping(o);
    int rc = 0;
    if (o->store) {
        rc = bj_store_stop(o->store, clean, 3000);
        struct bj_store_stats ss;
        bj_store_stats(o->store, &ss);
        bj_info("store: %" PRIu64 " events, %" PRIu64 " rows in %" PRIu64 " commits; %" PRIu64 " failed commits, %" PRIu64
                " events overflowed", ss.events, ss.rows, ss.commits, ss.commit_errors, ss.overflow);
    }
    return rc;
}

void bj_ops_refused(struct bj_ops *o, const char *reason)
{
    if (o)
        bj_store_refuse_run(o->store, reason);
}

int bj_ops_exit_status(const struct bj_ops *o)
{
    if (!o || !o->wd)
        return 0;
    struct bj_watchdog_stats ws;
    bj_watchdog_stats(o->wd, &ws);
    return ws.exit_requested ? 3 : 0;
}

struct bj_store *bj_ops_store(struct bj_ops *o) { return o ? o->store : NULL; }
struct bj_watchdog *bj_ops_watchdog(struct bj_ops *o) { return o ? o->wd : NULL; }

void bj_ops_free(struct bj_ops *o)
{
    if (!o)
        return;
    bj_watchdog_free(o->wd);
    bj_store_free(o->store);
    free(o);
}
