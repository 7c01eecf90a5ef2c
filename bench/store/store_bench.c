/* store_bench: how many events per second the store's writer takes from the bus and commits.
 *
 * Publishes a hive-like stream as fast as one thread can: per thought 20 token events, the
 * thought (about 300 bytes of text) and two observations by watchers; every 10th thought a death
 * and a resurrection. Measures from the first publish until every row is committed (the writer's
 * own pace: WAL, synchronous=NORMAL, transactions of up to --batch events or --commit-ms).
 *
 *   bench_store [--thoughts N] [--dir DIR] [--batch N] [--commit-ms MS]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "store.h"
#include "util.h"

static void pub(struct bj_bus *bus, enum bj_event_type t, const char *brain, uint32_t n, uint32_t thought, char *text)
{
    struct bj_event ev = {.type = t, .crash_count = n, .thought = thought, .complete = true, .text = text};
    bj_strlcpy(ev.brain, brain, sizeof ev.brain);
    if (t == BJ_EV_DEATH)
        bj_strlcpy(ev.cause, "JAR_FULL", sizeof ev.cause);
    if (t == BJ_EV_OBSERVE)
        bj_strlcpy(ev.from, "SUBJECT", sizeof ev.from);
    bj_bus_publish(bus, &ev);
}

int main(int argc, char **argv)
{
    long thoughts = 20000, batch = 512, commit_ms = 100;
    char dir[512];
    snprintf(dir, sizeof dir, "/tmp/bench-store-%d", (int)getpid());
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--thoughts")) thoughts = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--dir")) bj_strlcpy(dir, argv[i + 1], sizeof dir);
        else if (!strcmp(argv[i], "--batch")) batch = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--commit-ms")) commit_ms = atol(argv[i + 1]);
        else { fprintf(stderr, "usage: bench_store [--thoughts N] [--dir DIR] [--batch N] [--commit-ms MS]\n"); return 2; }
    }
    struct bj_store_params p;
    bj_store_params_default(&p);
    p.data_dir = dir;
    p.batch = (int)batch;
    p.commit_ms = (int)commit_ms;
    char err[512];
    int status;
    struct bj_store *st = bj_store_new(&p, &status, err, sizeof err);
    if (!st) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    struct bj_store_brain_info bi[] = {{.id = "SUBJECT"}, {.id = "OBSERVER"}, {.id = "GOD"}};
    struct bj_store_run_info ri = {.config = "{}", .version = "bench", .n_brains = 3, .brains = bi};
    struct bj_bus *bus = bj_bus_new();
    if (bj_store_begin_run(st, &ri, err, sizeof err) < 0 || bj_store_start(st, bus, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    static const char *const brains[] = {"SUBJECT", "OBSERVER", "GOD"};
    char text[320];
    memset(text, 'a', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    uint64_t events = 0, rows = 0;
    int64_t t0 = bj_now_us();
    uint32_t deaths[3] = {0, 0, 0};
    for (long i = 0; i < thoughts; i++) {
        int b = (int)(i % 3);
        for (int k = 0; k < 20; k++)
            pub(bus, BJ_EV_TOKEN, brains[b], deaths[b], (uint32_t)i, "tok ");
        pub(bus, BJ_EV_THOUGHT, brains[b], deaths[b], (uint32_t)i, text);
        pub(bus, BJ_EV_OBSERVE, brains[(b + 1) % 3], 0, 0, text);
        pub(bus, BJ_EV_OBSERVE, brains[(b + 2) % 3], 0, 0, text);
        events += 23, rows += 3;
        if (i % 10 == 9) {
            deaths[b]++;
            pub(bus, BJ_EV_DEATH, brains[b], deaths[b], 0, NULL);
            pub(bus, BJ_EV_RESURRECTION, brains[b], deaths[b], 0, NULL);
            events += 2, rows += 2;
        }
    }
    int64_t t_pub = bj_now_us();
    struct bj_store_stats ss;
    for (;;) {
        bj_store_stats(st, &ss);
        if (ss.rows >= rows)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    int64_t t1 = bj_now_us();
    double s = (double)(t1 - t0) / 1e6;
    printf("store bench: %" PRIu64 " events (%" PRIu64 " rows: thoughts, observations, deaths, resurrections; the rest "
           "tokens) in %.2f s (published in %.2f s) = %.0f events/s, %.0f rows/s; %" PRIu64 " commits, backlog peak %"
           PRIu64 ", overflow %" PRIu64 "\n", events, rows, s, (double)(t_pub - t0) / 1e6, (double)events / s,
           (double)rows / s, ss.commits, ss.backlog_peak, ss.overflow);
    bj_store_stop(st, true, 5000);
    bj_store_free(st);
    bj_bus_free(bus);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        return 1;
    return 0;
}
