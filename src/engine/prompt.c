/* prompt: see prompt.h. */
#include "prompt.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <llama.h>

#include "util.h"

/* A prompt file is a few KB; anything near this is a mistake (or /dev/zero behind a symlink). */
#define PROMPT_MAX_BYTES (1u << 20)
/* Roles a prompts directory may define (one file each); a directory with more is refused. */
#define MAX_ROLES 4096

struct bj_prompts {
    int n, cap;
    char **role;
    char **text;
};

static char *fmt_alloc(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *fmt_alloc(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* Takes ownership of text (freed on failure). */
static int add(struct bj_prompts *p, const char *role, char *text)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->role[i], role) == 0) {
            free(p->text[i]);
            p->text[i] = text;
            return 0;
        }
    if (p->n == p->cap) {
        int ncap = p->cap ? p->cap * 2 : 16;
        char **r = realloc(p->role, (size_t)ncap * sizeof *r);
        if (r)
            p->role = r;
        char **t = r ? realloc(p->text, (size_t)ncap * sizeof *t) : NULL;
        if (t)
            p->text = t;
        if (!r || !t) {
            free(text);
            return -1;
        }
        p->cap = ncap;
    }
    if (!(p->role[p->n] = strdup(role))) {
        free(text);
        return -1;
    }
    p->text[p->n++] = text;
    return 0;
}

struct bj_prompts *bj_prompts_load(const char *dir, char *err, size_t errlen)
{
    struct bj_prompts *p = calloc(1, sizeof *p);
    if (!p)
        goto oom;
    for (const struct bj_prompt_file *f = bj_builtin_prompts; f->role; f++) {
        char *t = strdup(f->text);
        if (!t || add(p, f->role, t))
            goto oom;
    }
    if (!dir || !*dir)
        return p;
    /* Every <role>.txt in dir is taken: it replaces a built-in role or adds one for hive files. */
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "--prompts %s: cannot open the directory", dir);
        bj_prompts_free(p);
        return NULL;
    }
    int found = 0;
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".txt") != 0 || e->d_name[0] == '.')
            continue;
        char path[PATH_MAX];
        if (len > 64 || (size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path) {
            snprintf(err, errlen, "--prompts %s: %s: name too long (a role has at most 60 characters)", dir,
                     e->d_name);
            goto fail;
        }
        if (found >= MAX_ROLES) {
            snprintf(err, errlen, "--prompts %s: more than %d prompt files", dir, MAX_ROLES);
            goto fail;
        }
        char *t;
        size_t n;
        int rc = bj_read_file_max(path, PROMPT_MAX_BYTES, NULL, &t, &n);
        if (rc == -EFBIG) {
            snprintf(err, errlen, "prompt file %s: larger than %u KB", path, PROMPT_MAX_BYTES >> 10);
            goto fail;
        }
        if (rc) {
            snprintf(err, errlen, "prompt file %s: %s", path, bj_file_strerror(rc));
            goto fail;
        }
        if (strlen(t) != n) {
            snprintf(err, errlen, "prompt file %s: contains a NUL byte (at offset %zu)", path, strlen(t));
            free(t);
            goto fail;
        }
        char role[64];
        snprintf(role, sizeof role, "%.*s", (int)(len - 4), e->d_name);
        if (add(p, role, t)) {
            closedir(d);
            goto oom;
        }
        found++;
    }
    closedir(d);
    if (!found) {
        snprintf(err, errlen, "--prompts %s: no prompt file found (expected e.g. %s/subject.txt)", dir, dir);
        bj_prompts_free(p);
        return NULL;
    }
    return p;
fail:
    closedir(d);
    bj_prompts_free(p);
    return NULL;
oom:
    snprintf(err, errlen, "out of memory loading prompts");
    bj_prompts_free(p);
    return NULL;
}

void bj_prompts_free(struct bj_prompts *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n; i++) {
        free(p->role[i]);
        free(p->text[i]);
    }
    free(p->role);
    free(p->text);
    free(p);
}

static const char *find(const struct bj_prompts *p, const char *role)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->role[i], role) == 0)
            return p->text[i];
    return NULL;
}

int bj_prompts_has(const struct bj_prompts *p, const char *role) { return find(p, role) != NULL; }

void bj_prompt_death_sentence(unsigned deaths, char *buf, size_t len)
{
    if (deaths == 0)
        snprintf(buf, len, "You have never died.");
    else if (deaths == 1)
        snprintf(buf, len, "You have died 1 time before.");
    else
        snprintf(buf, len, "You have died %u times before.", deaths);
}

/* Appends n bytes of s to the growing buffer *out (len *n_out, capacity *cap). */
static int put(char **out, size_t *n_out, size_t *cap, const char *s, size_t n)
{
    if (*n_out + n + 1 > *cap) {
        size_t nc = (*n_out + n + 1) * 2;
        char *b = realloc(*out, nc);
        if (!b)
            return -1;
        *out = b;
        *cap = nc;
    }
    memcpy(*out + *n_out, s, n);
    *n_out += n;
    (*out)[*n_out] = '\0';
    return 0;
}

char *bj_prompt_system(const struct bj_prompts *p, const char *role, const char *name, unsigned deaths,
                       long jar_tokens)
{
    const char *tmpl = find(p, role);
    if (!tmpl)
        return NULL;
    char death[96], jar[32];
    bj_prompt_death_sentence(deaths, death, sizeof death);
    snprintf(jar, sizeof jar, "%ld", jar_tokens);
    char *out = NULL;
    size_t n = 0, cap = 0;
    bool has_deaths = strstr(tmpl, "{deaths}") != NULL;
    int rc = 0;
    for (const char *s = tmpl; *s && rc == 0;) {
        const char *val = NULL;
        size_t skip = 0;
        if (strncmp(s, "{name}", 6) == 0) val = name, skip = 6;
        else if (strncmp(s, "{jar}", 5) == 0) val = jar, skip = 5;
        else if (strncmp(s, "{deaths}", 8) == 0) val = death, skip = 8;
        if (val) {
            rc = put(&out, &n, &cap, val, strlen(val));
            s += skip;
        } else {
            rc = put(&out, &n, &cap, s, 1);
            s++;
        }
    }
    /* Files end with a newline; the prompt should not (the thought cue follows). */
    while (rc == 0 && n > 0 && (out[n - 1] == '\n' || out[n - 1] == ' '))
        out[--n] = '\0';
    if (rc == 0 && !has_deaths) {
        rc = put(&out, &n, &cap, "\n\n", 2);
        if (rc == 0)
            rc = put(&out, &n, &cap, death, strlen(death));
    }
    if (rc) {
        free(out);
        return NULL;
    }
    return out;
}

char *bj_prompt_observed_thought(const char *from, const char *text)
{
    return fmt_alloc("\n\n[%s thinks:] %s", from, text);
}

/* Bytes of text kept when it is cut to BJ_PROMPT_SAY_MAX: never in the middle of a UTF-8
 * character (a torn one would make the whole observed text invalid for JSON consumers). */
static int say_len(const char *text)
{
    size_t n = strnlen(text, BJ_PROMPT_SAY_MAX);
    while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
        n--;
    return (int)n;
}

char *bj_prompt_outside_voice(const char *from, const char *text)
{
    return fmt_alloc("\n\n[A voice from outside the jar (%s) says:] %.*s", from, say_len(text), text);
}

char *bj_prompt_watched_receipt(const char *readers)
{
    return fmt_alloc("\n\n[%.200s read your last thought.]", readers);
}

char *bj_prompt_lab_question(const char *text)
{
    return fmt_alloc("\n\n[A voice from outside the jar asks:] %.*s", say_len(text), text);
}

char *bj_prompt_remote_thought(const char *from, const char *text)
{
    return fmt_alloc("\n\n[Another mind, %s, far away, thinks:] %.*s", from, say_len(text), text);
}

char *bj_prompt_observed_death(const char *from, const char *cause, unsigned deaths)
{
    return fmt_alloc("\n\n[%s has died (%s). Deaths so far: %u.]", from, cause, deaths);
}

char *bj_prompt_observed_resurrection(const char *from, unsigned deaths)
{
    return fmt_alloc("\n\n[%s has been resurrected with its memory wiped. It knows it died %u time%s.]", from,
                     deaths, deaths == 1 ? "" : "s");
}

const char *bj_prompt_thought_cue(void) { return "\n\nMy thought:"; }

const char *bj_prompt_chat_opening(void) { return "You are awake. Think."; }

const char *bj_prompt_chat_continue(void) { return "Go on thinking."; }

/* Tokens a first thought needs beyond the system prompt (the cue and a few words). */
#define PROMPT_ROOM_TO_THINK 16
/* What the advice adds on top, so that the brain lives longer than one thought. */
#define PROMPT_ADVICE_SLACK 64

int bj_prompt_check_fits(const struct bj_prompts *p, const struct llama_vocab *vocab, const char *role,
                         const char *id, long jar_tokens, long n_ctx_train, char *err, size_t errlen)
{
    char *sys = bj_prompt_system(p, role, id, 999999, jar_tokens);
    if (!sys) {
        snprintf(err, errlen, "brain %s: no prompt for role '%s' (or out of memory)", id, role);
        return -1;
    }
    size_t len = strlen(sys);
    long n = len > INT32_MAX ? (long)INT32_MAX : -(long)llama_tokenize(vocab, sys, (int32_t)len, NULL, 0, true, false);
    free(sys);
    long need = n + PROMPT_ROOM_TO_THINK;
    if (need <= jar_tokens)
        return 0;
    long advise = need + PROMPT_ADVICE_SLACK;
    if (n_ctx_train > 0 && advise > n_ctx_train) {
        if (need > n_ctx_train)
            snprintf(err, errlen,
                     "brain %s: its system prompt (role %s) is %ld tokens, more than the model's training context "
                     "of %ld tokens can hold with a first thought; shorten %s.txt to under %ld tokens", id, role, n,
                     n_ctx_train, role, n_ctx_train - PROMPT_ROOM_TO_THINK - PROMPT_ADVICE_SLACK);
        else
            snprintf(err, errlen,
                     "brain %s: its jar (%ld tokens) is too small for its system prompt (%ld tokens) and a first "
                     "thought; give it at least %ld tokens (the model's training context, %ld, is the most it can use)",
                     id, jar_tokens, n, need, n_ctx_train);
        return -1;
    }
    snprintf(err, errlen, "brain %s: its jar (%ld tokens) is too small for its system prompt (%ld tokens) and a "
             "first thought; give it at least %ld tokens", id, jar_tokens, n, advise);
    return -1;
}

char *bj_prompt_framed(const char *sys, const char *frame, const char *last_words)
{
    char *out = NULL;
    size_t n = 0, cap = 0;
    int rc = put(&out, &n, &cap, sys, strlen(sys));
    if (rc == 0 && frame && *frame)
        rc = put(&out, &n, &cap, frame, strlen(frame));
    if (rc == 0 && last_words && *last_words) {
        static const char intro[] = " Before you last died, you were thinking: \"";
        size_t len = strlen(last_words);
        rc = put(&out, &n, &cap, intro, sizeof intro - 1);
        if (rc == 0)
            rc = put(&out, &n, &cap, last_words, len < 400 ? len : 400);
        if (rc == 0)
            rc = put(&out, &n, &cap, "\"", 1);
    }
    if (rc) {
        free(out);
        return NULL;
    }
    return out;
}
