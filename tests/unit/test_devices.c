/* Unit tests for devices: without rpc-servers the list holds no remote device; adding a server
 * that cannot be used fails with a message naming it and why, without ever reaching llama.cpp
 * (which would abort the process): nothing listening, a listener that hangs up, one that never
 * answers (within the time limit given), one that answers with the wrong size, one of another
 * protocol version. Real rpc-servers: tests/integration/test_rpc.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <llama.h>

#include "devices.h"
#include "util.h"

/* A listener on 127.0.0.1 that answers its first client in one way, then closes. */
enum fake_kind { FAKE_HANG_UP, FAKE_SILENT, FAKE_WRONG_SIZE, FAKE_OLD };
struct fake {
    int fd, port;
    enum fake_kind kind;
    pthread_t thread;
};

static void *fake_serve(void *arg)
{
    struct fake *f = arg;
    int c = accept(f->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    unsigned char req[1 + 8 + 24];
    if (f->kind != FAKE_HANG_UP && recv(c, req, sizeof req, MSG_WAITALL) == (ssize_t)sizeof req) {
        unsigned char reply[8 + 28] = {0};
        uint64_t size = f->kind == FAKE_WRONG_SIZE ? 3 : 28;
        memcpy(reply, &size, 8);
        reply[8] = f->kind == FAKE_OLD ? 6 : 7; /* major */
        if (f->kind == FAKE_SILENT)
            usleep(800 * 1000); /* past the test's time limit */
        else
            (void)!send(c, reply, f->kind == FAKE_WRONG_SIZE ? 8 + 3 : sizeof reply, MSG_NOSIGNAL);
    }
    close(c);
    return NULL;
}

static void fake_start(struct fake *f, enum fake_kind kind)
{
    f->kind = kind;
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(f->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(f->fd, 4), 0);
    assert_int_equal(getsockname(f->fd, (struct sockaddr *)&a, &len), 0);
    f->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_serve, f), 0);
}

static void fake_stop(struct fake *f)
{
    shutdown(f->fd, SHUT_RDWR);
    pthread_join(f->thread, NULL);
    close(f->fd);
}

/* A port nothing listens on (bound, then closed). */
static int free_port(void)
{
    struct fake f;
    f.fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(f.fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(f.fd, (struct sockaddr *)&a, &len), 0);
    close(f.fd);
    return ntohs(a.sin_port);
}

static void refused(const char *list, int timeout_ms, const char *why)
{
    char err[600];
    if (bj_devices_add_rpc(list, timeout_ms, err, sizeof err) != -1 || !strstr(err, why))
        fail_msg("%s: '%s', expected '%s'", list, err, why);
}

/* No rpc-server's device is listed (a GPU build lists its GPUs; nothing remote without --rpc). */
static void assert_nothing_remote(void)
{
    struct bj_devices d;
    bj_devices_list(&d);
    for (int i = 0; i < d.n; i++)
        assert_false(d.d[i].remote);
}

static void test_no_servers(void **state)
{
    (void)state;
    assert_nothing_remote();
}

static void test_unusable_servers(void **state)
{
    (void)state;
    char list[64];
    if (!ggml_backend_reg_by_name("RPC")) {
        refused("127.0.0.1:1", 1000, "this llama.cpp has no RPC backend");
        skip();
    }
    refused("127.0.0.1", 1000, "--rpc: '127.0.0.1' is not HOST:PORT");
    snprintf(list, sizeof list, "127.0.0.1:%d", free_port());
    refused(list, 1000, "cannot connect: Connection refused");
    refused("no-such-host.invalid:50052", 1000, "rpc-server no-such-host.invalid:50052: cannot resolve");
    static const struct {
        enum fake_kind kind;
        const char *why;
    } cases[] = {
        {FAKE_HANG_UP, "closed the connection during the greeting: not an rpc-server"},
        {FAKE_SILENT, "connected, but no greeting within 300 ms"},
        {FAKE_WRONG_SIZE, "answered the greeting with 3 bytes instead of 28"},
        {FAKE_OLD, "speaks RPC protocol 6.0.0, this llama.cpp 7.0"},
    };
    for (size_t i = 0; i < BJ_ARRAY_LEN(cases); i++) {
        struct fake f;
        fake_start(&f, cases[i].kind);
        snprintf(list, sizeof list, "127.0.0.1:%d", f.port);
        refused(list, 300, cases[i].why);
        refused(list, 300, list); /* the message names the server */
        fake_stop(&f);
    }
    assert_nothing_remote(); /* nothing was added */
}

static int setup(void **state)
{
    (void)state;
    llama_backend_init();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    llama_backend_free();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_servers),
        cmocka_unit_test(test_unusable_servers),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
