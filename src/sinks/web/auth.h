/* auth: the web server's users, sessions, API tokens and failed-login rate limit.
 *
 * Three files in the data directory, each written whole to a temporary file, fsync'ed and renamed
 * (mode 0600), so a crash never leaves half a file:
 *   web-users     one user a line: NAME ROLE ARGON2ID-HASH   (libsodium crypto_pwhash_str)
 *   web-tokens    one API token a line: ID ROLE SHA256(TOKEN) CREATED NAME
 *   web-sessions  one session a line: SHA256(SESSION) USER ROLE EXPIRES
 * Passwords are stored only as Argon2id hashes; tokens and session ids are 256-bit random
 * values, stored only as SHA-256 hashes (a fast hash suffices for random secrets), and compared
 * in constant time. Sessions survive a restart because they are in a file; logout removes them.
 *
 * No default password: bj_auth_ensure_admin() makes `admin` with a random password when there
 * is no user at all, and hands the password to the caller to print once.
 *
 * Threads: one thread at a time per struct bj_auth (the web event loop; the CLI subcommands), but
 * bj_auth_password_ok() (no struct) may run on any thread. */
#ifndef BJ_AUTH_H
#define BJ_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum bj_role { BJ_ROLE_NONE = 0, BJ_ROLE_VIEWER = 1, BJ_ROLE_OPERATOR = 2 };

#define BJ_AUTH_NAME_MAX 64
/* A session id or API token as text: "bj_" + 64 hex digits. */
#define BJ_AUTH_SECRET_LEN 67
#define BJ_AUTH_PASSWORD_MAX 1024

struct bj_auth;

/* Opens (and creates) the auth files under dir. NULL with err on failure (unreadable file,
 * cannot create the directory). Lines that do not parse are skipped with a warning. */
struct bj_auth *bj_auth_new(const char *dir, char *err, size_t errlen);
void bj_auth_free(struct bj_auth *a);
/* Re-reads the users and tokens files when another process (brainjar passwd, brainjar token)
 * changed them (two stat calls when nothing changed). */
void bj_auth_refresh(struct bj_auth *a);

const char *bj_role_name(enum bj_role r);
/* "viewer" or "operator"; BJ_ROLE_NONE otherwise. */
enum bj_role bj_role_parse(const char *s);

int bj_auth_user_count(const struct bj_auth *a);
/* A user's role, or BJ_ROLE_NONE when there is no such user. */
enum bj_role bj_auth_user_role(struct bj_auth *a, const char *user);
/* Whether a name is acceptable: 1..63 of [A-Za-z0-9_.@-]. */
bool bj_auth_valid_name(const char *name);

/* Creates or updates a user (hashing the password with Argon2id). 0, or -1 with err. */
int bj_auth_set_password(struct bj_auth *a, const char *user, const char *password, enum bj_role role,
                         char *err, size_t errlen);

/* When there is no user: creates "admin" (operator) with a random password written into pw
 * (at least 25 bytes) and returns 1. 0 when users exist; -1 with err on failure. */
int bj_auth_ensure_admin(struct bj_auth *a, char *pw, size_t pwlen, char *err, size_t errlen);

/* Checks a user's password (constant work whether or not the user exists). On success creates
 * a session valid for ttl_s seconds, writes its id into session (BJ_AUTH_SECRET_LEN + 1 bytes)
 * and the role into *role, and returns 0; -1 when the credentials are wrong or on failure. */
int bj_auth_login(struct bj_auth *a, const char *user, const char *password, int64_t ttl_s,
                  char *session, enum bj_role *role);

/* The same in three steps, so that the slow middle one (Argon2id, 150-300 ms) can run on another
 * thread than the one that owns the struct bj_auth (the web server's hash workers):
 *   bj_auth_login_hash()    owner's thread: the hash to check against (the user's, or a dummy one
 *                           when there is no such user, so an unknown name costs the same);
 *   bj_auth_password_ok()   any thread, touches no struct bj_auth: whether password matches hash;
 *   bj_auth_login_finish()  owner's thread, after a match: creates the session as bj_auth_login()
 *                           does, if the user still exists with that same hash (0), else -1. */
#define BJ_AUTH_HASH_MAX 128
void bj_auth_login_hash(struct bj_auth *a, const char *user, char hash[BJ_AUTH_HASH_MAX]);
bool bj_auth_password_ok(const char *hash, const char *password);
int bj_auth_login_finish(struct bj_auth *a, const char *user, const char *hash, int64_t ttl_s, char *session,
                         enum bj_role *role);

/* The role of a live session (cookie value), or BJ_ROLE_NONE; the user's name into user. */
enum bj_role bj_auth_session(struct bj_auth *a, const char *session, char *user, size_t userlen);
/* Ends a session. 0 when it existed. */
int bj_auth_logout(struct bj_auth *a, const char *session);

/* Creates an API token; its text into token (BJ_AUTH_SECRET_LEN + 1 bytes), shown once. */
int bj_auth_token_create(struct bj_auth *a, enum bj_role role, const char *name, char *token,
                         char *err, size_t errlen);
/* The role of an API token, or BJ_ROLE_NONE; the token's name into name. */
enum bj_role bj_auth_token(struct bj_auth *a, const char *token, char *name, size_t namelen);
int bj_auth_token_count(const struct bj_auth *a);

/* ---- failed-login rate limit, per client address ----------------------------------------
 * At most `max_failures` failures in `window_s` seconds; then refused until the window passes.
 * Addresses are remembered in a bounded table (the oldest entry is reused when full). */
void bj_auth_limit_config(struct bj_auth *a, int max_failures, int window_s);
/* Seconds until addr may try again (0: now). now_s: a monotonic clock in seconds. */
int bj_auth_limit_wait(struct bj_auth *a, const char *addr, int64_t now_s);
void bj_auth_limit_fail(struct bj_auth *a, const char *addr, int64_t now_s);
void bj_auth_limit_clear(struct bj_auth *a, const char *addr);

/* Constant-time comparison of two strings (length leaks only through the result). */
bool bj_auth_equal(const char *a, const char *b);

#endif
