/* Unit tests for the bus: order, lifecycle events never dropped, tokens coalesced (text kept)
 * for a slow subscriber, status dropped over capacity, close wakes consumers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "bus.h"
#include "util.h"

static void publish(struct bj_bus *bus, enum bj_event_type type, const char *brain, const char *text)
{
    struct bj_event ev = {.type = type, .thought = 1};
    strcpy(ev.brain, brain);
    ev.text = (char *)text;
    bj_bus_publish(bus, &ev);
}

static void test_order_and_mask(void **state)
{
    (void)state;
    struct bj_bus *bus = bj_bus_new();
    struct bj_sub *all = bj_bus_subscribe(bus, "all", BJ_EV_ALL, 100);
    struct bj_sub *deaths = bj_bus_subscribe(bus, "deaths", BJ_EV_MASK(BJ_EV_DEATH), 100);
    publish(bus, BJ_EV_TOKEN, "A", "x");
    publish(bus, BJ_EV_DEATH, "A", NULL);
    publish(bus, BJ_EV_TOKEN, "B", "y");
    struct bj_event ev;
    uint64_t last = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(bj_sub_next(all, &ev, 0), 1);
        assert_true(ev.seq > last);
        last = ev.seq;
        bj_event_clear(&ev);
    }
    assert_int_equal(bj_sub_next(all, &ev, 0), 0);
    assert_int_equal(bj_sub_next(deaths, &ev, 0), 1);
    assert_int_equal(ev.type, BJ_EV_DEATH);
    assert_int_equal(bj_sub_next(deaths, &ev, 0), 0);
    bj_bus_free(bus);
}

static void test_slow_subscriber(void **state)
{
    (void)state;
    struct bj_bus *bus = bj_bus_new();
    struct bj_sub *s = bj_bus_subscribe(bus, "slow", BJ_EV_ALL, 4);
    for (int i = 0; i < 4; i++)
        publish(bus, BJ_EV_STATUS, "A", NULL);
    /* Over capacity: tokens merge into the queued token of their brain, deaths always queue. */
    publish(bus, BJ_EV_TOKEN, "A", "never ");   /* nothing to merge into: dropped */
    publish(bus, BJ_EV_DEATH, "A", "jar full");
    publish(bus, BJ_EV_STATUS, "A", NULL);        /* dropped */
    assert_int_equal(bj_sub_dropped(s), 2);
    struct bj_event ev;
    for (int i = 0; i < 4; i++) {
        assert_int_equal(bj_sub_next(s, &ev, 0), 1);
        assert_int_equal(ev.type, BJ_EV_STATUS);
    }
    assert_int_equal(bj_sub_next(s, &ev, 0), 1);
    assert_int_equal(ev.type, BJ_EV_DEATH);
    assert_string_equal(ev.text, "jar full");
    bj_event_clear(&ev);

    struct bj_sub *t = bj_bus_subscribe(bus, "tokens", BJ_EV_MASK(BJ_EV_TOKEN), 2);
    publish(bus, BJ_EV_TOKEN, "A", "I ");
    publish(bus, BJ_EV_TOKEN, "B", "You ");
    publish(bus, BJ_EV_TOKEN, "A", "am ");
    publish(bus, BJ_EV_TOKEN, "A", "here");
    assert_int_equal(bj_sub_coalesced(t), 2);
    assert_int_equal(bj_sub_next(t, &ev, 0), 1);
    assert_string_equal(ev.text, "I am here"); /* no text lost */
    bj_event_clear(&ev);
    assert_int_equal(bj_sub_next(t, &ev, 0), 1);
    assert_string_equal(ev.text, "You ");
    bj_event_clear(&ev);
    bj_bus_free(bus);
}

struct producer {
    struct bj_bus *bus;
    int n;
    char name[8];
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    for (int i = 0; i < p->n; i++) {
        struct bj_event ev = {.type = BJ_EV_THOUGHT, .thought = (uint32_t)i + 1, .text = (char *)"t"};
        bj_strlcpy(ev.brain, p->name, sizeof ev.brain);
        bj_bus_publish(p->bus, &ev);
    }
    return NULL;
}

static void test_many_publishers_lose_no_lifecycle_event(void **state)
{
    (void)state;
    struct bj_bus *bus = bj_bus_new();
    struct bj_sub *s = bj_bus_subscribe(bus, "store", BJ_EV_ALL, 8); /* tiny capacity on purpose */
    enum { THREADS = 4, EACH = 2000 };
    pthread_t th[THREADS];
    struct producer p[THREADS];
    for (int i = 0; i < THREADS; i++) {
        p[i] = (struct producer){.bus = bus, .n = EACH};
        snprintf(p[i].name, sizeof p[i].name, "P%d", i);
        pthread_create(&th[i], NULL, produce, &p[i]);
    }
    int got = 0;
    uint32_t last[THREADS] = {0};
    static bool seen[THREADS * EACH + 1];
    struct bj_event ev;
    while (got < THREADS * EACH) {
        assert_int_equal(bj_sub_next(s, &ev, 5000), 1);
        int k = ev.brain[1] - '0';
        assert_int_equal(ev.thought, last[k] + 1); /* each publisher's order is kept */
        last[k] = ev.thought;
        assert_true(ev.seq >= 1 && ev.seq <= THREADS * EACH && !seen[ev.seq]); /* seq numbers are unique */
        seen[ev.seq] = true;
        bj_event_clear(&ev);
        got++;
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(bj_sub_dropped(s), 0);
    bj_bus_close(bus);
    assert_int_equal(bj_sub_next(s, &ev, -1), -1);
    bj_bus_free(bus);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_and_mask),
        cmocka_unit_test(test_slow_subscriber),
        cmocka_unit_test(test_many_publishers_lose_no_lifecycle_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
