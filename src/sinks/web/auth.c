/* auth: see auth.h. */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "util.h"

#define HASH_HEX 64 /* SHA-256 as hex */
#define LIMIT_SLOTS 1024

struct user {
    char name[BJ_AUTH_NAME_MAX];
    enum bj_role role;
    char hash[crypto_pwhash_STRBYTES];
};
struct token {
    char id[17];
    enum bj_role role;
    char hash[HASH_HEX + 1];
    int64_t created;
    char name[BJ_AUTH_NAME_MAX];
};
struct session {
    char hash[HASH_HEX + 1];
    char user[BJ_AUTH_NAME_MAX];
    enum bj_role role;
    int64_t expires; /* wall clock, seconds */
};
struct limit {
    char addr[64];
    int64_t window_start;
    int failures;
    int64_t used; /* last touched, for reuse when the table is full */
};

struct bj_auth {
    char users_path[4096], tokens_path[4096], sessions_path[4096];
    struct user *users;
    int n_users;
    struct token *tokens;
    int n_tokens;
    struct session *sessions;
    int n_sessions;
    struct limit limits[LIMIT_SLOTS];
    int max_failures, window_s;
    char dummy_hash[crypto_pwhash_STRBYTES]; /* verified against when the user does not exist */
    struct stat users_st, tokens_st;         /* as last read */
};

static struct user *find_user(struct bj_auth *a, const char *name);
static int save_sessions(struct bj_auth *a);

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
           a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

const char *bj_role_name(enum bj_role r)
{
    return r == BJ_ROLE_OPERATOR ? "operator" : r == BJ_ROLE_VIEWER ? "viewer" : "none";
}

enum bj_role bj_role_parse(const char *s)
{
    if (s && strcmp(s, "operator") == 0)
        return BJ_ROLE_OPERATOR;
    if (s && strcmp(s, "viewer") == 0)
        return BJ_ROLE_VIEWER;
    return BJ_ROLE_NONE;
}

bool bj_auth_valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= BJ_AUTH_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '.' || c == '@'))
            return false;
    }
    return true;
}

bool bj_auth_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    /* Compare over the longer length so the work does not depend on where they differ. */
    size_t n = la > lb ? la : lb;
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < la ? (unsigned char)a[i] : 0, y = i < lb ? (unsigned char)b[i] : 0;
        diff |= (unsigned char)(x ^ y);
    }
    return diff == 0;
}

static void sha256_hex(const char *s, char out[HASH_HEX + 1])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)s, strlen(s));
    sodium_bin2hex(out, HASH_HEX + 1, h, sizeof h);
}

static void random_secret(char out[BJ_AUTH_SECRET_LEN + 1])
{
    unsigned char r[32];
    randombytes_buf(r, sizeof r);
    memcpy(out, "bj_", 3);
    sodium_bin2hex(out + 3, HASH_HEX + 1, r, sizeof r);
    sodium_memzero(r, sizeof r);
}

/* Writes text to path via a temporary file (0600), fsync and rename. 0 or -errno. */
static int write_atomic(const char *path, const char *text)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    fchmod(fd, 0600);
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int e = -errno;
            close(fd);
            unlink(tmp);
            return e;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        int e = -errno;
        close(fd);
        unlink(tmp);
        return e;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = -errno;
        unlink(tmp);
        return e;
    }
    return 0;
}

/* A growing text buffer for the files. */
struct buf { char *s; size_t len, cap; };
static int buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#include <stdarg.h>
static int buf_addf(struct buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            return -1;
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return 0;
        }
        size_t cap = (b->cap ? b->cap * 2 : 1024) + (size_t)n;
        char *p = realloc(b->s, cap);
        if (!p)
            return -1;
        b->s = p;
        b->cap = cap;
    }
}

static int save_users(struct bj_auth *a)
{
    struct buf b = {0};
    int rc = buf_addf(&b, "# brainjar web users: NAME ROLE ARGON2ID-HASH (edit with `brainjar passwd`)\n");
    for (int i = 0; i < a->n_users && !rc; i++)
        rc = buf_addf(&b, "%s %s %s\n", a->users[i].name, bj_role_name(a->users[i].role), a->users[i].hash);
    if (!rc)
        rc = write_atomic(a->users_path, b.s);
    free(b.s);
    stat(a->users_path, &a->users_st);
    return rc;
}

static int save_tokens(struct bj_auth *a)
{
    struct buf b = {0};
    int rc = buf_addf(&b, "# brainjar API tokens: ID ROLE SHA256(TOKEN) CREATED NAME\n");
    for (int i = 0; i < a->n_tokens && !rc; i++) {
        const struct token *t = &a->tokens[i];
        rc = buf_addf(&b, "%s %s %s %lld %s\n", t->id, bj_role_name(t->role), t->hash, (long long)t->created,
                      t->name[0] ? t->name : "-");
    }
    if (!rc)
        rc = write_atomic(a->tokens_path, b.s);
    free(b.s);
    stat(a->tokens_path, &a->tokens_st);
    return rc;
}

static int save_sessions(struct bj_auth *a)
{
    struct buf b = {0};
    int rc = buf_addf(&b, "# brainjar web sessions: SHA256(SESSION) USER ROLE EXPIRES\n");
    int64_t now = (int64_t)time(NULL);
    for (int i = 0; i < a->n_sessions && !rc; i++) {
        const struct session *s = &a->sessions[i];
        if (s->expires > now)
            rc = buf_addf(&b, "%s %s %s %lld\n", s->hash, s->user, bj_role_name(s->role), (long long)s->expires);
    }
    if (!rc)
        rc = write_atomic(a->sessions_path, b.s);
    free(b.s);
    return rc;
}

/* Calls line_fn for each non-comment line of path (missing file: nothing). 0 or -errno. */
static int each_line(const char *path, void (*line_fn)(struct bj_auth *, char *, int), struct bj_auth *a)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
        bj_warn("web: %s is readable by others (mode %03o); it should be 0600", path, (unsigned)(st.st_mode & 0777));
    char line[1024];
    int no = 0;
    while (fgets(line, sizeof line, f)) {
        no++;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#')
            continue;
        line_fn(a, line, no);
    }
    fclose(f);
    return 0;
}

static void *grow(void *p, int n, size_t size)
{
    /* Capacity doubles at powers of two; n is the count before adding one. */
    if (n && (n & (n - 1)))
        return p;
    return realloc(p, (size_t)(n ? n * 2 : 4) * size);
}

static void parse_user(struct bj_auth *a, char *line, int no)
{
    char name[BJ_AUTH_NAME_MAX], role[16], hash[crypto_pwhash_STRBYTES];
    if (sscanf(line, "%63s %15s %127s", name, role, hash) != 3 || !bj_auth_valid_name(name) ||
        bj_role_parse(role) == BJ_ROLE_NONE || strncmp(hash, "$argon2id$", 10) != 0) {
        bj_warn("web: %s:%d: not a user line; skipped", a->users_path, no);
        return;
    }
    struct user *u = grow(a->users, a->n_users, sizeof *u);
    if (!u)
        return;
    a->users = u;
    u = &a->users[a->n_users++];
    bj_strlcpy(u->name, name, sizeof u->name);
    u->role = bj_role_parse(role);
    bj_strlcpy(u->hash, hash, sizeof u->hash);
}

static void parse_token(struct bj_auth *a, char *line, int no)
{
    char id[17], role[16], hash[HASH_HEX + 2], name[BJ_AUTH_NAME_MAX] = "-";
    long long created;
    if (sscanf(line, "%16s %15s %65s %lld %63s", id, role, hash, &created, name) < 4 || strlen(hash) != HASH_HEX ||
        bj_role_parse(role) == BJ_ROLE_NONE) {
        bj_warn("web: %s:%d: not a token line; skipped", a->tokens_path, no);
        return;
    }
    struct token *t = grow(a->tokens, a->n_tokens, sizeof *t);
    if (!t)
        return;
    a->tokens = t;
    t = &a->tokens[a->n_tokens++];
    bj_strlcpy(t->id, id, sizeof t->id);
    t->role = bj_role_parse(role);
    bj_strlcpy(t->hash, hash, sizeof t->hash);
    t->created = created;
    bj_strlcpy(t->name, strcmp(name, "-") ? name : "", sizeof t->name);
}

static void parse_session(struct bj_auth *a, char *line, int no)
{
    char hash[HASH_HEX + 2], user[BJ_AUTH_NAME_MAX], role[16];
    long long expires;
    if (sscanf(line, "%65s %63s %15s %lld", hash, user, role, &expires) != 4 || strlen(hash) != HASH_HEX ||
        bj_role_parse(role) == BJ_ROLE_NONE) {
        bj_warn("web: %s:%d: not a session line; skipped", a->sessions_path, no);
        return;
    }
    if (expires <= (long long)time(NULL))
        return;
    struct session *s = grow(a->sessions, a->n_sessions, sizeof *s);
    if (!s)
        return;
    a->sessions = s;
    s = &a->sessions[a->n_sessions++];
    bj_strlcpy(s->hash, hash, sizeof s->hash);
    bj_strlcpy(s->user, user, sizeof s->user);
    s->role = bj_role_parse(role);
    s->expires = expires;
}

struct bj_auth *bj_auth_new(const char *dir, char *err, size_t errlen)
{
    if (sodium_init() < 0) {
        snprintf(err, errlen, "libsodium failed to initialise");
        return NULL;
    }
    int rc = bj_mkdirs(dir);
    if (rc) {
        snprintf(err, errlen, "cannot create the data directory %s: %s", dir, strerror(-rc));
        return NULL;
    }
    struct bj_auth *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(a->users_path, sizeof a->users_path, "%s/web-users", dir);
    snprintf(a->tokens_path, sizeof a->tokens_path, "%s/web-tokens", dir);
    snprintf(a->sessions_path, sizeof a->sessions_path, "%s/web-sessions", dir);
    a->max_failures = 5;
    a->window_s = 60;
    const char *paths[3] = {a->users_path, a->tokens_path, a->sessions_path};
    void (*fns[3])(struct bj_auth *, char *, int) = {parse_user, parse_token, parse_session};
    for (int i = 0; i < 3; i++) {
        rc = each_line(paths[i], fns[i], a);
        if (rc) {
            snprintf(err, errlen, "cannot read %s: %s", paths[i], strerror(-rc));
            bj_auth_free(a);
            return NULL;
        }
    }
    stat(a->users_path, &a->users_st);
    stat(a->tokens_path, &a->tokens_st);
    /* A hash to verify against for unknown users, so that their answer takes as long. */
    char pw[BJ_AUTH_SECRET_LEN + 1];
    random_secret(pw);
    if (crypto_pwhash_str(a->dummy_hash, pw, strlen(pw), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
        snprintf(err, errlen, "out of memory hashing a password");
        bj_auth_free(a);
        return NULL;
    }
    return a;
}

void bj_auth_free(struct bj_auth *a)
{
    if (!a)
        return;
    free(a->users);
    free(a->tokens);
    if (a->sessions)
        sodium_memzero(a->sessions, sizeof *a->sessions * (size_t)a->n_sessions);
    free(a->sessions);
    free(a);
}

void bj_auth_refresh(struct bj_auth *a)
{
    struct stat st;
    if (stat(a->users_path, &st) == 0 && !same_file(&st, &a->users_st)) {
        int n = a->n_users;
        struct user *old = n ? malloc(sizeof *old * (size_t)n) : NULL;
        if (n && !old)
            return;
        if (n)
            memcpy(old, a->users, sizeof *old * (size_t)n);
        a->n_users = 0;
        if (each_line(a->users_path, parse_user, a) == 0) {
            a->users_st = st;
            bj_info("web: %s changed: %d users", a->users_path, a->n_users);
            /* A changed password or role, or a removed user, ends that user's sessions. */
            int k = 0;
            for (int i = 0; i < a->n_sessions; i++) {
                struct user *u = find_user(a, a->sessions[i].user);
                bool keep = false;
                for (int j = 0; u && j < n; j++)
                    if (strcmp(old[j].name, u->name) == 0)
                        keep = strcmp(old[j].hash, u->hash) == 0 && old[j].role == u->role;
                if (keep)
                    a->sessions[k++] = a->sessions[i];
            }
            if (k != a->n_sessions) {
                a->n_sessions = k;
                save_sessions(a);
            }
        } else {
            a->n_users = n;
        }
        free(old);
    }
    if (stat(a->tokens_path, &st) == 0 && !same_file(&st, &a->tokens_st)) {
        int n = a->n_tokens;
        a->n_tokens = 0;
        if (each_line(a->tokens_path, parse_token, a) == 0) {
            a->tokens_st = st;
            bj_info("web: %s changed: %d API tokens", a->tokens_path, a->n_tokens);
        } else {
            a->n_tokens = n;
        }
    }
}

int bj_auth_user_count(const struct bj_auth *a) { return a->n_users; }
int bj_auth_token_count(const struct bj_auth *a) { return a->n_tokens; }

static struct user *find_user(struct bj_auth *a, const char *name)
{
    for (int i = 0; i < a->n_users; i++)
        if (strcmp(a->users[i].name, name) == 0)
            return &a->users[i];
    return NULL;
}

enum bj_role bj_auth_user_role(struct bj_auth *a, const char *user)
{
    struct user *u = find_user(a, user);
    return u ? u->role : BJ_ROLE_NONE;
}

int bj_auth_set_password(struct bj_auth *a, const char *user, const char *password, enum bj_role role,
                         char *err, size_t errlen)
{
    if (!bj_auth_valid_name(user)) {
        snprintf(err, errlen, "'%s' is not a user name (1-63 of A-Z a-z 0-9 _ - . @)", user);
        return -1;
    }
    size_t plen = strlen(password);
    if (plen < 8 || plen > BJ_AUTH_PASSWORD_MAX) {
        snprintf(err, errlen, "a password has 8 to %d characters", BJ_AUTH_PASSWORD_MAX);
        return -1;
    }
    if (role == BJ_ROLE_NONE) {
        snprintf(err, errlen, "a role is viewer or operator");
        return -1;
    }
    char hash[crypto_pwhash_STRBYTES];
    if (crypto_pwhash_str(hash, password, plen, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
        snprintf(err, errlen, "out of memory hashing the password");
        return -1;
    }
    struct user *u = find_user(a, user);
    if (!u) {
        u = grow(a->users, a->n_users, sizeof *u);
        if (!u) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        a->users = u;
        u = &a->users[a->n_users++];
        memset(u, 0, sizeof *u);
        bj_strlcpy(u->name, user, sizeof u->name);
    }
    u->role = role;
    bj_strlcpy(u->hash, hash, sizeof u->hash);
    int rc = save_users(a);
    if (rc) {
        snprintf(err, errlen, "cannot write %s: %s", a->users_path, strerror(-rc));
        return -1;
    }
    /* A changed password or role ends that user's sessions. */
    int k = 0;
    for (int i = 0; i < a->n_sessions; i++)
        if (strcmp(a->sessions[i].user, user) != 0)
            a->sessions[k++] = a->sessions[i];
    if (k != a->n_sessions) {
        a->n_sessions = k;
        save_sessions(a);
    }
    return 0;
}

int bj_auth_ensure_admin(struct bj_auth *a, char *pw, size_t pwlen, char *err, size_t errlen)
{
    if (a->n_users > 0)
        return 0;
    /* 20 characters from an unambiguous alphabet: about 110 bits. */
    static const char alphabet[] = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    if (pwlen < 25) {
        snprintf(err, errlen, "password buffer too small");
        return -1;
    }
    size_t n = 0;
    for (int i = 0; i < 20; i++) {
        if (i && i % 5 == 0)
            pw[n++] = '-';
        pw[n++] = alphabet[randombytes_uniform(sizeof alphabet - 1)];
    }
    pw[n] = 0;
    if (bj_auth_set_password(a, "admin", pw, BJ_ROLE_OPERATOR, err, errlen))
        return -1;
    return 1;
}

_Static_assert(BJ_AUTH_HASH_MAX == crypto_pwhash_STRBYTES, "BJ_AUTH_HASH_MAX is libsodium's hash string size");

void bj_auth_login_hash(struct bj_auth *a, const char *user, char hash[BJ_AUTH_HASH_MAX])
{
    struct user *u = user && bj_auth_valid_name(user) ? find_user(a, user) : NULL;
    bj_strlcpy(hash, u ? u->hash : a->dummy_hash, BJ_AUTH_HASH_MAX);
}

bool bj_auth_password_ok(const char *hash, const char *password)
{
    size_t plen = strlen(password);
    if (plen > BJ_AUTH_PASSWORD_MAX)
        plen = BJ_AUTH_PASSWORD_MAX;
    return crypto_pwhash_str_verify(hash, password, plen) == 0;
}

int bj_auth_login_finish(struct bj_auth *a, const char *user, const char *hash, int64_t ttl_s, char *session,
                         enum bj_role *role)
{
    struct user *u = bj_auth_valid_name(user) ? find_user(a, user) : NULL;
    /* The dummy hash never names a user; a password changed meanwhile voids the check. */
    if (!u || !bj_auth_equal(u->hash, hash))
        return -1;
    /* Sessions are bounded: the oldest-expiring one goes first. */
    if (a->n_sessions >= 4096) {
        int oldest = 0;
        for (int i = 1; i < a->n_sessions; i++)
            if (a->sessions[i].expires < a->sessions[oldest].expires)
                oldest = i;
        a->sessions[oldest] = a->sessions[--a->n_sessions];
    }
    struct session *s = grow(a->sessions, a->n_sessions, sizeof *s);
    if (!s)
        return -1;
    a->sessions = s;
    s = &a->sessions[a->n_sessions++];
    random_secret(session);
    sha256_hex(session, s->hash);
    bj_strlcpy(s->user, u->name, sizeof s->user);
    s->role = u->role;
    s->expires = (int64_t)time(NULL) + ttl_s;
    *role = u->role;
    int rc = save_sessions(a);
    if (rc)
        bj_warn("web: cannot write %s: %s (the session lasts until the daemon stops)", a->sessions_path,
                strerror(-rc));
    return 0;
}

int bj_auth_login(struct bj_auth *a, const char *user, const char *password, int64_t ttl_s, char *session,
                  enum bj_role *role)
{
    char hash[BJ_AUTH_HASH_MAX];
    bj_auth_login_hash(a, user, hash);
    if (!bj_auth_password_ok(hash, password))
        return -1;
    return bj_auth_login_finish(a, user, hash, ttl_s, session, role);
}

static int find_session(struct bj_auth *a, const char *session)
{
    if (!session || strncmp(session, "bj_", 3) != 0 || strlen(session) != BJ_AUTH_SECRET_LEN)
        return -1;
    char h[HASH_HEX + 1];
    sha256_hex(session, h);
    int64_t now = (int64_t)time(NULL);
    int found = -1;
    for (int i = 0; i < a->n_sessions; i++)
        if (sodium_memcmp(a->sessions[i].hash, h, HASH_HEX) == 0 && a->sessions[i].expires > now)
            found = i;
    return found;
}

enum bj_role bj_auth_session(struct bj_auth *a, const char *session, char *user, size_t userlen)
{
    int i = find_session(a, session);
    if (i < 0)
        return BJ_ROLE_NONE;
    if (user)
        bj_strlcpy(user, a->sessions[i].user, userlen);
    return a->sessions[i].role;
}

int bj_auth_logout(struct bj_auth *a, const char *session)
{
    int i = find_session(a, session);
    if (i < 0)
        return -1;
    a->sessions[i] = a->sessions[--a->n_sessions];
    int rc = save_sessions(a);
    if (rc)
        bj_warn("web: cannot write %s: %s", a->sessions_path, strerror(-rc));
    return 0;
}

int bj_auth_token_create(struct bj_auth *a, enum bj_role role, const char *name, char *token, char *err,
                         size_t errlen)
{
    if (role == BJ_ROLE_NONE) {
        snprintf(err, errlen, "a role is viewer or operator");
        return -1;
    }
    if (name && name[0] && !bj_auth_valid_name(name)) {
        snprintf(err, errlen, "'%s' is not a token name (1-63 of A-Z a-z 0-9 _ - . @)", name);
        return -1;
    }
    struct token *t = grow(a->tokens, a->n_tokens, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    a->tokens = t;
    t = &a->tokens[a->n_tokens++];
    memset(t, 0, sizeof *t);
    random_secret(token);
    sha256_hex(token, t->hash);
    unsigned char idb[8];
    randombytes_buf(idb, sizeof idb);
    sodium_bin2hex(t->id, sizeof t->id, idb, sizeof idb);
    t->role = role;
    t->created = (int64_t)time(NULL);
    bj_strlcpy(t->name, name ? name : "", sizeof t->name);
    int rc = save_tokens(a);
    if (rc) {
        a->n_tokens--;
        snprintf(err, errlen, "cannot write %s: %s", a->tokens_path, strerror(-rc));
        return -1;
    }
    return 0;
}

enum bj_role bj_auth_token(struct bj_auth *a, const char *token, char *name, size_t namelen)
{
    if (!token || strncmp(token, "bj_", 3) != 0 || strlen(token) != BJ_AUTH_SECRET_LEN)
        return BJ_ROLE_NONE;
    char h[HASH_HEX + 1];
    sha256_hex(token, h);
    enum bj_role role = BJ_ROLE_NONE;
    for (int i = 0; i < a->n_tokens; i++)
        if (sodium_memcmp(a->tokens[i].hash, h, HASH_HEX) == 0) {
            role = a->tokens[i].role;
            if (name)
                snprintf(name, namelen, "token:%s", a->tokens[i].name[0] ? a->tokens[i].name : a->tokens[i].id);
        }
    return role;
}

void bj_auth_limit_config(struct bj_auth *a, int max_failures, int window_s)
{
    a->max_failures = max_failures;
    a->window_s = window_s;
}

static struct limit *limit_slot(struct bj_auth *a, const char *addr, bool create, int64_t now)
{
    struct limit *oldest = &a->limits[0];
    for (int i = 0; i < LIMIT_SLOTS; i++) {
        struct limit *l = &a->limits[i];
        if (l->addr[0] && strcmp(l->addr, addr) == 0) {
            l->used = now;
            return l;
        }
        if (l->used < oldest->used)
            oldest = l;
    }
    if (!create)
        return NULL;
    memset(oldest, 0, sizeof *oldest);
    bj_strlcpy(oldest->addr, addr, sizeof oldest->addr);
    oldest->used = now;
    oldest->window_start = now;
    return oldest;
}

int bj_auth_limit_wait(struct bj_auth *a, const char *addr, int64_t now_s)
{
    struct limit *l = limit_slot(a, addr, false, now_s);
    if (!l)
        return 0;
    if (now_s - l->window_start >= a->window_s) {
        l->failures = 0;
        l->window_start = now_s;
        return 0;
    }
    if (l->failures < a->max_failures)
        return 0;
    int w = (int)(l->window_start + a->window_s - now_s);
    return w > 0 ? w : 1;
}

void bj_auth_limit_fail(struct bj_auth *a, const char *addr, int64_t now_s)
{
    struct limit *l = limit_slot(a, addr, true, now_s);
    if (now_s - l->window_start >= a->window_s) {
        l->failures = 0;
        l->window_start = now_s;
    }
    l->failures++;
}

void bj_auth_limit_clear(struct bj_auth *a, const char *addr)
{
    struct limit *l = limit_slot(a, addr, false, 0);
    if (l)
        memset(l, 0, sizeof *l);
}
