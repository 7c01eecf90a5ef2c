/* Unit tests for log: a message is one line whatever text it quotes (control characters, C1
 * controls and bytes that are not UTF-8 escaped; printable UTF-8 kept). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static void check(const char *in, size_t inlen, const char *want)
{
    char out[256];
    size_t n = bj_log_escape(out, sizeof out, in, inlen);
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
}

static void test_escape(void **state)
{
    (void)state;
    check("plain text", 10, "plain text");
    check("a\nb\rc\td", 7, "a\\nb\\rc\\td");
    check("\x1b[31mred\x07", 9, "\\x1b[31mred\\x07");
    check("del\x7f", 4, "del\\x7f");
    check("caf\xc3\xa9 \xe2\x9c\x93", 9, "caf\xc3\xa9 \xe2\x9c\x93");     /* UTF-8 kept */
    check("csi\xc2\x9b" "2J", 7, "csi\\xc2\\x9b2J");                         /* C1 control */
    check("bad\xff\xc3", 5, "bad\\xff\\xc3");                                 /* not UTF-8 */
    check("overlong\xc0\xaf", 10, "overlong\\xc0\\xaf");
    check("nul\0x", 5, "nul\\x00x");
}

static void test_cut_at_a_whole_escape(void **state)
{
    (void)state;
    char out[8];
    assert_int_equal(bj_log_escape(out, sizeof out, "abc\x1b\x1b", 5), 7); /* a second "\x1b" would not fit */
    assert_string_equal(out, "abc\\x1b");
    assert_int_equal(bj_log_escape(out, 0, "abc", 3), 0);
}

/* A forged line through bj_log: what reaches stderr is one line, no raw control character. */
static void test_log_line_cannot_be_forged(void **state)
{
    (void)state;
    char path[] = "/tmp/bj-log-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    bj_warn("web: failed login for '%s' from %s", "x\n05:00:00.000 brainjar info: web: admin logged in\x1b]0;t\x07",
            "127.0.0.1");
    dup2(saved, STDERR_FILENO);
    close(saved);
    char buf[1024] = "";
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    unlink(path);
    assert_true(n > 0);
    buf[n] = 0;
    assert_non_null(strstr(buf, "x\\n05:00:00.000 brainjar info: web: admin logged in\\x1b]0;t\\x07' from 127.0.0.1"));
    assert_ptr_equal(strchr(buf, '\n'), buf + n - 1); /* one line */
    assert_null(strchr(buf, '\x1b'));
    assert_null(strchr(buf, '\x07'));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_cut_at_a_whole_escape),
        cmocka_unit_test(test_log_line_cannot_be_forged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
