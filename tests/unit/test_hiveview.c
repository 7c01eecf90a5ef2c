/* Unit tests for view: tokens stream into the current thought and finished thoughts move to a
 * bounded ring; deaths raise the veil with their cause and enter the timeline (newest first,
 * bounded); resurrection lowers the veil; status updates state, jar and tok/s; header totals;
 * roles; focus wraps both ways; long and hostile input (no brain name, NULL text, overlong
 * text cut at a UTF-8 boundary, more brains than the view holds, fixed fields without their NUL)
 * never crashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hiveview.h"

static struct bj_event ev_of(enum bj_event_type type, const char *brain, const char *text)
{
    struct bj_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    snprintf(ev.brain, sizeof ev.brain, "%s", brain);
    ev.text = (char *)text; /* not owned here: the view copies */
    return ev;
}

static void test_stream_and_ring(void **state)
{
    (void)state;
    struct bj_hiveview *v = bj_hiveview_new(0);
    assert_non_null(v);
    struct bj_event ev = ev_of(BJ_EV_TOKEN, "SUBJECT", "I ");
    assert_int_equal(bj_hiveview_apply(v, &ev), 1);
    ev.text = "think";
    bj_hiveview_apply(v, &ev);
    const struct bj_hiveview_brain *b = bj_hiveview_find(v, "SUBJECT");
    assert_non_null(b);
    assert_string_equal(b->current, "I think");
    ev = ev_of(BJ_EV_THOUGHT, "SUBJECT", "I think.");
    bj_hiveview_apply(v, &ev);
    assert_string_equal(b->current, "");
    assert_int_equal(b->ring_n, 1);
    assert_string_equal(b->ring[0], "I think.");
    char t[16];
    for (int i = 0; i < BJ_HIVEVIEW_RING + 3; i++) {
        snprintf(t, sizeof t, "t%d", i);
        ev.text = t;
        bj_hiveview_apply(v, &ev);
    }
    assert_int_equal(b->ring_n, BJ_HIVEVIEW_RING);
    snprintf(t, sizeof t, "t%d", 3);
    assert_string_equal(b->ring[0], t);
    snprintf(t, sizeof t, "t%d", BJ_HIVEVIEW_RING + 2);
    assert_string_equal(b->ring[BJ_HIVEVIEW_RING - 1], t);
    bj_hiveview_free(v);
}

static void test_death_veil_and_timeline(void **state)
{
    (void)state;
    struct bj_hiveview *v = bj_hiveview_new(42);
    struct bj_event ev = ev_of(BJ_EV_DEATH, "OBSERVER", NULL);
    snprintf(ev.cause, sizeof ev.cause, "JAR_FULL");
    ev.crash_count = 1;
    ev.time_us = 100;
    bj_hiveview_apply(v, &ev);
    const struct bj_hiveview_brain *b = bj_hiveview_find(v, "OBSERVER");
    assert_true(b->dead);
    assert_string_equal(b->cause, "JAR_FULL");
    assert_int_equal(bj_hiveview_total_deaths(v), 1);
    assert_int_equal(bj_hiveview_death_count(v), 1);
    ev = ev_of(BJ_EV_RESURRECTION, "OBSERVER", NULL);
    ev.crash_count = 1;
    bj_hiveview_apply(v, &ev);
    assert_false(b->dead);
    for (uint32_t i = 2; i < BJ_HIVEVIEW_DEATHS + 5; i++) {
        ev = ev_of(BJ_EV_DEATH, "GOD", NULL);
        snprintf(ev.cause, sizeof ev.cause, "OPERATOR");
        ev.crash_count = i;
        bj_hiveview_apply(v, &ev);
    }
    assert_int_equal(bj_hiveview_death_count(v), BJ_HIVEVIEW_DEATHS);
    assert_int_equal(bj_hiveview_death_at(v, 0)->deaths, BJ_HIVEVIEW_DEATHS + 4);
    assert_int_equal(bj_hiveview_death_at(v, BJ_HIVEVIEW_DEATHS - 1)->deaths, 5);
    assert_null(bj_hiveview_death_at(v, BJ_HIVEVIEW_DEATHS));
    assert_int_equal(bj_hiveview_total_deaths(v), 1 + BJ_HIVEVIEW_DEATHS + 4);
    assert_int_equal(bj_hiveview_start_us(v), 42);
    bj_hiveview_free(v);
}

static void test_status_roles_focus(void **state)
{
    (void)state;
    struct bj_hiveview *v = bj_hiveview_new(0);
    struct bj_event ev = ev_of(BJ_EV_STATUS, "A", NULL);
    snprintf(ev.state, sizeof ev.state, "thinking");
    ev.jar_used = 10;
    ev.jar_tokens = 100;
    ev.tok_s = 2.5;
    bj_hiveview_apply(v, &ev);
    ev = ev_of(BJ_EV_STATUS, "B", NULL);
    ev.tok_s = 1.5;
    bj_hiveview_apply(v, &ev);
    const struct bj_hiveview_brain *a = bj_hiveview_brain_at(v, 0);
    assert_string_equal(a->state, "thinking");
    assert_int_equal(a->jar_used, 10);
    assert_int_equal(a->jar_tokens, 100);
    assert_true(bj_hiveview_total_tok_s(v) > 3.99 && bj_hiveview_total_tok_s(v) < 4.01);
    assert_int_equal(bj_hiveview_set_role(v, "B", "A"), 0);
    assert_string_equal(bj_hiveview_find(v, "B")->role, "A");
    assert_int_equal(bj_hiveview_set_role(v, "C", "B"), 0);
    assert_int_equal(bj_hiveview_count(v), 3);
    assert_int_equal(bj_hiveview_focus(v), 0);
    bj_hiveview_focus_move(v, -1);
    assert_int_equal(bj_hiveview_focus(v), 2);
    bj_hiveview_focus_move(v, 2);
    assert_int_equal(bj_hiveview_focus(v), 1);
    assert_null(bj_hiveview_brain_at(v, 3));
    bj_hiveview_free(v);
}

static void test_hostile_input(void **state)
{
    (void)state;
    struct bj_hiveview *v = bj_hiveview_new(0);
    bj_hiveview_focus_move(v, 1); /* empty view */
    struct bj_event ev = ev_of(BJ_EV_TOKEN, "", "x");
    assert_int_equal(bj_hiveview_apply(v, &ev), 0);
    assert_int_equal(bj_hiveview_apply(v, NULL), 0);
    ev = ev_of(BJ_EV_TOKEN, "A", NULL);
    bj_hiveview_apply(v, &ev);
    ev = ev_of(BJ_EV_THOUGHT, "A", NULL);
    bj_hiveview_apply(v, &ev);
    /* An overlong stream of 2-byte characters keeps a tail that starts on a character. */
    char *big = malloc(3 * BJ_HIVEVIEW_TEXT + 1);
    for (int i = 0; i < 3 * BJ_HIVEVIEW_TEXT; i += 2) {
        big[i] = (char)0xC3;
        big[i + 1] = (char)0xA9;
    }
    big[3 * BJ_HIVEVIEW_TEXT] = '\0';
    ev = ev_of(BJ_EV_TOKEN, "A", "z");
    bj_hiveview_apply(v, &ev);
    ev.text = big + 1; /* starts mid-character */
    bj_hiveview_apply(v, &ev);
    ev.text = "y";
    for (int i = 0; i < BJ_HIVEVIEW_TEXT; i++)
        bj_hiveview_apply(v, &ev);
    const struct bj_hiveview_brain *a = bj_hiveview_find(v, "A");
    assert_true(strlen(a->current) < BJ_HIVEVIEW_TEXT);
    assert_int_not_equal((unsigned char)a->current[0] & 0xC0, 0x80);
    free(big);
    char name[32];
    for (int i = 0; i < BJ_HIVEVIEW_MAX_BRAINS + 10; i++) {
        snprintf(name, sizeof name, "B%d", i);
        ev = ev_of(BJ_EV_STATUS, name, NULL);
        bj_hiveview_apply(v, &ev);
    }
    assert_int_equal(bj_hiveview_count(v), BJ_HIVEVIEW_MAX_BRAINS);
    /* Fixed fields without their NUL are read up to their size, never past it. */
    struct bj_hiveview *w = bj_hiveview_new(0);
    ev = ev_of(BJ_EV_DEATH, "", NULL);
    memset(ev.brain, 'X', sizeof ev.brain);
    memset(ev.cause, 'C', sizeof ev.cause);
    bj_hiveview_apply(w, &ev);
    assert_int_equal(strlen(bj_hiveview_brain_at(w, 0)->name), sizeof ev.brain - 1);
    assert_int_equal(strlen(bj_hiveview_brain_at(w, 0)->cause), sizeof ev.cause - 1);
    bj_hiveview_free(w);
    assert_int_equal(bj_hiveview_set_role(v, "NEW", "A"), -1);
    bj_hiveview_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_and_ring),
        cmocka_unit_test(test_death_veil_and_timeline),
        cmocka_unit_test(test_status_roles_focus),
        cmocka_unit_test(test_hostile_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
