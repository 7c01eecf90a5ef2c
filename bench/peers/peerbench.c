/* peerbench: throughput, latency and idle-link memory of brainjar's peer links (bench/peers/run).
 *
 *   peerbench recv [--port P]                      a node that counts remote thoughts and their latency
 *   peerbench send --peer HOST:PORT [--count N] [--rate R] [--size B] [--window W]
 *                                                  a node that publishes N thoughts (R per second,
 *                                                  0: as fast as the link takes them, at most W in flight)
 *   peerbench idle [--links N]                     memory per idle link: N brainjar links to one node
 *
 * Two processes, two nodes, real TCP over localhost: each thought carries its send time
 * (CLOCK_REALTIME, one host) and the receiver takes the latency from bus publish on one node to
 * the remote event on the other's bus. No models: only the link layer is measured. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "log.h"
#include "peer.h"
#include "util.h"
#include "wire.h"

static int64_t wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char *arg(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return def;
}

static struct bj_peer *start(struct bj_bus *bus, const char *id, int port, const char *dial, int max_links)
{
    struct bj_peer_params p = bj_peer_params_default();
    p.bus = bus;
    bj_strlcpy(p.node_id, id, sizeof p.node_id);
    p.listen = port >= 0;
    p.port = port;
    p.rate_msgs = 1000000;
    p.max_links = max_links;
    p.queue_bytes = 8u << 20;
    if (dial) {
        if (bj_peer_parse_addr(dial, &p.dial[0])) {
            fprintf(stderr, "peerbench: bad address %s\n", dial);
            exit(2);
        }
        p.n_dial = 1;
    }
    char err[256];
    struct bj_peer *pe = bj_peer_new(&p, err, sizeof err);
    if (!pe || bj_peer_start(pe, err, sizeof err)) {
        fprintf(stderr, "peerbench: %s\n", err);
        exit(1);
    }
    return pe;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int do_recv(int argc, char **argv)
{
    int port = atoi(arg(argc, argv, "--port", "0"));
    struct bj_bus *bus = bj_bus_new();
    struct bj_sub *sub = bj_bus_subscribe(bus, "bench", BJ_EV_MASK(BJ_EV_THOUGHT), 1024);
    struct bj_peer *pe = start(bus, "RECV", port, NULL, 16);
    printf("port %d\n", bj_peer_port(pe));
    fflush(stdout);
    size_t cap = 1 << 20, n = 0;
    int64_t *lat = malloc(cap * sizeof *lat);
    int64_t first = 0, last = 0;
    struct bj_event ev;
    for (;;) {
        int r = bj_sub_next(sub, &ev, first ? 2000 : 60000);
        if (r != 1)
            break;
        int64_t now = wall_us();
        long long sent;
        if (ev.node[0] && ev.text && sscanf(ev.text, "t=%lld", &sent) == 1) {
            if (!first)
                first = now;
            last = now;
            if (n == cap)
                lat = realloc(lat, (cap *= 2) * sizeof *lat);
            lat[n++] = now - sent;
        }
        bj_event_clear(&ev);
    }
    if (n == 0) {
        printf("received nothing\n");
        return 1;
    }
    qsort(lat, n, sizeof *lat, cmp_i64);
    double secs = (double)(last - first) / 1e6;
    printf("received %zu thoughts in %.2f s = %.0f msg/s; latency p50 %.0f us, p99 %.0f us, max %.0f us\n", n, secs,
           secs > 0 ? (double)(n - 1) / secs : 0.0, (double)lat[n / 2], (double)lat[(size_t)((double)n * 0.99)],
           (double)lat[n - 1]);
    bj_peer_free(pe);
    bj_bus_unsubscribe(bus, sub);
    bj_bus_free(bus);
    free(lat);
    return 0;
}

static int do_send(int argc, char **argv)
{
    const char *peer = arg(argc, argv, "--peer", NULL);
    long count = atol(arg(argc, argv, "--count", "100000"));
    double rate = atof(arg(argc, argv, "--rate", "0"));
    int size = atoi(arg(argc, argv, "--size", "300"));
    long window = atol(arg(argc, argv, "--window", "2000"));
    if (!peer) {
        fprintf(stderr, "peerbench send: --peer HOST:PORT\n");
        return 2;
    }
    struct bj_bus *bus = bj_bus_new();
    struct bj_sub *sub = bj_bus_subscribe(bus, "bench", BJ_EV_MASK(BJ_EV_LINK), 64);
    struct bj_peer *pe = start(bus, "SEND", -1, peer, 16);
    struct bj_event ev;
    bool up = false;
    int64_t end = bj_now_us() + 10 * 1000000;
    while (!up && bj_now_us() < end && bj_sub_next(sub, &ev, 100) >= 0) {
        if (ev.type == BJ_EV_LINK && strcmp(ev.state, "hello") == 0)
            up = true;
        bj_event_clear(&ev);
    }
    if (!up) {
        fprintf(stderr, "peerbench send: no link to %s\n", peer);
        return 1;
    }
    char *text = malloc((size_t)size + 64);
    int64_t t0 = bj_now_us();
    for (long i = 0; i < count; i++) {
        if (rate > 0) {
            int64_t due = t0 + (int64_t)((double)i * 1e6 / rate);
            int64_t now = bj_now_us();
            if (due > now)
                usleep((useconds_t)(due - now));
        } else {
            struct bj_peer_stats st;
            for (;;) { /* the application's flow control: at most `window` unsent */
                bj_peer_get_stats(pe, &st);
                if ((long)(i - (long)st.msgs_out) < window)
                    break;
                usleep(50);
            }
        }
        int n = snprintf(text, (size_t)size + 64, "t=%lld ", (long long)wall_us());
        memset(text + n, 'x', (size_t)(size > n ? size - n : 0));
        text[size > n ? size : n] = '\0';
        struct bj_event t = {.type = BJ_EV_THOUGHT, .thought = (uint32_t)i + 1, .complete = true};
        strcpy(t.brain, "SUBJECT");
        t.text = text;
        bj_bus_publish(bus, &t);
    }
    /* let the queue drain */
    struct bj_peer_stats st;
    end = bj_now_us() + 30 * 1000000;
    do {
        usleep(10000);
        bj_peer_get_stats(pe, &st);
    } while ((long)st.msgs_out < count && bj_now_us() < end);
    double secs = (double)(bj_now_us() - t0) / 1e6;
    printf("sent %ld thoughts of %d bytes in %.2f s = %.0f msg/s (%llu not queued)\n", count, size, secs,
           (double)count / secs, (unsigned long long)st.out_dropped);
    usleep(200000);
    bj_peer_free(pe);
    bj_bus_unsubscribe(bus, sub);
    bj_bus_free(bus);
    free(text);
    return 0;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

static long sock_mem_pages(void)
{
    FILE *f = fopen("/proc/net/sockstat", "r");
    char line[256];
    long inuse, mem = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "TCP: inuse %ld orphan %*d tw %*d alloc %*d mem %ld", &inuse, &mem) == 2)
            break;
    if (f)
        fclose(f);
    return mem;
}

static int do_idle(int argc, char **argv)
{
    int links = atoi(arg(argc, argv, "--links", "1000"));
    struct rlimit rl = {.rlim_cur = (rlim_t)links * 2 + 256, .rlim_max = (rlim_t)links * 2 + 256};
    if (setrlimit(RLIMIT_NOFILE, &rl)) {
        fprintf(stderr, "peerbench idle: cannot raise the descriptor limit to %d: %s\n", links * 2 + 256,
                strerror(errno));
        return 1;
    }
    struct bj_bus *bus = bj_bus_new();
    struct bj_sub *sub = bj_bus_subscribe(bus, "bench", BJ_EV_MASK(BJ_EV_THOUGHT), 64);
    struct bj_peer *pe = start(bus, "HUB", 0, NULL, links + 16);
    int port = bj_peer_port(pe);
    sleep(1);
    long before = rss_kb(), sock_before = sock_mem_pages();
    pid_t child = fork();
    if (child == 0) {
        /* N brainjar nodes' worth of links: each says hello as a brainjar node and then keeps
         * quiet (the hub's keepalives arrive and are read) */
        int *fds = calloc((size_t)links, sizeof *fds);
        for (int i = 0; i < links; i++) {
            fds[i] = socket(AF_INET, SOCK_STREAM, 0);
            struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
            inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
            if (connect(fds[i], (struct sockaddr *)&sa, sizeof sa))
                _exit(1);
            struct bj_wire_msg m;
            bj_wire_msg_init(&m, BJ_WIRE_HANDSHAKE);
            snprintf(m.sender_id, sizeof m.sender_id, "IDLE%d", i);
            strcpy(m.agent, "brainjar/bench");
            char buf[1024];
            int n = bj_wire_encode(&m, buf, sizeof buf);
            if (write(fds[i], buf, (size_t)n) != n)
                _exit(1);
        }
        char sink[4096];
        for (;;) { /* read what the hub sends so that no buffer fills */
            for (int i = 0; i < links; i++)
                while (recv(fds[i], sink, sizeof sink, MSG_DONTWAIT) > 0) {
                }
            usleep(200000);
        }
    }
    struct bj_peer_stats st;
    int64_t end = bj_now_us() + 60 * 1000000;
    do {
        usleep(100000);
        bj_peer_get_stats(pe, &st);
    } while ((int)st.links_up < links && bj_now_us() < end);
    sleep(5); /* a few keepalive rounds */
    bj_peer_get_stats(pe, &st);
    long after = rss_kb(), sock_after = sock_mem_pages();
    printf("%llu idle links up; hub RSS %ld -> %ld KB: %.2f KB per link in the process; kernel TCP memory "
           "%ld -> %ld pages (both ends)\n", (unsigned long long)st.links_up, before, after,
           (double)(after - before) / links, sock_before, sock_after);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    bj_peer_free(pe);
    bj_bus_unsubscribe(bus, sub);
    bj_bus_free(bus);
    return st.links_up == (uint64_t)links ? 0 : 1;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    bj_log_set_level(BJ_LOG_WARN);
    if (argc >= 2 && strcmp(argv[1], "recv") == 0)
        return do_recv(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "send") == 0)
        return do_send(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "idle") == 0)
        return do_idle(argc, argv);
    fprintf(stderr, "usage: peerbench recv|send|idle [options] (see bench/peers/peerbench.c)\n");
    return 2;
}
