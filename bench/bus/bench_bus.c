/* bench_bus: what publishing an event costs the publisher (an engine thread), with 1, 100 and
 * 1000 subscriptions, one of which is stalled (never read, as a hung WebSocket client).
 *
 * The other subscriptions are drained by one consumer thread that waits on their descriptors
 * with epoll, as an event loop (the web server) would. The events are a hive's usual mix: tokens
 * of three brains, a thought every 50 tokens, a status every 100. Each configuration runs 5
 * times; the median, min and max of the publisher's ns per event are printed, for
 * bj_bus_publish (one event) and bj_bus_publish_many (a step of 3 events, as engines publish).
 *
 * Usage: bench_bus [EVENTS_PER_RUN_AT_1000_SUBS]   (default 20000; fewer subscriptions get more)
 * Not a test: run by hand (docs/BENCHMARKS.md). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "bus.h"
#include "util.h"

#define RUNS 5

struct consumer {
    struct bj_sub **subs;
    int n;
    int ep;
    atomic_bool stop;
    uint64_t taken;
};

static void *consume(void *arg)
{
    struct consumer *c = arg;
    struct epoll_event evs[64];
    struct bj_event ev;
    for (;;) {
        int n = epoll_wait(c->ep, evs, 64, 10);
        for (int i = 0; i < n; i++) {
            struct bj_sub *s = evs[i].data.ptr;
            while (bj_sub_next(s, &ev, 0) == 1) {
                bj_event_clear(&ev);
                c->taken++;
            }
        }
        if (n <= 0 && atomic_load(&c->stop))
            break;
    }
    return NULL;
}

static const char *const k_brains[] = {"SUBJECT", "OBSERVER", "GOD"};

/* The i-th event of the mix. */
static void make_event(long i, struct bj_event *ev)
{
    memset(ev, 0, sizeof *ev);
    int b = (int)(i % 3);
    strcpy(ev->brain, k_brains[b]);
    ev->thought = (uint32_t)(i / 150) + 1;
    ev->time_us = 1; /* skip the clock: the bus's own cost */
    if (i % 100 == 99) {
        ev->type = BJ_EV_STATUS;
        strcpy(ev->state, "thinking");
    } else if (i % 150 >= 147) {
        ev->type = BJ_EV_THOUGHT;
        ev->complete = true;
        ev->text = (char *)"a whole thought of a few dozen words, as a brain thinks them in its jar";
    } else {
        ev->type = BJ_EV_TOKEN;
        ev->text = (char *)" word";
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* One run: returns the publisher's ns per event. */
static double run_once(int n_subs, long n_events, int batch, uint64_t *stalled_dropped, uint64_t *stalled_merged)
{
    struct bj_bus *bus = bj_bus_new();
    struct bj_sub *stalled = bj_bus_subscribe(bus, "stalled", BJ_EV_ALL, 256);
    struct consumer c = {.n = n_subs - 1};
    c.subs = calloc((size_t)(c.n > 0 ? c.n : 1), sizeof *c.subs);
    c.ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < c.n; i++) {
        char name[32];
        snprintf(name, sizeof name, "live%d", i);
        c.subs[i] = bj_bus_subscribe(bus, name, BJ_EV_ALL, 1024);
        struct epoll_event ee = {.events = EPOLLIN, .data.ptr = c.subs[i]};
        epoll_ctl(c.ep, EPOLL_CTL_ADD, bj_sub_fd(c.subs[i]), &ee);
    }
    atomic_init(&c.stop, false);
    pthread_t th;
    if (c.n > 0)
        pthread_create(&th, NULL, consume, &c);

    struct bj_event evs[3];
    int64_t t0 = bj_now_us();
    for (long i = 0; i < n_events; i += batch) {
        for (int k = 0; k < batch; k++)
            make_event(i + k, &evs[k]);
        if (batch == 1)
            bj_bus_publish(bus, &evs[0]);
        else
            bj_bus_publish_many(bus, evs, (size_t)batch);
    }
    int64_t t1 = bj_now_us();

    atomic_store(&c.stop, true);
    if (c.n > 0)
        pthread_join(th, NULL);
    *stalled_dropped = bj_sub_dropped(stalled);
    *stalled_merged = bj_sub_coalesced(stalled);
    for (int i = 0; i < c.n; i++)
        bj_bus_unsubscribe(bus, c.subs[i]);
    bj_bus_unsubscribe(bus, stalled);
    bj_bus_free(bus);
    close(c.ep);
    free(c.subs);
    return (double)(t1 - t0) * 1000.0 / (double)n_events;
}

int main(int argc, char **argv)
{
    long base = argc > 1 ? atol(argv[1]) : 20000;
    if (base < 300)
        base = 300;
    const int subs[] = {1, 100, 1000};
    printf("bus publish cost, ns per event (median of %d runs; min-max), one subscription stalled\n", RUNS);
    printf("%-6s %-22s %10s %22s %14s\n", "subs", "call", "median", "min-max", "events/run");
    for (size_t si = 0; si < sizeof subs / sizeof subs[0]; si++) {
        long n_events = base * 1000 / subs[si];
        if (n_events > 3000000)
            n_events = 3000000;
        n_events -= n_events % 3;
        for (int batch = 1; batch <= 3; batch += 2) {
            double t[RUNS];
            uint64_t dropped = 0, merged = 0;
            for (int r = 0; r < RUNS; r++)
                t[r] = run_once(subs[si], n_events, batch, &dropped, &merged);
            qsort(t, RUNS, sizeof t[0], cmp_double);
            char range[48];
            snprintf(range, sizeof range, "%.0f-%.0f", t[0], t[RUNS - 1]);
            printf("%-6d %-22s %10.0f %22s %14ld\n", subs[si], batch == 1 ? "bj_bus_publish" : "bj_bus_publish_many(3)",
                   t[RUNS / 2], range, n_events);
            fflush(stdout);
            if (si == 0 && batch == 1)
                printf("       (the stalled subscription: %llu tokens merged, %llu dropped, per run)\n",
                       (unsigned long long)merged, (unsigned long long)dropped);
        }
    }
    return 0;
}
