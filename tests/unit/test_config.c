/* Unit tests for config: the hive-file parser on hostile text (line numbers, BOM, NUL bytes). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static struct bj_config g_c; /* large: not on the stack */

/* Parses a copy of text[0..len) (a hive file's bytes); returns the parser's result, err filled. */
static int parse(const char *text, size_t len, char *err, size_t errlen)
{
    char *buf = malloc(len + 1);
    assert_non_null(buf);
    memcpy(buf, text, len);
    buf[len] = '\0';
    bj_config_defaults(&g_c);
    err[0] = '\0';
    int rc = bj_config_parse_hive(&g_c, "t.hive", buf, len, err, errlen);
    free(buf);
    return rc;
}

#define PARSE(lit, err) parse(lit, sizeof(lit) - 1, err, sizeof err)

static void test_good_file(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(PARSE("# a comment\n\n[hive]\nmodel = m.gguf\n\n[brain A]\njar_tokens = 512\r\n"
                           "[brain B]\nwatches = A\nsees_deaths = yes\n", err), 0);
    assert_int_equal(g_c.spec.n_brains, 2);
    assert_int_equal(g_c.spec.brains[0].jar_tokens, 512);
    assert_string_equal(g_c.spec.brains[1].watches[0], "A");
}

static void test_line_numbers_count_blank_and_comment_lines(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(PARSE("\n\n# comment\n\n[brain A]\n\nbogus line\n", err), -1);
    assert_non_null(strstr(err, "line 7:"));
    assert_int_equal(PARSE("[brain A]\njar_tokens = -3\n", err), -1);
    assert_non_null(strstr(err, "line 2:"));
}

static void test_bom_accepted(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(PARSE("\xEF\xBB\xBF[brain A]\nrole = subject\n", err), 0);
    assert_string_equal(g_c.spec.brains[0].id, "A");
    /* a BOM that is not at the start is a plain error, on its line */
    assert_int_equal(PARSE("[brain A]\n\xEF\xBB\xBF[brain B]\n", err), -1);
    assert_non_null(strstr(err, "line 2:"));
}

static void test_nul_byte_is_an_error_on_its_line(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(PARSE("[brain A]\n\nrole = sub\0ject\n[brain B]\n", err), -1);
    assert_non_null(strstr(err, "line 3:"));
    assert_non_null(strstr(err, "NUL"));
}

static void test_empty_and_no_brain(void **state)
{
    (void)state;
    char err[512];
    assert_int_equal(parse("", 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "no [brain NAME]"));
    assert_int_equal(PARSE("\n\n\n", err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_file),
        cmocka_unit_test(test_line_numbers_count_blank_and_comment_lines),
        cmocka_unit_test(test_bom_accepted),
        cmocka_unit_test(test_nul_byte_is_an_error_on_its_line),
        cmocka_unit_test(test_empty_and_no_brain),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
