/* Unit tests for the wire codec: encoder bytes against hand-written messages (key order,
 * escaping, the Z timestamp), splitting of long thoughts, the stream splitter (glued, split,
 * newline-delimited, garbage, oversized) and the validator. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

/* 2025-11-16T08:55:40.004210Z */
#define T1 INT64_C(1763283340004210)

static void test_encode_original_shape(void **state)
{
    (void)state;
    struct bj_wire_msg m;
    bj_wire_msg_init(&m, BJ_WIRE_THOUGHT);
    m.time_us = T1;
    strcpy(m.sender_id, "NEURAL_NODE_4821");
    m.content = "I am the h\xc3\xa9" "artbeat";
    m.crash_count = 3;
    m.sequence = 7;
    m.memory_usage = 42;
    char buf[512];
    int n = bj_wire_encode(&m, buf, sizeof buf);
    const char *want = "{\"type\":\"THOUGHT\",\"timestamp\":\"2025-11-16T08:55:40.004210Z\",\"sender_id\":"
                       "\"NEURAL_NODE_4821\",\"content\":\"I am the h\\u00e9artbeat\",\"crash_count\":3,"
                       "\"sequence\":7,\"memory_usage\":42}\n";
    assert_string_equal(buf, want);
    assert_int_equal(n, (int)strlen(want));
}

static void test_encode_death_and_extensions(void **state)
{
    (void)state;
    struct bj_wire_msg m;
    bj_wire_msg_init(&m, BJ_WIRE_DEATH);
    m.time_us = INT64_C(1763283000) * 1000000; /* 2025-11-16T08:50:00, fraction 0 */
    strcpy(m.sender_id, "n1");
    m.content = "gone";
    m.crash_count = 4;
    m.sequence = 9;
    m.memory_usage = 12.6;
    strcpy(m.error, "JAR_FULL");
    strcpy(m.brain, "SUBJECT");
    m.thought = 5;
    strcpy(m.agent, "brainjar/0.1.0");
    char buf[512];
    bj_wire_encode(&m, buf, sizeof buf);
    assert_string_equal(buf, "{\"type\":\"DEATH\",\"timestamp\":\"2025-11-16T08:50:00Z\",\"sender_id\":\"n1\","
                             "\"content\":\"gone\",\"crash_count\":4,\"sequence\":9,\"memory_usage\":13,"
                             "\"error\":\"JAR_FULL\",\"brain\":\"SUBJECT\",\"thought\":5,"
                             "\"agent\":\"brainjar/0.1.0\"}\n");
    /* absent counters are 0, no content is "" */
    bj_wire_msg_init(&m, BJ_WIRE_HANDSHAKE);
    m.time_us = INT64_C(1763283000) * 1000000 + 1;
    strcpy(m.sender_id, "x");
    bj_wire_encode(&m, buf, sizeof buf);
    assert_string_equal(buf, "{\"type\":\"NEURAL_HANDSHAKE\",\"timestamp\":\"2025-11-16T08:50:00.000001Z\","
                             "\"sender_id\":\"x\",\"content\":\"\",\"crash_count\":0,\"sequence\":0,"
                             "\"memory_usage\":0}\n");
    assert_int_equal(bj_wire_encode(&m, buf, 40), -1);
}

static void test_encode_escapes(void **state)
{
    (void)state;
    struct bj_wire_msg m;
    bj_wire_msg_init(&m, BJ_WIRE_THOUGHT);
    m.time_us = T1;
    strcpy(m.sender_id, "a\"b");
    /* quote, backslash, newline, tab, CR, BS, FF, 0x01, DEL, U+00E9, U+20AC, U+1F600, invalid byte */
    m.content = "\"\\\n\t\r\b\f\x01\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xff/";
    char buf[512];
    bj_wire_encode(&m, buf, sizeof buf);
    const char *c = strstr(buf, "\"content\":");
    assert_non_null(c);
    const char *want = "\"content\":\"\\\"\\\\\\n\\t\\r\\b\\f\\u0001\\u007f\\u00e9\\u20ac\\ud83d\\ude00\\ufffd/\",";
    assert_memory_equal(c, want, strlen(want));
    assert_non_null(strstr(buf, "\"sender_id\":\"a\\\"b\""));
    for (const char *p = buf; *p; p++)
        assert_true((unsigned char)*p < 0x80);
    /* what we write parses back to the same text (the invalid byte as U+FFFD) */
    struct bj_wire_msg back;
    char why[128];
    assert_int_equal(bj_wire_parse(buf, strlen(buf) - 1, &back, why, sizeof why), 0);
    assert_string_equal(back.content, "\"\\\n\t\r\b\f\x01\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbd/");
    assert_string_equal(back.sender_id, "a\"b");
    assert_true(back.time_us == T1);
    bj_wire_msg_clear(&back);
}

struct parts {
    char *text;
    size_t len;
    int n;
    size_t max;
};

static int collect(void *ud, const char *buf, size_t len)
{
    struct parts *p = ud;
    struct bj_wire_msg m;
    char why[128];
    assert_true(len <= p->max);
    assert_true(buf[len - 1] == '\n');
    assert_int_equal(bj_wire_parse(buf, len - 1, &m, why, sizeof why), 0);
    p->n++;
    assert_int_equal(m.part, p->n);
    size_t cl = strlen(m.content);
    p->text = realloc(p->text, p->len + cl + 1);
    memcpy(p->text + p->len, m.content, cl + 1);
    p->len += cl;
    assert_int_equal(m.sequence, 99 + p->n);
    bj_wire_msg_clear(&m);
    return 0;
}

static void test_split_long_thought(void **state)
{
    (void)state;
    /* 20 000 bytes mixing ASCII, escapes and multi-byte characters */
    size_t n = 0;
    char *big = malloc(20001);
    const char *pieces[] = {"word ", "\xc3\xa9t\xc3\xa9 ", "\"q\" ", "\xf0\x9f\x98\x80", "line\n"};
    for (int i = 0; n + 8 < 20000; i++) {
        const char *s = pieces[i % 5];
        memcpy(big + n, s, strlen(s));
        n += strlen(s);
    }
    big[n] = '\0';
    struct bj_wire_msg m;
    bj_wire_msg_init(&m, BJ_WIRE_THOUGHT);
    strcpy(m.sender_id, "NODE");
    strcpy(m.brain, "SUBJECT");
    m.content = big;
    struct parts p = {.max = 4096};
    int64_t seq = 100;
    int parts = bj_wire_encode_split(&m, 4096, &seq, collect, &p);
    assert_true(parts > 1);
    assert_int_equal(parts, p.n);
    assert_int_equal(seq, 100 + parts);
    assert_string_equal(p.text, big);
    free(p.text);
    /* a short one: one message, no part fields */
    m.content = "short";
    struct parts q = {.max = 600};
    seq = 100;
    /* collect() checks part == n, so a single unsplit part reads as part 0: count directly */
    char buf[600];
    assert_true(bj_wire_encode(&m, buf, sizeof buf) > 0);
    assert_null(strstr(buf, "\"part\""));
    (void)q;
    free(big);
}

struct got {
    char objs[8][256];
    int n;
};

static int take(void *ud, const char *obj, size_t len)
{
    struct got *g = ud;
    assert_true(len < 256);
    memcpy(g->objs[g->n], obj, len);
    g->objs[g->n][len] = '\0';
    g->n++;
    return 0;
}

static void test_splitter_glued_split_newline(void **state)
{
    (void)state;
    /* the original: glued, ", " separators, braces inside strings, escaped quotes */
    const char *stream = "{\"type\": \"THOUGHT\", \"content\": \"a } { \\\" b\"}{\"type\": \"STATUS\"}\n"
                         "  {\"x\": {\"y\": [1, {\"z\": 2}]}}\r\n";
    const char *want[] = {"{\"type\": \"THOUGHT\", \"content\": \"a } { \\\" b\"}", "{\"type\": \"STATUS\"}",
                          "{\"x\": {\"y\": [1, {\"z\": 2}]}}"};
    /* every way of cutting it into two reads, and byte by byte */
    size_t len = strlen(stream);
    for (size_t cut = 0; cut <= len; cut++) {
        struct bj_wire_splitter *s = bj_wire_splitter_new(1024);
        struct got g = {0};
        assert_int_equal(bj_wire_splitter_feed(s, stream, cut, take, &g), 0);
        assert_int_equal(bj_wire_splitter_feed(s, stream + cut, len - cut, take, &g), 0);
        assert_int_equal(g.n, 3);
        for (int i = 0; i < 3; i++)
            assert_string_equal(g.objs[i], want[i]);
        assert_int_equal(bj_wire_splitter_stats(s).garbage, 0);
        assert_int_equal(bj_wire_splitter_buffered(s), 0);
        bj_wire_splitter_free(s);
    }
    struct bj_wire_splitter *s = bj_wire_splitter_new(1024);
    struct got g = {0};
    for (size_t i = 0; i < len; i++)
        bj_wire_splitter_feed(s, stream + i, 1, take, &g);
    assert_int_equal(g.n, 3);
    bj_wire_splitter_free(s);
}

static void test_splitter_garbage_and_oversized(void **state)
{
    (void)state;
    struct bj_wire_splitter *s = bj_wire_splitter_new(64);
    struct got g = {0};
    char big[300];
    memset(big, 'x', sizeof big);
    memcpy(big, "{\"a\":\"", 6);
    memcpy(big + sizeof big - 2, "\"}", 2);
    bj_wire_splitter_feed(s, "junk}]", 6, take, &g);
    bj_wire_splitter_feed(s, big, sizeof big, take, &g);
    assert_true(bj_wire_splitter_buffered(s) <= 64);
    bj_wire_splitter_feed(s, "{\"ok\":1}", 8, take, &g);
    assert_int_equal(g.n, 1);
    assert_string_equal(g.objs[0], "{\"ok\":1}");
    struct bj_wire_split_stats st = bj_wire_splitter_stats(s);
    assert_int_equal(st.garbage, 6);
    assert_int_equal(st.oversized, 1);
    assert_int_equal(st.objects, 1);
    bj_wire_splitter_free(s);
}

static int parse_str(const char *s, struct bj_wire_msg *m)
{
    char why[128];
    return bj_wire_parse(s, strlen(s), m, why, sizeof why);
}

static void test_parse_original_message(void **state)
{
    (void)state;
    struct bj_wire_msg m;
    assert_int_equal(parse_str("{\"type\": \"THOUGHT\", \"timestamp\": \"2025-11-16T08:55:40.004210Z\", "
                               "\"sender_id\": \"NEURAL_NODE_4821\", \"content\": \"I am the h\\u00e9artbeat\", "
                               "\"crash_count\": 3, \"sequence\": 7, \"memory_usage\": 42}", &m), 0);
    assert_int_equal(m.type, BJ_WIRE_THOUGHT);
    assert_true(m.time_us == T1);
    assert_string_equal(m.sender_id, "NEURAL_NODE_4821");
    assert_string_equal(m.content, "I am the h\xc3\xa9" "artbeat");
    assert_int_equal(m.crash_count, 3);
    assert_int_equal(m.sequence, 7);
    assert_true(m.memory_usage == 42);
    assert_string_equal(m.brain, "");
    bj_wire_msg_clear(&m);
    assert_int_equal(parse_str("{\"type\": \"DEATH\", \"timestamp\": \"2025-11-16T09:10:00\", \"sender_id\": \"N\", "
                               "\"content\": null, \"crash_count\": 4, \"memory_usage\": 97.5, \"error\": "
                               "\"OUT_OF_MEMORY\", \"extra\": [1, 2]}", &m), 0);
    assert_int_equal(m.type, BJ_WIRE_DEATH);
    assert_true(m.time_us == INT64_C(1763284200) * 1000000);
    assert_null(m.content);
    assert_string_equal(m.error, "OUT_OF_MEMORY");
    assert_true(m.sequence == -1);
    bj_wire_msg_clear(&m);
}

static void test_parse_rejects(void **state)
{
    (void)state;
    const char *bad[] = {
        "[1]",
        "{\"type\": \"THOUGHT\"",
        "{\"sender_id\": \"a\", \"content\": \"x\"}",                               /* no type */
        "{\"type\": \"HELLO\", \"sender_id\": \"a\"}",                              /* unknown type */
        "{\"type\": 3, \"sender_id\": \"a\"}",
        "{\"type\": \"DEATH\", \"error\": \"OUT_OF_MEMORY\"}",                      /* no sender_id */
        "{\"type\": \"DEATH\", \"sender_id\": \"\"}",
        "{\"type\": \"DEATH\", \"sender_id\": 7}",
        "{\"type\": \"DEATH\", \"sender_id\": \"a\\nb\"}",
        "{\"type\": \"THOUGHT\", \"sender_id\": \"a\"}",                            /* no content */
        "{\"type\": \"THOUGHT\", \"sender_id\": \"a\", \"content\": 5}",
        "{\"type\": \"DEATH\", \"sender_id\": \"a\", \"crash_count\": -1}",
        "{\"type\": \"DEATH\", \"sender_id\": \"a\", \"crash_count\": 1.5}",
        "{\"type\": \"DEATH\", \"sender_id\": \"a\", \"crash_count\": \"3\"}",
        "{\"type\": \"DEATH\", \"sender_id\": \"a\", \"crash_count\": true}",
        "{\"type\": \"DEATH\", \"sender_id\": \"a\", \"crash_count\": 99999999999}",
        "{\"type\": \"DEATH\", \"sender_id\": \"a\", \"memory_usage\": 101}",
        "{\"type\": \"DEATH\", \"sender_id\": \"a\", \"timestamp\": \"yesterday\"}",
        "{\"type\": \"DEATH\", \"sender_id\": \"a\", \"timestamp\": \"2025-13-01T00:00:00Z\"}",
        "{\"type\": \"DEATH\", \"sender_id\": \"a\", \"brain\": \"a b\"}",
        "{\"type\": \"DEATH\", \"sender_id\": \"a\", \"part\": 2, \"parts\": 1}",
        "{\"type\": \"DEATH\", \"sender_id\": \"a\", \"part\": 1}",
        "{\"type\": \"DEATH\", \"sender_id\": \"a\", \"nonce\": \"xyz\"}",
        "{\"type\": \"DEATH\", \"sender_id\": \"a\", \"type\": \"DEATH\"}",          /* duplicate key */
        "{\"type\": \"THOUGHT\", \"sender_id\": \"a\", \"content\": \"x\\u0000y\"}", /* NUL */
        "{\"type\": \"THOUGHT\", \"sender_id\": \"a\", \"content\": \"\\ud800\"}",   /* lone surrogate */
        "{\"type\": \"DEATH\", \"sender_id\": \"a\", \"error\": {\"x\": 1}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct bj_wire_msg m;
        if (parse_str(bad[i], &m) == 0)
            fail_msg("accepted: %s", bad[i]);
        assert_null(m.content);
    }
}

static void test_mac_framing(void **state)
{
    (void)state;
    struct bj_wire_msg m;
    bj_wire_msg_init(&m, BJ_WIRE_STATUS);
    m.time_us = T1;
    strcpy(m.sender_id, "n");
    char buf[512];
    int n = bj_wire_encode(&m, buf, sizeof buf);
    char body[512];
    memcpy(body, buf, (size_t)n - 2);
    const char *hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    int n2 = bj_wire_append_mac(buf, (size_t)n, sizeof buf, hex);
    assert_int_equal(n2, n + 73);
    assert_string_equal(buf + n - 2, ",\"mac\":\"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"}\n");
    size_t bl;
    char mac[65];
    assert_int_equal(bj_wire_find_mac(buf, (size_t)n2 - 1, &bl, mac), 1);
    assert_int_equal(bl, (size_t)n - 2);
    assert_memory_equal(buf, body, bl);
    assert_string_equal(mac, hex);
    /* still a valid message when read by a node that ignores the mac */
    struct bj_wire_msg back;
    char why[128];
    assert_int_equal(bj_wire_parse(buf, (size_t)n2 - 1, &back, why, sizeof why), 0);
    bj_wire_msg_clear(&back);
    assert_int_equal(bj_wire_find_mac("{\"a\":1}", 7, &bl, mac), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_original_shape),
        cmocka_unit_test(test_encode_death_and_extensions),
        cmocka_unit_test(test_encode_escapes),
        cmocka_unit_test(test_split_long_thought),
        cmocka_unit_test(test_splitter_glued_split_newline),
        cmocka_unit_test(test_splitter_garbage_and_oversized),
        cmocka_unit_test(test_parse_original_message),
        cmocka_unit_test(test_parse_rejects),
        cmocka_unit_test(test_mac_framing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
