/* Unit tests for the web server's view (src/sinks/web/view.c), without sockets: the thought rings
 * (bounded, oldest out), deaths and logs newest first, counters, the series and their JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "view.h"

static struct bj_event ev_of(enum bj_event_type type, const char *brain, uint32_t thought, const char *text)
{
    struct bj_event ev = {.type = type, .time_us = 1700000000000000LL + thought, .thought = thought,
                          .text = (char *)text, .complete = true};
    snprintf(ev.brain, sizeof ev.brain, "%s", brain);
    return ev;
}

static void test_rings_bounded_oldest_out(void **state)
{
    (void)state;
    struct web_view *v = web_view_new(2, 3);
    assert_non_null(v);
    for (uint32_t t = 1; t <= 5; t++) {
        char text[32];
        snprintf(text, sizeof text, "thought %u", t);
        struct bj_event ev = ev_of(BJ_EV_THOUGHT, "A", t, text);
        web_view_event(v, &ev, 0);
    }
    const struct thought_ring *r = web_view_thoughts(v, 0);
    assert_int_equal(r->n, 3);
    assert_string_equal(r->recs[r->head].text, "thought 3"); /* the oldest kept */
    assert_string_equal(r->recs[(r->head + 2) % r->cap].text, "thought 5");
    assert_int_equal(web_view_thoughts(v, 1)->n, 0);
    assert_null(web_view_thoughts(v, 2));
    assert_null(web_view_thoughts(v, -1));
    struct bj_event remote = ev_of(BJ_EV_THOUGHT, "FAR", 1, "from a peer");
    web_view_event(v, &remote, -1); /* logged, in no ring */
    assert_int_equal(web_view_counts(v)->thoughts, 6);
    assert_int_equal(web_view_counts(v)->events, 6);
    json_t *j = web_view_thought_json(&r->recs[r->head]);
    assert_string_equal(json_string_value(json_object_get(j, "text")), "thought 3");
    assert_int_equal(json_integer_value(json_object_get(j, "thought")), 3);
    assert_true(json_is_string(json_object_get(j, "time")));
    json_decref(j);
    web_view_free(v);
}

static void test_deaths_and_logs_newest_first(void **state)
{
    (void)state;
    struct web_view *v = web_view_new(1, 10);
    assert_non_null(v);
    for (uint32_t k = 0; k < WEB_DEATHS + 5; k++) {
        struct bj_event d = ev_of(BJ_EV_DEATH, "A", 1, NULL);
        snprintf(d.cause, sizeof d.cause, "JAR_FULL");
        d.crash_count = k + 1;
        d.jar_used = d.jar_tokens = 300;
        web_view_event(v, &d, 0);
    }
    assert_int_equal(web_view_deaths(v), WEB_DEATHS);
    assert_int_equal(web_view_death(v, 0)->crash_count, WEB_DEATHS + 5);
    assert_int_equal(web_view_death(v, WEB_DEATHS - 1)->crash_count, 6);
    json_t *j = web_view_death_json(web_view_death(v, 0));
    assert_string_equal(json_string_value(json_object_get(j, "cause")), "JAR_FULL");
    assert_string_equal(json_string_value(json_object_get(j, "brain")), "A");
    json_decref(j);
    assert_int_equal(web_view_logs(v), WEB_LOGS);
    const struct log_rec *l = web_view_log(v, 0);
    assert_string_equal(l->level, "crash");
    assert_non_null(strstr(l->message, "CRASH #1005: A died (JAR_FULL)"));
    struct bj_event op = ev_of(BJ_EV_OPERATOR, "A", 1, NULL);
    snprintf(op.cause, sizeof op.cause, "kill");
    web_view_event(v, &op, 0);
    assert_string_equal(web_view_log(v, 0)->message, "operator kill A");
    web_view_free(v);
}

static void test_series_and_memory(void **state)
{
    (void)state;
    struct web_view *v = web_view_new(1, 10);
    assert_non_null(v);
    assert_int_equal(web_view_last_t(v), 0);
    json_t *m = web_view_memory_json(v);
    assert_true(json_is_null(json_object_get(m, "process_rss"))); /* nothing sampled yet */
    json_decref(m);
    web_view_sample(v, NULL);
    web_view_sample(v, NULL);
    assert_true(web_view_last_t(v) > 1700000000);
    json_t *s = web_view_series_json(v, NULL);
    assert_int_equal(json_array_size(json_object_get(s, "t")), 2);
    assert_int_equal(json_array_size(json_object_get(s, "process_rss")), 2);
    assert_int_equal(json_object_size(json_object_get(s, "brains")), 0);
    json_decref(s);
    m = web_view_memory_json(v);
    assert_true(json_integer_value(json_object_get(m, "process_rss")) > 0);
    json_decref(m);
    web_view_free(v);
    web_view_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rings_bounded_oldest_out),
        cmocka_unit_test(test_deaths_and_logs_newest_first),
        cmocka_unit_test(test_series_and_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
