/* Unit tests for util: strict parsers and the UTF-8 sanitizer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "util.h"

static void test_parse_long(void **state)
{
    (void)state;
    long v;
    assert_int_equal(bj_parse_long("42", 0, 100, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(bj_parse_long("-1", 0, 100, &v), -1);
    assert_int_equal(bj_parse_long("4x", 0, 100, &v), -1);
    assert_int_equal(bj_parse_long("", 0, 100, &v), -1);
    assert_int_equal(bj_parse_long("101", 0, 100, &v), -1);
}

static void test_parse_double(void **state)
{
    (void)state;
    double d;
    assert_int_equal(bj_parse_double("6.5", 0, 100, &d), 0);
    assert_true(d == 6.5);
    assert_int_equal(bj_parse_double("nan", 0, 100, &d), -1);
    assert_int_equal(bj_parse_double("-2", 0, 100, &d), -1);
    assert_int_equal(bj_parse_double("1e999", 0, 1e300, &d), -1);
}

static void test_utf8_split_sequence(void **state)
{
    (void)state;
    struct bj_utf8 st = {0};
    char out[64];
    /* "é" = C3 A9 split across two tokens */
    assert_int_equal(bj_utf8_feed(&st, "a\xC3", 2, out), 1);
    assert_string_equal(out, "a");
    assert_int_equal(bj_utf8_feed(&st, "\xA9" "b", 2, out), 3);
    assert_string_equal(out, "\xC3\xA9" "b");
}

static void test_utf8_invalid(void **state)
{
    (void)state;
    struct bj_utf8 st = {0};
    char out[64];
    bj_utf8_feed(&st, "\xFF" "x", 2, out);
    assert_string_equal(out, "\xEF\xBF\xBD" "x");
    bj_utf8_feed(&st, "\xE2\x82" "y", 3, out); /* truncated 3-byte sequence */
    assert_string_equal(out, "\xEF\xBF\xBD" "y");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_long),
        cmocka_unit_test(test_parse_double),
        cmocka_unit_test(test_utf8_split_sequence),
        cmocka_unit_test(test_utf8_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
