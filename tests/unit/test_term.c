/* Unit tests for term: a terminal or pipe that stops reading never holds the hive (bounded
 * memory, finish within a few seconds with a blocked write), a closed pipe ends only this sink,
 * and control characters from models are escaped in text mode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bus.h"
#include "term.h"
#include "util.h"

static void publish(struct bj_bus *bus, enum bj_event_type type, const char *brain, const char *text)
{
    struct bj_event ev = {.type = type, .thought = 1, .complete = true};
    strcpy(ev.brain, brain);
    ev.text = (char *)text;
    bj_bus_publish(bus, &ev);
}

/* A started terminal sink focused on brain A. */
static struct bj_term *term_new(struct bj_bus *bus, enum bj_events_out mode, FILE *out)
{
    struct bj_term_params p = bj_term_params_default();
    p.bus = bus;
    p.mode = mode;
    p.focus = "A";
    p.out = out;
    char err[128];
    struct bj_term *t = bj_term_new(&p, err, sizeof err);
    if (t && bj_term_start(t, err, sizeof err) != 0) {
        bj_term_free(t);
        return NULL;
    }
    return t;
}

/* Resident anonymous memory of this process, KB. */
static long rss_anon_kb(void)
{
    char *t;
    if (bj_read_file("/proc/self/status", &t, NULL) != 0)
        return -1;
    const char *p = strstr(t, "RssAnon:");
    long kb = p ? strtol(p + 8, NULL, 10) : -1;
    free(t);
    return kb;
}

/* How much slower than native this run is (BJ_TEST_SLOW: 20 under qemu-user, set by
 * tests/CMakeLists.txt for the cross build; 1 otherwise). */
static long slow_factor(void)
{
    const char *s = getenv("BJ_TEST_SLOW");
    long f = s ? strtol(s, NULL, 10) : 1;
    return f >= 1 ? f : 1;
}

static void test_text_mode_escapes_controls(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    FILE *out = fdopen(fds[1], "w");
    struct bj_bus *bus = bj_bus_new();
    struct bj_term *t = term_new(bus, BJ_OUT_TEXT, out);
    assert_non_null(t);
    publish(bus, BJ_EV_TOKEN, "A", "one\rtwo\x1b[2Jthree\xC2\x9B" "four\tfive");
    publish(bus, BJ_EV_THOUGHT, "A", "x");
    publish(bus, BJ_EV_THOUGHT, "B", "bee\rbuzz");
    bj_bus_close(bus);
    bj_term_stop(t);
    bj_term_free(t);
    bj_bus_free(bus);
    fclose(out);
    char buf[4096];
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "one\\rtwo\\x1b[2Jthree\\u009bfour\tfive"));
    assert_non_null(strstr(buf, "bee\\rbuzz"));
    assert_null(strchr(buf, '\r'));
    assert_null(strchr(buf, '\x1b'));
}

static void test_stuck_reader_bounded_and_finish_quick(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0); /* nobody reads fds[0] */
    FILE *out = fdopen(fds[1], "w");
    struct bj_bus *bus = bj_bus_new();
    struct bj_term *t = term_new(bus, BJ_OUT_JSONL, out);
    assert_non_null(t);
    char text[4096];
    memset(text, 'x', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    /* Every path once before the first reading: under qemu-user (the arm64 tests) the process's
     * anonymous memory includes the emulator's translated code, made as code first runs. */
    for (int i = 0; i < 200; i++) {
        publish(bus, i % 100 == 99 ? BJ_EV_THOUGHT : BJ_EV_TOKEN, "A", text);
        usleep(100);
    }
    long before = rss_anon_kb();
    /* 40 MB of events, at a pace the terminal thread can format (engines publish a few
     * thousand events a second; this is 10000 a second natively). Under an emulator the pace
     * slows with it: there the terminal thread formats 10-30x slower, and events it has not
     * taken yet wait in the bus (the memory measured here, the program's own heap). */
    const long pace_us = 100 * slow_factor();
    for (int i = 0; i < 10000; i++) {
        publish(bus, i % 100 == 99 ? BJ_EV_THOUGHT : BJ_EV_TOKEN, "A", text);
        usleep((useconds_t)pace_us);
    }
    long grown = rss_anon_kb() - before;
    print_message("anonymous memory grew %ld KB while 40 MB of events were published to a stuck pipe\n", grown);
#if !defined(__SANITIZE_ADDRESS__) /* ASan's quarantine keeps freed memory resident */
    assert_true(grown < 16 * 1024);
#endif
    bj_bus_close(bus);
    int64_t t0 = bj_now_us();
    bj_term_stop(t);
    bj_term_free(t); /* the writer is blocked in write(): stop must interrupt it */
    double s = (double)(bj_now_us() - t0) / 1e6;
    print_message("finish took %.2f s\n", s);
    assert_true(s < 4.0);
    bj_bus_free(bus);
    fclose(out);
    close(fds[0]);
}

static void test_closed_pipe_ends_the_sink_only(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    close(fds[0]); /* like `| head` after head exits */
    FILE *out = fdopen(fds[1], "w");
    struct bj_bus *bus = bj_bus_new();
    struct bj_term *t = term_new(bus, BJ_OUT_JSONL, out);
    assert_non_null(t);
    for (int i = 0; i < 1000; i++)
        publish(bus, BJ_EV_TOKEN, "A", "token ");
    usleep(100 * 1000);
    bj_bus_close(bus);
    int64_t t0 = bj_now_us();
    bj_term_stop(t);
    bj_term_free(t); /* SIGPIPE (default: death) must not have killed us */
    assert_true(bj_now_us() - t0 < 1000000);
    bj_bus_free(bus);
    fclose(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_mode_escapes_controls),
        cmocka_unit_test(test_stuck_reader_bounded_and_finish_quick),
        cmocka_unit_test(test_closed_pipe_ends_the_sink_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
