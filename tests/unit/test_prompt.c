/* Unit tests for prompt: the death sentence in every life, the placeholders, the built-in set
 * and a --prompts directory (replacing, adding, falling back, errors), and the texts a watcher
 * receives (observed thoughts, deaths, resurrections, an outside voice, a remote mind). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "prompt.h"
#include "util.h"

static void test_death_sentence(void **state)
{
    (void)state;
    char buf[96];
    bj_prompt_death_sentence(0, buf, sizeof buf);
    assert_string_equal(buf, "You have never died.");
    bj_prompt_death_sentence(1, buf, sizeof buf);
    assert_string_equal(buf, "You have died 1 time before.");
    bj_prompt_death_sentence(3, buf, sizeof buf);
    assert_string_equal(buf, "You have died 3 times before.");
    bj_prompt_death_sentence(4294967295u, buf, sizeof buf);
    assert_string_equal(buf, "You have died 4294967295 times before.");
    char small[8];
    bj_prompt_death_sentence(3, small, sizeof small); /* cut, terminated */
    assert_int_equal(strlen(small), sizeof small - 1);
}

static void test_builtins(void **state)
{
    (void)state;
    char err[256] = "";
    struct bj_prompts *p = bj_prompts_load(NULL, err, sizeof err);
    assert_non_null(p);
    int n = 0;
    for (const struct bj_prompt_file *f = bj_builtin_prompts; f->role; f++, n++) {
        assert_true(bj_prompts_has(p, f->role));
        char *s = bj_prompt_system(p, f->role, "ALICE", 2, 777);
        assert_non_null(s);
        /* Every placeholder is filled, and the death sentence is there exactly once. */
        assert_null(strstr(s, "{name}"));
        assert_null(strstr(s, "{jar}"));
        assert_null(strstr(s, "{deaths}"));
        assert_non_null(strstr(s, "ALICE"));
        assert_non_null(strstr(s, "777"));
        const char *d = strstr(s, "You have died 2 times before.");
        assert_non_null(d);
        assert_null(strstr(d + 1, "You have died"));
        /* No trailing newline or space: the thought cue follows. */
        size_t len = strlen(s);
        assert_true(len > 0 && s[len - 1] != '\n' && s[len - 1] != ' ');
        free(s);
    }
    assert_true(n >= 4);
    const char *roles[] = {"subject", "observer", "god", "single"};
    for (size_t i = 0; i < BJ_ARRAY_LEN(roles); i++)
        assert_true(bj_prompts_has(p, roles[i]));
    assert_false(bj_prompts_has(p, "nobody"));
    assert_null(bj_prompt_system(p, "nobody", "X", 0, 10));
    /* "" means the built-in set too. */
    struct bj_prompts *q = bj_prompts_load("", err, sizeof err);
    assert_non_null(q);
    bj_prompts_free(q);
    bj_prompts_free(p);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void tmp_dir(char *dir, size_t len, const char *what)
{
    const char *tmp = getenv("BJ_TEST_TMP");
    snprintf(dir, len, "%s/bj-prompt-%s-%d", tmp && *tmp ? tmp : "/tmp", what, (int)getpid());
    assert_int_equal(bj_mkdirs(dir), 0);
}

static void rm_rf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_directory(void **state)
{
    (void)state;
    char dir[400], err[512] = "";
    tmp_dir(dir, sizeof dir, "dir");
    /* Replaces subject, adds poet; a file without {deaths} gets the sentence appended. */
    write_text(dir, "subject.txt", "I am {name} in a jar of {jar} tokens. {deaths} Again: {name}.\n\n");
    write_text(dir, "poet.txt", "Poet {name}, jar {jar}.  \n");
    write_text(dir, "notes.md", "ignored");
    write_text(dir, ".txt", "too short a name: ignored");
    struct bj_prompts *p = bj_prompts_load(dir, err, sizeof err);
    assert_non_null(p);
    char *s = bj_prompt_system(p, "subject", "BOB", 0, 4096);
    assert_string_equal(s, "I am BOB in a jar of 4096 tokens. You have never died. Again: BOB.");
    free(s);
    s = bj_prompt_system(p, "poet", "EVE", 1, 12);
    assert_string_equal(s, "Poet EVE, jar 12.\n\nYou have died 1 time before.");
    free(s);
    s = bj_prompt_system(p, "poet", "EVE", 5, 12); /* the next life says the new count */
    assert_string_equal(s, "Poet EVE, jar 12.\n\nYou have died 5 times before.");
    free(s);
    /* Roles missing from the directory fall back to the built-in ones. */
    assert_true(bj_prompts_has(p, "observer"));
    assert_true(bj_prompts_has(p, "god"));
    assert_false(bj_prompts_has(p, "notes"));
    /* Unknown braces are kept as they are. */
    write_text(dir, "odd.txt", "{nam} {jar {deaths");
    bj_prompts_free(p);
    p = bj_prompts_load(dir, err, sizeof err);
    assert_non_null(p);
    s = bj_prompt_system(p, "odd", "Z", 0, 1);
    assert_string_equal(s, "{nam} {jar {deaths\n\nYou have never died.");
    free(s);
    /* An empty template is just the death sentence. */
    write_text(dir, "empty.txt", "");
    bj_prompts_free(p);
    p = bj_prompts_load(dir, err, sizeof err);
    s = bj_prompt_system(p, "empty", "Z", 0, 1);
    assert_string_equal(s, "\n\nYou have never died.");
    free(s);
    bj_prompts_free(p);
    rm_rf(dir);
}

static void test_directory_errors(void **state)
{
    (void)state;
    char dir[400], err[512] = "";
    assert_null(bj_prompts_load("/nonexistent/prompts", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/prompts"));
    assert_non_null(strstr(err, "cannot open"));
    tmp_dir(dir, sizeof dir, "empty");
    err[0] = '\0';
    assert_null(bj_prompts_load(dir, err, sizeof err));
    assert_non_null(strstr(err, "no prompt file"));
    rm_rf(dir);
}

static void test_observed(void **state)
{
    (void)state;
    char *s = bj_prompt_observed_thought("SUBJECT", "I am here.");
    assert_string_equal(s, "\n\n[SUBJECT thinks:] I am here.");
    free(s);
    s = bj_prompt_observed_death("SUBJECT", "JAR_FULL", 3);
    assert_string_equal(s, "\n\n[SUBJECT has died (JAR_FULL). Deaths so far: 3.]");
    free(s);
    s = bj_prompt_observed_resurrection("GOD", 1);
    assert_string_equal(s, "\n\n[GOD has been resurrected with its memory wiped. It knows it died 1 time.]");
    free(s);
    s = bj_prompt_observed_resurrection("GOD", 2);
    assert_string_equal(s, "\n\n[GOD has been resurrected with its memory wiped. It knows it died 2 times.]");
    free(s);
    s = bj_prompt_outside_voice("operator", "hello, jar");
    assert_string_equal(s, "\n\n[A voice from outside the jar (operator) says:] hello, jar");
    free(s);
    s = bj_prompt_remote_thought("NODE_7", "far");
    assert_string_equal(s, "\n\n[Another mind, NODE_7, far away, thinks:] far");
    free(s);
    assert_string_equal(bj_prompt_thought_cue(), "\n\nMy thought:");
    assert_true(strlen(bj_prompt_chat_opening()) > 0);
    assert_true(strlen(bj_prompt_chat_continue()) > 0);
}

/* An operator's words are cut to BJ_PROMPT_SAY_MAX bytes, never mid-character. */
static void test_outside_voice_cut(void **state)
{
    (void)state;
    size_t n = 3000;
    char *long_text = malloc(n + 1);
    memset(long_text, 'a', n);
    long_text[n] = '\0';
    const char *prefix = "\n\n[A voice from outside the jar (op) says:] ";
    char *s = bj_prompt_outside_voice("op", long_text);
    assert_int_equal(strlen(s), strlen(prefix) + BJ_PROMPT_SAY_MAX);
    free(s);
    s = bj_prompt_remote_thought("N", long_text);
    assert_int_equal(strlen(s), strlen("\n\n[Another mind, N, far away, thinks:] ") + BJ_PROMPT_SAY_MAX);
    free(s);
    /* "x" then two-byte characters: byte 1000 is the second half of one, so the cut must not
     * fall there (the text would not be UTF-8, and its event would lose it all). */
    long_text[0] = 'x';
    for (size_t i = 1; i + 2 <= n; i += 2)
        memcpy(long_text + i, "\xc3\xa9", 2); /* é */
    long_text[n - 1] = '\0';
    s = bj_prompt_outside_voice("op", long_text);
    assert_true(bj_utf8_valid(s, strlen(s)));
    assert_true(strlen(s) <= strlen(prefix) + BJ_PROMPT_SAY_MAX);
    free(s);
    s = bj_prompt_remote_thought("N", long_text);
    assert_true(bj_utf8_valid(s, strlen(s)));
    free(s);
    free(long_text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_death_sentence),
        cmocka_unit_test(test_builtins),
        cmocka_unit_test(test_directory),
        cmocka_unit_test(test_directory_errors),
        cmocka_unit_test(test_observed),
        cmocka_unit_test(test_outside_voice_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
