/* Unit tests for peer links, two or three nodes in one process (one bus each, no hive): events
 * both ways with `node` set, long thoughts split and put together again, no relaying of remote
 * events, duplicate links between two nodes folded into one, redial after the other side comes
 * back, bad peers counted and disconnected, HMAC authentication (right key, wrong key, old nodes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bus.h"
#include "peer.h"
#include "util.h"

struct node {
    struct bj_bus *bus;
    struct bj_sub *sub;
    struct bj_peer *peer;
};

static void node_start(struct node *n, const char *id, int port, const char *dial_to, const char *key, bool legacy)
{
    n->bus = bj_bus_new();
    n->sub = bj_bus_subscribe(n->bus, "test", BJ_EV_ALL, 10000);
    struct bj_peer_params p = bj_peer_params_default();
    p.bus = n->bus;
    bj_strlcpy(p.node_id, id, sizeof p.node_id);
    p.listen = port >= 0;
    p.port = port;
    p.backoff_min_ms = 50;
    p.backoff_max_ms = 200;
    if (dial_to) {
        assert_int_equal(bj_peer_parse_addr(dial_to, &p.dial[0]), 0);
        p.n_dial = 1;
    }
    if (key)
        bj_strlcpy(p.key_file, key, sizeof p.key_file);
    p.allow_legacy = legacy;
    char err[256];
    n->peer = bj_peer_new(&p, err, sizeof err);
    if (!n->peer || bj_peer_start(n->peer, err, sizeof err))
        fail_msg("peer: %s", err);
}

static void node_stop(struct node *n)
{
    bj_peer_stop(n->peer);
    bj_peer_free(n->peer);
    bj_bus_close(n->bus);
    struct bj_event ev;
    while (bj_sub_next(n->sub, &ev, 0) == 1)
        bj_event_clear(&ev);
    bj_bus_unsubscribe(n->bus, n->sub);
    bj_bus_free(n->bus);
}

static int64_t ms(void) { return bj_now_us() / 1000; }

/* Waits for an event of type t (with node set when remote) whose text starts with prefix. */
static bool wait_event(struct node *n, enum bj_event_type t, bool remote, const char *prefix, struct bj_event *out,
                       int timeout_ms)
{
    int64_t end = ms() + timeout_ms;
    struct bj_event ev;
    while (ms() < end) {
        if (bj_sub_next(n->sub, &ev, 50) != 1)
            continue;
        bool match = ev.type == t && (ev.node[0] != 0) == remote &&
                     (!prefix || (ev.text && strncmp(ev.text, prefix, strlen(prefix)) == 0));
        if (match) {
            if (out)
                *out = ev;
            else
                bj_event_clear(&ev);
            return true;
        }
        bj_event_clear(&ev);
    }
    return false;
}

static bool wait_link(struct node *n, const char *state, int timeout_ms)
{
    int64_t end = ms() + timeout_ms;
    struct bj_event ev;
    while (ms() < end) {
        if (bj_sub_next(n->sub, &ev, 50) != 1)
            continue;
        bool match = ev.type == BJ_EV_LINK && strcmp(ev.state, state) == 0;
        bj_event_clear(&ev);
        if (match)
            return true;
    }
    return false;
}

static void publish(struct node *n, enum bj_event_type t, const char *brain, const char *text, uint32_t crashes)
{
    struct bj_event ev = {.type = t, .crash_count = crashes, .thought = 1, .complete = true};
    bj_strlcpy(ev.brain, brain, sizeof ev.brain);
    if (t == BJ_EV_DEATH)
        strcpy(ev.cause, "JAR_FULL");
    ev.text = (char *)text;
    bj_bus_publish(n->bus, &ev);
}

static char addr_buf[64];
static const char *addr_of(struct node *n)
{
    snprintf(addr_buf, sizeof addr_buf, "127.0.0.1:%d", bj_peer_port(n->peer));
    return addr_buf;
}

static void test_both_ways(void **state)
{
    (void)state;
    struct node a, b;
    node_start(&a, "A", 0, NULL, NULL, false);
    node_start(&b, "B", -1, addr_of(&a), NULL, false);
    assert_true(wait_link(&a, "hello", 5000));
    assert_true(wait_link(&b, "hello", 5000));

    publish(&a, BJ_EV_THOUGHT, "SUBJECT", "from A, caf\xc3\xa9", 0);
    struct bj_event ev;
    assert_true(wait_event(&b, BJ_EV_THOUGHT, true, "from A", &ev, 5000));
    assert_string_equal(ev.text, "from A, caf\xc3\xa9");
    assert_string_equal(ev.brain, "SUBJECT");
    assert_string_equal(ev.node, "A");
    bj_event_clear(&ev);

    publish(&b, BJ_EV_THOUGHT, "OBSERVER", "from B", 0);
    assert_true(wait_event(&a, BJ_EV_THOUGHT, true, "from B", &ev, 5000));
    assert_string_equal(ev.node, "B");
    assert_string_equal(ev.brain, "OBSERVER");
    bj_event_clear(&ev);

    /* a long thought is split on the wire and whole again on the other side */
    size_t n = 20000;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = "long thought "[i % 13];
    memcpy(big, "LONG", 4);
    big[n] = '\0';
    publish(&a, BJ_EV_THOUGHT, "SUBJECT", big, 0);
    assert_true(wait_event(&b, BJ_EV_THOUGHT, true, "LONG", &ev, 5000));
    assert_string_equal(ev.text, big);
    bj_event_clear(&ev);
    free(big);

    /* deaths arrive as remote deaths with their cause and count */
    publish(&a, BJ_EV_DEATH, "SUBJECT", "cut short", 7);
    assert_true(wait_event(&b, BJ_EV_DEATH, true, NULL, &ev, 5000));
    assert_string_equal(ev.cause, "JAR_FULL");
    assert_int_equal(ev.crash_count, 7);
    assert_string_equal(ev.node, "A");
    bj_event_clear(&ev);

    /* remote events are never relayed: B's copy of A's thought does not go back to A */
    struct bj_event remote = {.type = BJ_EV_THOUGHT, .complete = true};
    strcpy(remote.brain, "X");
    strcpy(remote.node, "elsewhere");
    remote.text = "relay me";
    bj_bus_publish(b.bus, &remote);
    publish(&b, BJ_EV_THOUGHT, "OBSERVER", "marker", 0);
    assert_true(wait_event(&a, BJ_EV_THOUGHT, true, "marker", NULL, 5000));
    struct bj_peer_stats st;
    bj_peer_get_stats(b.peer, &st);
    assert_int_equal(st.bad, 0);
    node_stop(&b);
    assert_true(wait_link(&a, "down", 5000));
    node_stop(&a);
}

static void test_duplicate_links_fold(void **state)
{
    (void)state;
    struct node c, d;
    node_start(&c, "C", 0, NULL, NULL, false);
    int cport = bj_peer_port(c.peer);
    node_start(&d, "D", 0, addr_of(&c), NULL, false);
    char daddr[64];
    bj_strlcpy(daddr, addr_of(&d), sizeof daddr);
    node_stop(&c);
    /* C again on the same port, now dialing D too */
    node_start(&c, "C", cport, daddr, NULL, false);
    int64_t end = ms() + 5000;
    struct bj_peer_stats sc, sd;
    do {
        usleep(100 * 1000);
        bj_peer_get_stats(c.peer, &sc);
        bj_peer_get_stats(d.peer, &sd);
    } while (ms() < end && !(sc.links_up == 1 && sd.links_up == 1 && sd.dialed >= 2 && sc.accepted >= 1));
    usleep(500 * 1000); /* and it stays so */
    bj_peer_get_stats(c.peer, &sc);
    bj_peer_get_stats(d.peer, &sd);
    assert_int_equal(sc.links_up, 1);
    assert_int_equal(sd.links_up, 1);
    /* the link that is left carries thoughts once */
    publish(&c, BJ_EV_THOUGHT, "SUBJECT", "once", 0);
    assert_true(wait_event(&d, BJ_EV_THOUGHT, true, "once", NULL, 5000));
    assert_false(wait_event(&d, BJ_EV_THOUGHT, true, "once", NULL, 500));
    node_stop(&c);
    node_stop(&d);
}

static void test_redial(void **state)
{
    (void)state;
    struct node a, b;
    node_start(&a, "A", 0, NULL, NULL, false);
    int port = bj_peer_port(a.peer);
    node_start(&b, "B", -1, addr_of(&a), NULL, false);
    assert_true(wait_link(&b, "hello", 5000));
    node_stop(&a);
    assert_true(wait_link(&b, "down", 5000));
    node_start(&a, "A2", port, NULL, NULL, false);
    assert_true(wait_link(&b, "hello", 5000));
    publish(&a, BJ_EV_THOUGHT, "SUBJECT", "after redial", 0);
    assert_true(wait_event(&b, BJ_EV_THOUGHT, true, "after redial", NULL, 5000));
    node_stop(&b);
    node_stop(&a);
}

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* Reads until the peer closes (returns true) or timeout. */
static bool closed_by_peer(int fd, int timeout_ms)
{
    int64_t end = ms() + timeout_ms;
    char buf[4096];
    while (ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) == 1) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n <= 0)
                return true;
        }
    }
    return false;
}

static void test_bad_peers(void **state)
{
    (void)state;
    struct node a;
    node_start(&a, "A", 0, NULL, NULL, false);
    int port = bj_peer_port(a.peer);

    /* an original-style message without sender_id claiming a death: dropped, counted, never an event */
    int fd = raw_connect(port);
    const char *no_sender = "{\"type\": \"DEATH\", \"crash_count\": 99, \"error\": \"OUT_OF_MEMORY\"}";
    assert_true(write(fd, no_sender, strlen(no_sender)) > 0);
    const char *good = "{\"type\": \"THOUGHT\", \"sender_id\": \"OLD\", \"content\": \"still fine\"}";
    assert_true(write(fd, good, strlen(good)) > 0);
    assert_true(wait_event(&a, BJ_EV_THOUGHT, true, "still fine", NULL, 5000));
    struct bj_peer_stats st;
    bj_peer_get_stats(a.peer, &st);
    assert_int_equal(st.bad, 1);
    close(fd);

    /* garbage: disconnected */
    fd = raw_connect(port);
    char junk[2048];
    memset(junk, 'z', sizeof junk);
    for (int i = 0; i < 50; i++)
        if (write(fd, junk, sizeof junk) < 0)
            break;
    assert_true(closed_by_peer(fd, 5000));
    close(fd);

    /* wrong types, again and again: disconnected */
    fd = raw_connect(port);
    const char *wrong = "{\"type\": \"THOUGHT\", \"sender_id\": \"x\", \"content\": 5}";
    for (int i = 0; i < 40; i++)
        if (write(fd, wrong, strlen(wrong)) < 0)
            break;
    assert_true(closed_by_peer(fd, 5000));
    close(fd);

    /* huge objects: dropped (never buffered whole) and disconnected */
    fd = raw_connect(port);
    char *huge = malloc(1 << 20);
    memset(huge, 'a', 1 << 20);
    memcpy(huge, "{\"type\": \"THOUGHT\", \"content\": \"", 33);
    bool kicked = false;
    for (int i = 0; i < 8 && !kicked; i++) {
        if (write(fd, huge, 1 << 20) < 0)
            kicked = true;
        if (write(fd, "\"}", 2) < 0)
            kicked = true;
    }
    assert_true(kicked || closed_by_peer(fd, 5000));
    free(huge);
    close(fd);

    bj_peer_get_stats(a.peer, &st);
    assert_true(st.garbage_bytes > 0);
    assert_true(st.oversized >= 1);
    assert_true(st.kicked >= 3);
    /* and it still serves good peers */
    struct node b;
    node_start(&b, "B", -1, addr_of(&a), NULL, false);
    assert_true(wait_link(&b, "hello", 5000));
    node_stop(&b);
    node_stop(&a);
}

static void test_flood(void **state)
{
    (void)state;
    struct node a;
    a.bus = bj_bus_new();
    a.sub = bj_bus_subscribe(a.bus, "test", BJ_EV_ALL, 100000);
    struct bj_peer_params p = bj_peer_params_default();
    p.bus = a.bus;
    p.listen = true;
    p.port = 0;
    p.rate_msgs = 50;
    char err[256];
    a.peer = bj_peer_new(&p, err, sizeof err);
    assert_non_null(a.peer);
    assert_int_equal(bj_peer_start(a.peer, err, sizeof err), 0);
    int fd = raw_connect(bj_peer_port(a.peer));
    char msg[128];
    int len = snprintf(msg, sizeof msg, "{\"type\":\"STATUS\",\"sender_id\":\"F\",\"content\":\"x\"}\n");
    char *burst = malloc(2000 * (size_t)len);
    for (int i = 0; i < 2000; i++)
        memcpy(burst + i * len, msg, (size_t)len);
    bool closed = write(fd, burst, 2000 * (size_t)len) < 0 || closed_by_peer(fd, 5000);
    free(burst);
    struct bj_peer_stats st;
    bj_peer_get_stats(a.peer, &st);
    assert_true(st.flood_dropped > 0);
    assert_true(closed);
    close(fd);
    node_stop(&a);
}

static const char *write_key(const char *name, const char *text)
{
    static char path[2][512];
    static int k;
    const char *base = getenv("BJ_TEST_TMP") ? getenv("BJ_TEST_TMP") : "/tmp";
    bj_mkdirs(base);
    char *p = path[k++ % 2];
    snprintf(p, 512, "%s/peer-%d-%s.key", base, (int)getpid(), name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
    return p;
}

static void test_auth(void **state)
{
    (void)state;
    const char *k1 = write_key("k1", "correct horse battery staple\n");
    const char *k2 = write_key("k2", "another key of enough length\n");
    struct node a, b;
    node_start(&a, "A", 0, NULL, k1, false);
    node_start(&b, "B", -1, addr_of(&a), k1, false);
    assert_true(wait_link(&a, "hello", 5000));
    publish(&b, BJ_EV_THOUGHT, "SUBJECT", "signed", 0);
    assert_true(wait_event(&a, BJ_EV_THOUGHT, true, "signed", NULL, 5000));
    publish(&a, BJ_EV_THOUGHT, "SUBJECT", "signed back", 0);
    assert_true(wait_event(&b, BJ_EV_THOUGHT, true, "signed back", NULL, 5000));
    /* a long thought: signed parts, each still under 4 KB with its MAC, put together again */
    char *big = malloc(12001);
    for (int i = 0; i < 12000; i++)
        big[i] = "signed long "[i % 12];
    big[12000] = '\0';
    publish(&a, BJ_EV_THOUGHT, "SUBJECT", big, 0);
    struct bj_event long_ev;
    assert_true(wait_event(&b, BJ_EV_THOUGHT, true, "signed long", &long_ev, 5000));
    assert_string_equal(long_ev.text, big);
    bj_event_clear(&long_ev);
    free(big);
    node_stop(&b);

    /* the wrong key: refused, nothing gets through */
    node_start(&b, "B", -1, addr_of(&a), k2, false);
    publish(&b, BJ_EV_THOUGHT, "SUBJECT", "forged", 0);
    assert_false(wait_event(&a, BJ_EV_THOUGHT, true, "forged", NULL, 1500));
    struct bj_peer_stats st;
    bj_peer_get_stats(a.peer, &st);
    assert_true(st.auth_failed >= 1);
    node_stop(&b);

    /* an unsigned original node: refused unless allowed */
    int fd = raw_connect(bj_peer_port(a.peer));
    const char *old = "{\"type\": \"THOUGHT\", \"sender_id\": \"OLD\", \"content\": \"unsigned\"}";
    assert_true(write(fd, old, strlen(old)) > 0);
    assert_false(wait_event(&a, BJ_EV_THOUGHT, true, "unsigned", NULL, 1000));
    close(fd);
    node_stop(&a);

    node_start(&a, "A", 0, NULL, k1, true);
    fd = raw_connect(bj_peer_port(a.peer));
    assert_true(write(fd, old, strlen(old)) > 0);
    assert_true(wait_event(&a, BJ_EV_THOUGHT, true, "unsigned", NULL, 5000));
    /* and it gets our thoughts unsigned, in the original's format */
    publish(&a, BJ_EV_THOUGHT, "SUBJECT", "to the old node", 0);
    char buf[8192] = "";
    size_t got = 0;
    int64_t end = ms() + 5000;
    while (ms() < end && !strstr(buf, "to the old node")) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, 50) == 1) {
            ssize_t n = read(fd, buf + got, sizeof buf - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
            buf[got] = '\0';
        }
    }
    assert_non_null(strstr(buf, "\"content\":\"to the old node\""));
    const char *t = strstr(buf, "to the old node");
    const char *line_end = strchr(t, '\n');
    assert_non_null(line_end);
    assert_null(memmem(t, (size_t)(line_end - t), "\"mac\"", 5));
    close(fd);
    node_stop(&a);
    unlink(k1);
    unlink(k2);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* the tests write to sockets the node closes on purpose */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_both_ways),
        cmocka_unit_test(test_duplicate_links_fold),
        cmocka_unit_test(test_redial),
        cmocka_unit_test(test_bad_peers),
        cmocka_unit_test(test_flood),
        cmocka_unit_test(test_auth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
