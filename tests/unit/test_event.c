/* Unit tests for event: bj_event_to_json for every event type, read back with jansson (the
 * fields each type carries, and no others), escaping of control characters, quotes and
 * non-ASCII text (ASCII-only output), invalid UTF-8, timestamps; deep copies and the event
 * buffer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "event.h"
#include "util.h"

static struct bj_event full_event(enum bj_event_type type)
{
    struct bj_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = type;
    ev.seq = 42;
    ev.time_us = 1763283340004210LL; /* 2025-11-16T08:55:40.004210Z */
    strcpy(ev.brain, "SUBJECT");
    strcpy(ev.from, "OBSERVER");
    strcpy(ev.cause, "JAR_FULL");
    strcpy(ev.state, "thinking");
    ev.crash_count = 3;
    ev.thought = 7;
    ev.jar_used = 100;
    ev.jar_tokens = 4096;
    ev.tok_s = 12.5;
    ev.complete = true;
    ev.text = "hello";
    return ev;
}

static json_t *to_json(const struct bj_event *ev)
{
    char *s = bj_event_to_json(ev);
    assert_non_null(s);
    assert_null(strchr(s, '\n')); /* one compact line */
    for (const char *p = s; *p; p++)
        assert_true((unsigned char)*p >= 0x20 && (unsigned char)*p <= 0x7f); /* printable ASCII (and DEL) */
    json_error_t jerr;
    json_t *o = json_loads(s, 0, &jerr);
    if (!o)
        fail_msg("not JSON (%s): %s", jerr.text, s);
    free(s);
    assert_true(json_is_object(o));
    return o;
}

static const char *str(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        fail_msg("key %s is not a string", key);
    return json_string_value(v);
}

static json_int_t num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("key %s is not an integer", key);
    return json_integer_value(v);
}

/* The keys of o, sorted and joined with commas. */
static void keys_of(json_t *o, char *buf, size_t len)
{
    const char *k[32];
    size_t n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        (void)v;
        assert_true(n < 32);
        k[n++] = key;
    }
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(k[j - 1], k[j]) > 0; j--) {
            const char *t = k[j];
            k[j] = k[j - 1];
            k[j - 1] = t;
        }
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i)
            strncat(buf, ",", len - strlen(buf) - 1);
        strncat(buf, k[i], len - strlen(buf) - 1);
    }
}

static void test_every_type(void **state)
{
    (void)state;
    static const struct {
        enum bj_event_type type;
        const char *name;
        const char *keys;
    } cases[] = {
        {BJ_EV_TOKEN, "token", "brain,crash_count,jar_used,seq,text,thought,ts,type"},
        {BJ_EV_THOUGHT, "thought", "brain,complete,crash_count,seq,text,thought,ts,type"},
        {BJ_EV_DEATH, "death", "brain,cause,crash_count,jar_tokens,jar_used,seq,text,ts,type"},
        {BJ_EV_RESURRECTION, "resurrection", "brain,crash_count,seq,text,ts,type"},
        {BJ_EV_OBSERVE, "observe", "brain,crash_count,from,seq,text,ts,type"},
        {BJ_EV_STATUS, "status", "brain,crash_count,jar_tokens,jar_used,seq,state,text,tok_s,ts,type"},
        {BJ_EV_ERROR, "error", "brain,crash_count,seq,text,ts,type"},
        {BJ_EV_BUDGET, "budget", "brain,crash_count,seq,text,ts,type"},
        {BJ_EV_OPERATOR, "operator", "action,brain,crash_count,seq,text,ts,type"},
        {BJ_EV_WATCHDOG, "watchdog", "action,brain,crash_count,seq,text,ts,type"},
        {BJ_EV_LINK, "link", "brain,crash_count,peer,seq,state,text,ts,type"},
        {BJ_EV_LAB, "lab", "action,brain,crash_count,id,jar_used,seq,text,thought,ts,type"},
    };
    assert_int_equal(BJ_ARRAY_LEN(cases), BJ_EV_COUNT); /* a new type needs a case here */
    for (size_t i = 0; i < BJ_ARRAY_LEN(cases); i++) {
        struct bj_event ev = full_event(cases[i].type);
        assert_string_equal(bj_event_type_name(ev.type), cases[i].name);
        json_t *o = to_json(&ev);
        char keys[400];
        keys_of(o, keys, sizeof keys);
        if (strcmp(keys, cases[i].keys) != 0)
            fail_msg("%s: keys %s, expected %s", cases[i].name, keys, cases[i].keys);
        assert_string_equal(str(o, "type"), cases[i].name);
        assert_int_equal(num(o, "seq"), 42);
        assert_string_equal(str(o, "ts"), "2025-11-16T08:55:40.004210Z");
        assert_string_equal(str(o, "brain"), "SUBJECT");
        assert_int_equal(num(o, "crash_count"), 3);
        assert_string_equal(str(o, "text"), "hello");
        switch (ev.type) {
        case BJ_EV_TOKEN: assert_int_equal(num(o, "thought"), 7); break;
        case BJ_EV_THOUGHT:
            assert_int_equal(num(o, "thought"), 7);
            assert_true(json_is_true(json_object_get(o, "complete")));
            break;
        case BJ_EV_DEATH:
            assert_string_equal(str(o, "cause"), "JAR_FULL");
            assert_int_equal(num(o, "jar_used"), 100);
            assert_int_equal(num(o, "jar_tokens"), 4096);
            break;
        case BJ_EV_OBSERVE: assert_string_equal(str(o, "from"), "OBSERVER"); break;
        case BJ_EV_STATUS:
            assert_string_equal(str(o, "state"), "thinking");
            assert_true(json_real_value(json_object_get(o, "tok_s")) == 12.5);
            break;
        case BJ_EV_OPERATOR:
        case BJ_EV_WATCHDOG: assert_string_equal(str(o, "action"), "JAR_FULL"); break;
        case BJ_EV_LINK:
            assert_string_equal(str(o, "peer"), "OBSERVER");
            assert_string_equal(str(o, "state"), "thinking");
            break;
        default: break;
        }
        json_decref(o);
    }
    assert_string_equal(bj_event_type_name(BJ_EV_COUNT), "unknown");
    assert_string_equal(bj_event_type_name((enum bj_event_type)-1), "unknown");
}

static void test_optional_fields(void **state)
{
    (void)state;
    struct bj_event ev = full_event(BJ_EV_THOUGHT);
    ev.brain[0] = '\0';
    ev.text = NULL;
    ev.complete = false;
    ev.time_us = 1763283000000000LL; /* whole second: no fraction, as the original */
    strcpy(ev.node, "NEURAL_NODE_4821");
    json_t *o = to_json(&ev);
    assert_null(json_object_get(o, "brain"));
    assert_null(json_object_get(o, "text"));
    assert_string_equal(str(o, "node"), "NEURAL_NODE_4821");
    assert_true(json_is_false(json_object_get(o, "complete")));
    assert_string_equal(str(o, "ts"), "2025-11-16T08:50:00Z");
    json_decref(o);
    /* Empty text is kept (a thought cut short before its first token). */
    ev.text = "";
    o = to_json(&ev);
    assert_string_equal(str(o, "text"), "");
    json_decref(o);
    /* A merged token says how many tokens it holds; a single one does not. */
    ev = full_event(BJ_EV_TOKEN);
    ev.pieces = 3;
    o = to_json(&ev);
    assert_int_equal(json_integer_value(json_object_get(o, "n")), 3);
    json_decref(o);
    ev.pieces = 1;
    o = to_json(&ev);
    assert_null(json_object_get(o, "n"));
    json_decref(o);
    /* Big numbers survive. */
    ev = full_event(BJ_EV_DEATH);
    ev.seq = (1ULL << 53) + 1;
    ev.crash_count = 4294967295u;
    o = to_json(&ev);
    assert_true((uint64_t)num(o, "seq") == (1ULL << 53) + 1);
    assert_true((uint64_t)num(o, "crash_count") == 4294967295u);
    json_decref(o);
}

static void test_escaping(void **state)
{
    (void)state;
    struct bj_event ev = full_event(BJ_EV_TOKEN);
    /* Every control character, quotes, backslashes, and non-ASCII up to four bytes. */
    char text[256];
    size_t n = 0;
    for (int c = 1; c < 0x20; c++)
        text[n++] = (char)c;
    const char *rest = "\x7f\"quoted\" back\\slash /slash h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80 end";
    memcpy(text + n, rest, strlen(rest) + 1);
    ev.text = text;
    char *s = bj_event_to_json(&ev);
    assert_non_null(s);
    assert_non_null(strcasestr(s, "\\n"));
    assert_non_null(strcasestr(s, "\\t"));
    assert_non_null(strcasestr(s, "\\u0001"));
    assert_non_null(strcasestr(s, "\\u001f"));
    assert_non_null(strstr(s, "\\\"quoted\\\""));
    assert_non_null(strstr(s, "back\\\\slash"));
    assert_non_null(strcasestr(s, "h\\u00e9llo"));     /* as the original: non-ASCII escaped */
    assert_non_null(strcasestr(s, "\\u20ac"));
    assert_non_null(strcasestr(s, "\\ud83d\\ude00")); /* a surrogate pair */
    free(s);
    json_t *o = to_json(&ev);
    assert_string_equal(str(o, "text"), text); /* the round trip gives the same bytes */
    json_decref(o);

    /* Names with quotes and non-ASCII are escaped as well. */
    ev = full_event(BJ_EV_OBSERVE);
    strcpy(ev.from, "a\"b\\c\xc3\xa9");
    o = to_json(&ev);
    assert_string_equal(str(o, "from"), "a\"b\\c\xc3\xa9");
    json_decref(o);
}

static void test_invalid_utf8(void **state)
{
    (void)state;
    struct bj_event ev = full_event(BJ_EV_TOKEN);
    ev.text = "torn \xc3";
    json_t *o = to_json(&ev);
    assert_string_equal(str(o, "text"), "(invalid UTF-8)");
    json_decref(o);
    ev.text = "\xff\xfe";
    o = to_json(&ev);
    assert_string_equal(str(o, "text"), "(invalid UTF-8)");
    json_decref(o);
    /* An invalid name never makes the whole line invalid: the rest is still JSON. */
    ev = full_event(BJ_EV_OBSERVE);
    strcpy(ev.from, "\xc3(");
    o = to_json(&ev);
    assert_string_equal(str(o, "type"), "observe");
    json_decref(o);
}

static void test_copy_and_evbuf(void **state)
{
    (void)state;
    struct bj_event ev = full_event(BJ_EV_THOUGHT), copy;
    assert_int_equal(bj_event_copy(&copy, &ev), 0);
    assert_ptr_not_equal(copy.text, ev.text);
    assert_string_equal(copy.text, "hello");
    assert_string_equal(copy.brain, "SUBJECT");
    bj_event_clear(&copy);
    assert_null(copy.text);
    bj_event_clear(&copy); /* twice is harmless */
    ev.text = NULL;
    assert_int_equal(bj_event_copy(&copy, &ev), 0);
    assert_null(copy.text);

    struct bj_evbuf b = {0};
    char text[32];
    for (int i = 0; i < 1000; i++) {
        ev = full_event(BJ_EV_TOKEN);
        snprintf(text, sizeof text, "t%d", i);
        ev.text = text;
        ev.seq = (uint64_t)i;
        assert_int_equal(bj_evbuf_push(&b, &ev), 0);
    }
    strcpy(text, "changed"); /* the buffer owns copies */
    assert_int_equal(b.n, 1000);
    for (int i = 0; i < 1000; i++) {
        snprintf(text, sizeof text, "t%d", i);
        assert_string_equal(b.v[i].text, text);
        assert_int_equal(b.v[i].seq, i);
    }
    size_t cap = b.cap;
    bj_evbuf_reset(&b);
    assert_int_equal(b.n, 0);
    assert_int_equal(b.cap, cap); /* memory kept for the next step */
    assert_int_equal(bj_evbuf_push(&b, &ev), 0);
    bj_evbuf_free(&b);
    assert_null(b.v);
    assert_int_equal(b.n, 0);
    bj_evbuf_free(&b); /* twice is harmless */

    int64_t t0 = bj_event_now();
    assert_true(t0 > 1700000000LL * 1000000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type),
        cmocka_unit_test(test_optional_fields),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_copy_and_evbuf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
