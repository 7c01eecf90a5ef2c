/* Unit tests for wsclient's decoder (wsdecode.c) and its URL check: a snapshot becomes the view's
 * declarations (who watches whom), the timeline's deaths, the last thoughts, each brain's life,
 * state and streaming thought, fed into a hiveview they draw the daemon's hive; live events and
 * arrays of them keep their order; a tick gives states and the daemon's memory; the refusal of a
 * token is recognised; hostile input (not JSON, wrong types, unknown types, missing fields) gives an
 * error or nothing, never a crash. URLs: schemes, the default port 8095, bad ones refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hiveview.h"
#include "wsclient.h"

static const char *SNAPSHOT =
    "{\"type\":\"snapshot\",\"you\":{\"user\":\"t\",\"role\":\"viewer\"},"
    "\"hive\":{\"mode\":\"matrix\",\"started\":\"2026-11-25T15:06:25.633846Z\"},"
    "\"brains\":[{\"id\":\"SUBJECT\",\"state\":\"thinking\",\"deaths\":2,\"life\":3,\"thought\":4,"
    "\"jar\":{\"used\":10,\"tokens\":300},\"tok_s\":5.5,\"current\":\"I count\",\"watches\":[],\"watches_all\":false},"
    "{\"id\":\"OBSERVER\",\"state\":\"dead\",\"deaths\":1,\"jar\":{\"used\":0,\"tokens\":350},\"tok_s\":0,"
    "\"current\":\"\",\"watches\":[\"SUBJECT\"]},"
    "{\"id\":\"GOD\",\"state\":\"thinking\",\"deaths\":0,\"jar\":{\"used\":1,\"tokens\":400},\"watches_all\":true}],"
    "\"thoughts\":{\"SUBJECT\":[{\"time_us\":1,\"thought\":3,\"complete\":true,\"text\":\"The walls.\"}]},"
    "\"deaths\":[{\"time_us\":5,\"brain\":\"SUBJECT\",\"cause\":\"JAR_FULL\",\"crash_count\":2},"
    "{\"time_us\":6,\"brain\":\"OBSERVER\",\"cause\":\"OPERATOR\",\"crash_count\":1}],"
    "\"memory\":{\"system_total\":1000,\"system_available\":250}}";

/* Decodes text and applies its events to v as tui.c does (LINK "watches" declares a role). */
static int feed(struct bj_hiveview *v, const char *text, struct bj_wsclient_msg *info)
{
    struct bj_evbuf evs = {0};
    char err[200];
    int rc = bj_wsclient_decode(text, strlen(text), &evs, info, err, sizeof err);
    for (size_t i = 0; i < evs.n; i++) {
        if (evs.v[i].type == BJ_EV_LINK && strcmp(evs.v[i].state, "watches") == 0)
            bj_hiveview_set_role(v, evs.v[i].brain, evs.v[i].text);
        else
            bj_hiveview_apply(v, &evs.v[i]);
    }
    bj_evbuf_free(&evs);
    return rc;
}

static void test_snapshot(void **state)
{
    (void)state;
    struct bj_hiveview *v = bj_hiveview_new(0);
    struct bj_wsclient_msg info;
    assert_int_equal(feed(v, SNAPSHOT, &info), 0);
    assert_true(info.snapshot);
    assert_string_equal(info.role, "viewer");
    assert_true(info.started_us == 1795619185633846LL); /* 2026-11-25T15:06:25.633846Z */
    assert_true(info.has_memory);
    assert_true(info.mem_total == 1000 && info.mem_used == 750);
    assert_int_equal(bj_hiveview_count(v), 3);
    assert_string_equal(bj_hiveview_brain_at(v, 0)->name, "SUBJECT"); /* the daemon's order */
    assert_string_equal(bj_hiveview_brain_at(v, 2)->name, "GOD");
    const struct bj_hiveview_brain *s = bj_hiveview_find(v, "SUBJECT");
    assert_false(s->dead);
    assert_string_equal(s->state, "thinking");
    assert_string_equal(s->current, "I count");
    assert_int_equal(s->ring_n, 1);
    assert_string_equal(s->ring[0], "The walls.");
    assert_int_equal(s->jar_tokens, 300);
    assert_int_equal(s->deaths, 2);
    const struct bj_hiveview_brain *o = bj_hiveview_find(v, "OBSERVER");
    assert_true(o->dead);
    assert_string_equal(o->cause, "OPERATOR");
    assert_string_equal(o->role, "SUBJECT");
    assert_string_equal(bj_hiveview_find(v, "GOD")->role, "*");
    assert_int_equal(bj_hiveview_death_count(v), 2);
    assert_string_equal(bj_hiveview_death_at(v, 0)->brain, "OBSERVER"); /* newest first */
    bj_hiveview_free(v);
}

static void test_live_and_tick(void **state)
{
    (void)state;
    struct bj_hiveview *v = bj_hiveview_new(0);
    struct bj_wsclient_msg info;
    assert_int_equal(feed(v, SNAPSHOT, &info), 0);
    assert_int_equal(feed(v, "[{\"type\":\"token\",\"brain\":\"SUBJECT\",\"thought\":4,\"text\":\" again\"},"
                             "{\"type\":\"thought\",\"brain\":\"SUBJECT\",\"complete\":true,\"text\":\"I count again\"},"
                             "{\"type\":\"death\",\"brain\":\"GOD\",\"cause\":\"JAR_FULL\",\"crash_count\":1},"
                             "{\"type\":\"resurrection\",\"brain\":\"OBSERVER\",\"crash_count\":1}]", &info), 0);
    const struct bj_hiveview_brain *s = bj_hiveview_find(v, "SUBJECT");
    assert_int_equal(s->ring_n, 2);
    assert_string_equal(s->ring[1], "I count again");
    assert_string_equal(s->current, "");
    assert_true(bj_hiveview_find(v, "GOD")->dead);
    assert_string_equal(bj_hiveview_find(v, "GOD")->cause, "JAR_FULL");
    assert_false(bj_hiveview_find(v, "OBSERVER")->dead);
    assert_int_equal(feed(v, "{\"type\":\"tick\",\"brains\":{\"SUBJECT\":{\"state\":\"paused\",\"jar_used\":7,"
                             "\"jar_tokens\":300,\"tok_s\":2.5}},\"memory\":{\"system_total\":2000,"
                             "\"system_available\":500},\"instances\":{\"SUBJECT\":{\"cpu_temp\":51.5}}}", &info), 0);
    assert_false(info.snapshot);
    assert_true(info.has_memory && info.mem_used == 1500);
    assert_true(info.temp_ok && info.temp_c == 51.5);
    assert_string_equal(s->state, "paused");
    assert_int_equal(s->jar_used, 7);
    assert_true(s->tok_s == 2.5);
    bj_hiveview_free(v);
}

static void test_auth_error_and_hostile(void **state)
{
    (void)state;
    struct bj_hiveview *v = bj_hiveview_new(0);
    struct bj_wsclient_msg info;
    assert_int_equal(feed(v, "{\"type\":\"error\",\"error\":\"Authentication required\"}", &info), 0);
    assert_true(info.auth_error);
    /* a snapshot then the refusal of our empty token (--web-auth off): no refusal */
    assert_int_equal(feed(v, "[{\"type\":\"snapshot\",\"brains\":[]},{\"type\":\"error\",\"error\":"
                             "\"Authentication required\"}]", &info), 0);
    assert_true(info.snapshot);
    assert_false(info.auth_error);
    assert_int_equal(feed(v, "{\"type\":\"error\",\"error\":\"Malformed message\"}", &info), 0);
    assert_false(info.auth_error);
    assert_int_equal(feed(v, "not json", &info), -1);
    assert_int_equal(feed(v, "42", &info), -1);
    assert_int_equal(feed(v, "", &info), -1);
    /* wrong types, unknown types, missing fields: skipped or empty, never a crash */
    assert_int_equal(feed(v, "[1,\"x\",null,{\"type\":7},{\"type\":\"mystery\"},{\"type\":\"token\"},"
                             "{\"type\":\"token\",\"brain\":[1],\"text\":{}},{\"type\":\"snapshot\",\"brains\":{},"
                             "\"deaths\":\"no\",\"thoughts\":[]},{\"type\":\"snapshot\",\"brains\":[{\"id\":5},"
                             "{\"id\":\"X\",\"watches\":[1,null,\"Y\"],\"jar\":7}]},{\"type\":\"tick\",\"brains\":[]}]",
                          &info), 0);
    assert_non_null(bj_hiveview_find(v, "X"));
    assert_string_equal(bj_hiveview_find(v, "X")->role, "Y");
    /* an overlong brain name is cut to the field */
    char big[400];
    memset(big, 'A', 200);
    snprintf(big + 200, sizeof big - 200, "%s", "");
    char msg[600];
    snprintf(msg, sizeof msg, "{\"type\":\"token\",\"brain\":\"%s\",\"text\":\"x\"}", big);
    assert_int_equal(feed(v, msg, &info), 0);
    bj_hiveview_free(v);
}

static void test_urls(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(bj_wsclient_check_url("http://127.0.0.1:8095", err, sizeof err), 0);
    assert_int_equal(bj_wsclient_check_url("http://localhost", err, sizeof err), 0);
    assert_int_equal(bj_wsclient_check_url("https://jetson.lan:443/", err, sizeof err), 0);
    assert_int_equal(bj_wsclient_check_url("ws://[::1]:8095", err, sizeof err), 0);
    assert_int_equal(bj_wsclient_check_url("nonsense", err, sizeof err), -1);
    assert_non_null(strstr(err, "bad URL"));
    assert_int_equal(bj_wsclient_check_url("ftp://host", err, sizeof err), -1);
    assert_int_equal(bj_wsclient_check_url("http://host:0", err, sizeof err), -1);
    assert_int_equal(bj_wsclient_check_url("http://host:70000", err, sizeof err), -1);
    assert_int_equal(bj_wsclient_check_url("http://", err, sizeof err), -1);
    assert_int_equal(bj_wsclient_check_url(NULL, err, sizeof err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot),
        cmocka_unit_test(test_live_and_tick),
        cmocka_unit_test(test_auth_error_and_hostile),
        cmocka_unit_test(test_urls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
