/* Unit tests for auth: users, sessions (across a reopen), tokens, roles, the rate limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "auth.h"

static char g_dir[512];

static int setup(void **state)
{
    (void)state;
    const char *base = getenv("BJ_TEST_TMP");
    snprintf(g_dir, sizeof g_dir, "%s/auth-XXXXXX", base && *base ? base : "/tmp");
    mkdir(base && *base ? base : "/tmp", 0755);
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_first_admin_and_login(void **state)
{
    (void)state;
    char err[256], pw[64], session[BJ_AUTH_SECRET_LEN + 1], user[64];
    struct bj_auth *a = bj_auth_new(g_dir, err, sizeof err);
    assert_non_null(a);
    assert_int_equal(bj_auth_ensure_admin(a, pw, sizeof pw, err, sizeof err), 1);
    assert_int_equal(strlen(pw), 23);
    assert_int_equal(bj_auth_ensure_admin(a, pw, sizeof pw, err, sizeof err), 0); /* only once */
    char path[600];
    snprintf(path, sizeof path, "%s/web-users", g_dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    enum bj_role role;
    assert_int_equal(bj_auth_login(a, "admin", "wrong password", 60, session, &role), -1);
    assert_int_equal(bj_auth_login(a, "nobody", pw, 60, session, &role), -1);
    assert_int_equal(bj_auth_login(a, "admin", pw, 60, session, &role), 0);
    assert_int_equal(role, BJ_ROLE_OPERATOR);
    assert_int_equal(strlen(session), BJ_AUTH_SECRET_LEN);
    assert_int_equal(bj_auth_session(a, session, user, sizeof user), BJ_ROLE_OPERATOR);
    assert_string_equal(user, "admin");
    bj_auth_free(a);

    /* Sessions survive a reopen; logout ends them. */
    a = bj_auth_new(g_dir, err, sizeof err);
    assert_non_null(a);
    assert_int_equal(bj_auth_session(a, session, NULL, 0), BJ_ROLE_OPERATOR);
    session[10] ^= 1;
    assert_int_equal(bj_auth_session(a, session, NULL, 0), BJ_ROLE_NONE);
    session[10] ^= 1;
    assert_int_equal(bj_auth_logout(a, session), 0);
    assert_int_equal(bj_auth_session(a, session, NULL, 0), BJ_ROLE_NONE);
    assert_int_equal(bj_auth_logout(a, session), -1);
    bj_auth_free(a);
}

static void test_passwords_roles_tokens(void **state)
{
    (void)state;
    char err[256], session[BJ_AUTH_SECRET_LEN + 1], tok[BJ_AUTH_SECRET_LEN + 1], name[96];
    struct bj_auth *a = bj_auth_new(g_dir, err, sizeof err);
    assert_non_null(a);
    assert_int_equal(bj_auth_set_password(a, "bad name", "long enough", BJ_ROLE_VIEWER, err, sizeof err), -1);
    assert_int_equal(bj_auth_set_password(a, "vera", "short", BJ_ROLE_VIEWER, err, sizeof err), -1);
    assert_int_equal(bj_auth_set_password(a, "vera", "long enough", BJ_ROLE_VIEWER, err, sizeof err), 0);
    enum bj_role role;
    assert_int_equal(bj_auth_login(a, "vera", "long enough", 60, session, &role), 0);
    assert_int_equal(role, BJ_ROLE_VIEWER);
    assert_int_equal(bj_auth_user_role(a, "vera"), BJ_ROLE_VIEWER);
    /* A new password ends the user's sessions. */
    assert_int_equal(bj_auth_set_password(a, "vera", "another one", BJ_ROLE_OPERATOR, err, sizeof err), 0);
    assert_int_equal(bj_auth_session(a, session, NULL, 0), BJ_ROLE_NONE);
    assert_int_equal(bj_auth_token_create(a, BJ_ROLE_VIEWER, "grafana", tok, err, sizeof err), 0);
    assert_int_equal(bj_auth_token(a, tok, name, sizeof name), BJ_ROLE_VIEWER);
    assert_string_equal(name, "token:grafana");
    assert_int_equal(bj_auth_token(a, "bj_0000", NULL, 0), BJ_ROLE_NONE);
    assert_int_equal(bj_auth_token(a, NULL, NULL, 0), BJ_ROLE_NONE);
    /* Another process's change is picked up by refresh. */
    struct bj_auth *b = bj_auth_new(g_dir, err, sizeof err);
    char tok2[BJ_AUTH_SECRET_LEN + 1];
    sleep(1); /* mtime resolution on some file systems */
    assert_int_equal(bj_auth_token_create(b, BJ_ROLE_OPERATOR, NULL, tok2, err, sizeof err), 0);
    assert_int_equal(bj_auth_token(a, tok2, NULL, 0), BJ_ROLE_NONE);
    bj_auth_refresh(a);
    assert_int_equal(bj_auth_token(a, tok2, NULL, 0), BJ_ROLE_OPERATOR);
    bj_auth_free(b);
    bj_auth_free(a);
}

static void test_rate_limit(void **state)
{
    (void)state;
    char err[256];
    struct bj_auth *a = bj_auth_new(g_dir, err, sizeof err);
    assert_non_null(a);
    bj_auth_limit_config(a, 3, 60);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(bj_auth_limit_wait(a, "10.0.0.1", 100), 0);
        bj_auth_limit_fail(a, "10.0.0.1", 100);
    }
    assert_int_equal(bj_auth_limit_wait(a, "10.0.0.1", 110), 50);
    assert_int_equal(bj_auth_limit_wait(a, "10.0.0.2", 110), 0);
    assert_int_equal(bj_auth_limit_wait(a, "10.0.0.1", 160), 0); /* the window passed */
    bj_auth_limit_fail(a, "10.0.0.3", 100);
    bj_auth_limit_clear(a, "10.0.0.3");
    assert_int_equal(bj_auth_limit_wait(a, "10.0.0.3", 100), 0);
    /* Many addresses: a bounded table, no failure. */
    char addr[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(addr, sizeof addr, "192.0.2.%d/%d", i % 250, i);
        bj_auth_limit_fail(a, addr, 200 + i);
    }
    bj_auth_free(a);
}

static void test_equal(void **state)
{
    (void)state;
    assert_true(bj_auth_equal("abc", "abc"));
    assert_false(bj_auth_equal("abc", "abd"));
    assert_false(bj_auth_equal("abc", "abcd"));
    assert_false(bj_auth_equal("", "a"));
    assert_true(bj_auth_equal("", ""));
}

/* The login in three steps (the web server's hash workers run the middle one on another thread):
 * the same verdicts as bj_auth_login, and a password changed between check and finish voids it. */
static void test_login_in_three_steps(void **state)
{
    (void)state;
    char err[256], session[BJ_AUTH_SECRET_LEN + 1], hash[BJ_AUTH_HASH_MAX], dummy[BJ_AUTH_HASH_MAX];
    struct bj_auth *a = bj_auth_new(g_dir, err, sizeof err);
    assert_non_null(a);
    assert_int_equal(bj_auth_set_password(a, "vera", "long enough", BJ_ROLE_VIEWER, err, sizeof err), 0);
    enum bj_role role = BJ_ROLE_NONE;
    bj_auth_login_hash(a, "vera", hash);
    assert_true(strncmp(hash, "$argon2id$", 10) == 0);
    assert_false(bj_auth_password_ok(hash, "wrong password"));
    assert_true(bj_auth_password_ok(hash, "long enough"));
    assert_int_equal(bj_auth_login_finish(a, "vera", hash, 60, session, &role), 0);
    assert_int_equal(role, BJ_ROLE_VIEWER);
    assert_int_equal(bj_auth_session(a, session, NULL, 0), BJ_ROLE_VIEWER);
    /* No such user: a dummy hash (as costly), and finish never makes a session from it. */
    bj_auth_login_hash(a, "nobody", dummy);
    assert_true(strncmp(dummy, "$argon2id$", 10) == 0);
    assert_false(bj_auth_password_ok(dummy, "long enough"));
    assert_int_equal(bj_auth_login_finish(a, "nobody", dummy, 60, session, &role), -1);
    bj_auth_login_hash(a, "bad name", dummy);
    assert_int_equal(bj_auth_login_finish(a, "bad name", dummy, 60, session, &role), -1);
    /* The password changed after the check: the old verdict no longer counts. */
    assert_int_equal(bj_auth_set_password(a, "vera", "another long one", BJ_ROLE_VIEWER, err, sizeof err), 0);
    assert_int_equal(bj_auth_login_finish(a, "vera", hash, 60, session, &role), -1);
    bj_auth_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_admin_and_login, setup, teardown),
        cmocka_unit_test_setup_teardown(test_passwords_roles_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rate_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_in_three_steps, setup, teardown),
        cmocka_unit_test(test_equal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
