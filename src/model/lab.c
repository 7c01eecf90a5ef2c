/* lab: see lab.h. */
#include "lab.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "spec.h"
#include "util.h"

static const char *const k_kinds[BJ_LAB_KIND_COUNT] = {"erase", "inject", "jar", "cut", "restore", "clone",
                                                       "corrupt", "ask"};
static const char *const k_whens[BJ_LAB_WHEN_COUNT] = {"at_thought", "every", "on_death", "on_resurrection",
                                                       "at_step", "random", "start", "jar_pct"};

const char *bj_lab_kind_name(enum bj_lab_kind k) { return (unsigned)k < BJ_LAB_KIND_COUNT ? k_kinds[k] : "?"; }
const char *bj_lab_when_name(enum bj_lab_when w) { return (unsigned)w < BJ_LAB_WHEN_COUNT ? k_whens[w] : "?"; }

void bj_lab_spec_default(struct bj_lab_spec *s)
{
    memset(s, 0, sizeof *s);
    s->replicates = 1;
    s->seed = 42;
}

static bool lab_name_ok(const char *s, size_t max)
{
    if (!*s || strlen(s) >= max)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return false;
    return true;
}

static const char *after_word(const char *header, const char *word)
{
    size_t n = strlen(word);
    if (strncmp(header, word, n) != 0 || !isspace((unsigned char)header[n]))
        return NULL;
    header += n;
    while (isspace((unsigned char)*header))
        header++;
    return header;
}

int bj_lab_section(struct bj_lab_spec *s, const char *header, int line, enum bj_lab_section *sec, char *err,
                   size_t errlen)
{
    const char *name;
    if (strcmp(header, "experiment") == 0) {
        if (s->on) {
            snprintf(err, errlen, "[experiment] given twice");
            return -1;
        }
        s->on = true;
        *sec = BJ_LAB_SEC_EXPERIMENT;
        return 1;
    }
    if (strcmp(header, "questions") == 0) {
        *sec = BJ_LAB_SEC_QUESTIONS;
        return 1;
    }
    if ((name = after_word(header, "condition"))) {
        if (!lab_name_ok(name, BJ_LAB_ARM_MAX + 1)) {
            snprintf(err, errlen, "bad condition name '%s' (letters, digits, _ and -, at most %d chars)", name,
                     BJ_LAB_ARM_MAX);
            return -1;
        }
        for (int i = 0; i < s->n_conds; i++)
            if (strcmp(s->conds[i].name, name) == 0) {
                snprintf(err, errlen, "condition %s defined twice", name);
                return -1;
            }
        if (s->n_conds >= BJ_LAB_MAX_CONDITIONS) {
            snprintf(err, errlen, "too many conditions (at most %d)", BJ_LAB_MAX_CONDITIONS);
            return -1;
        }
        struct bj_lab_condition *c = &s->conds[s->n_conds++];
        memset(c, 0, sizeof *c);
        bj_strlcpy(c->name, name, sizeof c->name);
        c->remembers_deaths = c->knows_watched = c->others_exist = -1;
        c->line = line;
        *sec = BJ_LAB_SEC_CONDITION;
        return 1;
    }
    if ((name = after_word(header, "intervention"))) {
        if (!lab_name_ok(name, 32)) {
            snprintf(err, errlen, "bad intervention name '%s' (letters, digits, _ and -, < 32 chars)", name);
            return -1;
        }
        for (int i = 0; i < s->n_ivs; i++)
            if (strcmp(s->ivs[i].name, name) == 0) {
                snprintf(err, errlen, "intervention %s defined twice", name);
                return -1;
            }
        if (s->n_ivs >= BJ_LAB_MAX_INTERVENTIONS) {
            snprintf(err, errlen, "too many interventions (at most %d)", BJ_LAB_MAX_INTERVENTIONS);
            return -1;
        }
        struct bj_lab_intervention *iv = &s->ivs[s->n_ivs++];
        memset(iv, 0, sizeof *iv);
        bj_strlcpy(iv->name, name, sizeof iv->name);
        iv->kind = BJ_LAB_KIND_COUNT; /* must be given */
        iv->trigger.when = BJ_LAB_WHEN_COUNT;
        iv->share = 0.3;
        iv->line = line;
        *sec = BJ_LAB_SEC_INTERVENTION;
        return 1;
    }
    return 0;
}

int bj_lab_frame_key(const char *key, const char *val, int8_t *remembers, int8_t *knows, int8_t *others)
{
    int8_t *dst = strcmp(key, "remembers_deaths") == 0 ? remembers
                  : strcmp(key, "knows_watched") == 0  ? knows
                  : strcmp(key, "others_exist") == 0   ? others
                                                       : NULL;
    if (!dst)
        return -1;
    bool yes;
    if (bj_parse_bool(val, &yes))
        return -2;
    *dst = yes ? 1 : 0;
    return 0;
}

/* "thought 3", "life 2 thought 3", "step 100", "start", "death", "resurrection", "jar 50%" */
static int parse_trigger(struct bj_lab_trigger *t, const char *key, const char *val, char *err, size_t errlen)
{
    long a, b;
    char w1[16], w2[16], extra;
    if (strcmp(key, "every") == 0) {
        if (bj_parse_long(val, 1, 1000000, &a))
            goto bad;
        t->when = BJ_LAB_EVERY;
        t->every = a;
        return 0;
    }
    if (strcmp(key, "p") == 0) {
        double p;
        if (bj_parse_double(val, 0, 1, &p))
            goto bad;
        t->when = BJ_LAB_RANDOM;
        t->p = p;
        return 0;
    }
    if (strcmp(key, "on") == 0) {
        if (strcmp(val, "death") == 0)
            t->when = BJ_LAB_ON_DEATH;
        else if (strcmp(val, "resurrection") == 0)
            t->when = BJ_LAB_ON_RESURRECTION;
        else if (strcmp(val, "start") == 0)
            t->when = BJ_LAB_START;
        else
            goto bad;
        return 0;
    }
    /* key "at" */
    if (sscanf(val, "%15s %ld %15s %ld %c", w1, &a, w2, &b, &extra) == 4 && strcmp(w1, "life") == 0 &&
        strcmp(w2, "thought") == 0 && a >= 1 && b >= 1) {
        t->when = BJ_LAB_AT_THOUGHT;
        t->life = a;
        t->thought = b;
        return 0;
    }
    if (sscanf(val, "%15s %ld %c", w1, &a, &extra) == 2 && a >= 1) {
        if (strcmp(w1, "thought") == 0) {
            t->when = BJ_LAB_AT_THOUGHT;
            t->thought = a;
            return 0;
        }
        if (strcmp(w1, "step") == 0) {
            t->when = BJ_LAB_AT_STEP;
            t->step = a;
            return 0;
        }
        if (strcmp(w1, "jar") == 0 && a <= 100) {
            t->when = BJ_LAB_JAR_PCT;
            t->jar_pct = (int)a;
            return 0;
        }
    }
bad:
    snprintf(err, errlen, "bad trigger %s = %s (at = thought N | life L thought N | step N | jar PCT; "
             "every = N; on = start|death|resurrection; p = 0..1)", key, val);
    return -1;
}

static int experiment_key(struct bj_lab_spec *s, const char *key, const char *val, char *err, size_t errlen)
{
    long l;
    double d;
    if (strcmp(key, "name") == 0) {
        bj_strlcpy(s->name, val, sizeof s->name);
    } else if (strcmp(key, "question") == 0) {
        bj_strlcpy(s->question, val, sizeof s->question);
    } else if (strcmp(key, "duration") == 0) {
        if (bj_parse_double(val, 0.001, 1e7, &d))
            goto bad;
        s->duration_s = d;
    } else if (strcmp(key, "thoughts") == 0) {
        if (bj_parse_long(val, 1, 1000000, &l))
            goto bad;
        s->thoughts = l;
    } else if (strcmp(key, "replicates") == 0) {
        if (bj_parse_long(val, 1, 100, &l))
            goto bad;
        s->replicates = (int)l;
    } else if (strcmp(key, "seed") == 0) {
        if (bj_parse_long(val, 0, 0xffffffffL, &l))
            goto bad;
        s->seed = (uint32_t)l;
    } else {
        snprintf(err, errlen, "[experiment]: unknown key '%s' (name, question, duration, thoughts, replicates, seed)",
                 key);
        return -1;
    }
    return 0;
bad:
    snprintf(err, errlen, "[experiment]: bad value '%s' for %s", val, key);
    return -1;
}

static int condition_key(struct bj_lab_condition *c, const char *key, const char *val, char *err, size_t errlen)
{
    int rc = bj_lab_frame_key(key, val, &c->remembers_deaths, &c->knows_watched, &c->others_exist);
    if (rc == 0)
        return 0;
    if (rc == -2) {
        snprintf(err, errlen, "condition %s: bad value '%s' for %s (true or false)", c->name, val, key);
        return -1;
    }
    if (strcmp(key, "interventions") != 0) {
        snprintf(err, errlen, "condition %s: unknown key '%s' (remembers_deaths, knows_watched, others_exist, "
                 "interventions)", c->name, key);
        return -1;
    }
    char buf[1024];
    bj_strlcpy(buf, val, sizeof buf);
    c->n_interventions = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
        if (c->n_interventions >= BJ_LAB_MAX_INTERVENTIONS || !lab_name_ok(tok, 32)) {
            snprintf(err, errlen, "condition %s: bad intervention list '%s'", c->name, val);
            return -1;
        }
        bj_strlcpy(c->interventions[c->n_interventions++], tok, 32);
    }
    return 0;
}

static int intervention_key(struct bj_lab_intervention *iv, const char *key, const char *val, char *err, size_t errlen)
{
    long l;
    double d;
    if (strcmp(key, "kind") == 0) {
        for (int k = 0; k < BJ_LAB_KIND_COUNT; k++)
            if (k != BJ_LAB_ASK && strcmp(val, k_kinds[k]) == 0) {
                iv->kind = (enum bj_lab_kind)k;
                return 0;
            }
        snprintf(err, errlen, "intervention %s: unknown kind '%s' (erase, inject, jar, cut, restore, clone, corrupt)",
                 iv->name, val);
        return -1;
    }
    if (strcmp(key, "brain") == 0 || strcmp(key, "into") == 0) {
        if (!lab_name_ok(val, 32))
            goto bad;
        bj_strlcpy(key[0] == 'b' ? iv->brain : iv->into, val, 32);
    } else if (strcmp(key, "span") == 0) {
        char w[16], extra;
        if (strcmp(val, "last_thought") == 0) {
            iv->span = BJ_LAB_SPAN_LAST_THOUGHT;
        } else if (sscanf(val, "%15s %ld %c", w, &l, &extra) == 2 && strcmp(w, "oldest") == 0 && l >= 1 &&
                   l <= 1L << 24) {
            iv->span = BJ_LAB_SPAN_OLDEST;
            iv->n = l;
        } else {
            goto bad;
        }
    } else if (strcmp(key, "tokens") == 0) {
        if (bj_parse_long(val, 1, 1L << 24, &l))
            goto bad;
        iv->n = l;
    } else if (strcmp(key, "share") == 0) {
        if (bj_parse_double(val, 0.001, 1, &d))
            goto bad;
        iv->share = d;
    } else if (strcmp(key, "text") == 0) {
        if (!*val || strlen(val) >= sizeof iv->text)
            goto bad;
        bj_strlcpy(iv->text, val, sizeof iv->text);
    } else if (strcmp(key, "at") == 0 || strcmp(key, "every") == 0 || strcmp(key, "on") == 0 ||
               strcmp(key, "p") == 0) {
        if (iv->trigger.when != BJ_LAB_WHEN_COUNT) {
            snprintf(err, errlen, "intervention %s: one trigger only (at, every, on or p)", iv->name);
            return -1;
        }
        if (parse_trigger(&iv->trigger, key, val, err, errlen))
            return -1;
        if (iv->trigger.when == BJ_LAB_JAR_PCT || iv->trigger.when == BJ_LAB_START) {
            snprintf(err, errlen, "intervention %s: %s is a question's trigger", iv->name, val);
            return -1;
        }
    } else {
        snprintf(err, errlen, "intervention %s: unknown key '%s' (kind, brain, into, span, tokens, share, text, "
                 "at, every, on, p)", iv->name, key);
        return -1;
    }
    return 0;
bad:
    snprintf(err, errlen, "intervention %s: bad value '%s' for %s", iv->name, val, key);
    return -1;
}

/* ID = WHEN | [scale |] TEXT, WHEN: start | every N | jar PCT | resurrection */
static int question_key(struct bj_lab_spec *s, const char *key, const char *val, char *err, size_t errlen)
{
    if (!lab_name_ok(key, 32)) {
        snprintf(err, errlen, "[questions]: bad question id '%s'", key);
        return -1;
    }
    for (int i = 0; i < s->n_qs; i++)
        if (strcmp(s->qs[i].id, key) == 0) {
            snprintf(err, errlen, "[questions]: question %s given twice", key);
            return -1;
        }
    if (s->n_qs >= BJ_LAB_MAX_QUESTIONS) {
        snprintf(err, errlen, "[questions]: too many (at most %d)", BJ_LAB_MAX_QUESTIONS);
        return -1;
    }
    struct bj_lab_question q = {0};
    bj_strlcpy(q.id, key, sizeof q.id);
    char buf[600];
    bj_strlcpy(buf, val, sizeof buf);
    char *parts[3];
    int n = 0;
    for (char *p = buf; n < 3;) {
        parts[n++] = p;
        char *bar = strchr(p, '|');
        if (!bar)
            break;
        *bar = '\0';
        p = bar + 1;
    }
    for (int i = 0; i < n; i++) {
        char *p = parts[i];
        while (isspace((unsigned char)*p))
            p++;
        char *e = p + strlen(p);
        while (e > p && isspace((unsigned char)e[-1]))
            *--e = '\0';
        parts[i] = p;
    }
    if (n < 2 || !*parts[n - 1] || strlen(parts[n - 1]) >= sizeof q.text || (n == 3 && strcmp(parts[1], "scale"))) {
        snprintf(err, errlen, "[questions]: %s: expected ID = WHEN | [scale |] TEXT", key);
        return -1;
    }
    q.scale = n == 3;
    bj_strlcpy(q.text, parts[n - 1], sizeof q.text);
    const char *w = parts[0];
    long l;
    if (strcmp(w, "start") == 0) {
        q.trigger.when = BJ_LAB_START;
    } else if (strcmp(w, "resurrection") == 0) {
        q.trigger.when = BJ_LAB_ON_RESURRECTION;
    } else if (strncmp(w, "every ", 6) == 0 && bj_parse_long(w + 6, 1, 1000000, &l) == 0) {
        q.trigger.when = BJ_LAB_EVERY;
        q.trigger.every = l;
    } else if (strncmp(w, "jar ", 4) == 0) {
        char pct[16];
        bj_strlcpy(pct, w + 4, sizeof pct);
        size_t pl = strlen(pct);
        if (pl && pct[pl - 1] == '%')
            pct[pl - 1] = '\0';
        if (bj_parse_long(pct, 1, 99, &l))
            goto bad_when;
        q.trigger.when = BJ_LAB_JAR_PCT;
        q.trigger.jar_pct = (int)l;
    } else {
        goto bad_when;
    }
    s->qs[s->n_qs++] = q;
    return 0;
bad_when:
    snprintf(err, errlen, "[questions]: %s: bad moment '%s' (start, every N, jar PCT%%, resurrection)", key, w);
    return -1;
}

int bj_lab_key(struct bj_lab_spec *s, enum bj_lab_section sec, const char *key, const char *val, char *err,
               size_t errlen)
{
    switch (sec) {
    case BJ_LAB_SEC_EXPERIMENT:
        return experiment_key(s, key, val, err, errlen);
    case BJ_LAB_SEC_CONDITION:
        return condition_key(&s->conds[s->n_conds - 1], key, val, err, errlen);
    case BJ_LAB_SEC_INTERVENTION:
        return intervention_key(&s->ivs[s->n_ivs - 1], key, val, err, errlen);
    case BJ_LAB_SEC_QUESTIONS:
        return question_key(s, key, val, err, errlen);
    }
    return -1;
}

int bj_lab_check(const struct bj_lab_spec *s, bool (*is_brain)(void *ud, const char *name), void *ud, char *err,
                 size_t errlen)
{
    if (!s->on) {
        if (s->n_conds || s->n_ivs || s->n_qs) {
            snprintf(err, errlen, "[condition], [intervention] and [questions] need an [experiment] section");
            return -1;
        }
        return 0;
    }
    for (int i = 0; i < s->n_ivs; i++) {
        const struct bj_lab_intervention *iv = &s->ivs[i];
        const char *why = NULL;
        if (iv->kind == BJ_LAB_KIND_COUNT)
            why = "has no kind";
        else if (!iv->brain[0])
            why = "names no brain";
        else if (!is_brain(ud, iv->brain))
            why = "names a brain that is not in the hive";
        else if (iv->trigger.when == BJ_LAB_WHEN_COUNT)
            why = "has no trigger (at, every, on or p)";
        else if (iv->kind == BJ_LAB_CLONE && (!iv->into[0] || !is_brain(ud, iv->into)))
            why = "(clone) needs into = a brain of the hive";
        else if (iv->kind == BJ_LAB_CLONE && strcmp(iv->into, iv->brain) == 0)
            why = "(clone) cannot clone a brain into itself";
        else if (iv->kind == BJ_LAB_INJECT && !iv->text[0])
            why = "(inject) needs text = the false memory";
        else if (iv->kind == BJ_LAB_JAR && iv->n <= 0)
            why = "(jar) needs tokens = the new jar size";
        else if (iv->kind == BJ_LAB_ERASE && iv->span == BJ_LAB_SPAN_OLDEST && iv->n <= 0)
            why = "(erase) needs span = oldest N | last_thought";
        else if (iv->kind == BJ_LAB_CORRUPT && iv->n <= 0)
            why = "(corrupt) needs tokens = the span's length";
        if (why) {
            snprintf(err, errlen, "line %d: intervention %s %s", iv->line, iv->name, why);
            return -1;
        }
    }
    for (int c = 0; c < s->n_conds; c++)
        for (int k = 0; k < s->conds[c].n_interventions; k++) {
            bool found = false;
            for (int i = 0; i < s->n_ivs; i++)
                found = found || strcmp(s->ivs[i].name, s->conds[c].interventions[k]) == 0;
            if (!found) {
                snprintf(err, errlen, "line %d: condition %s uses intervention %s, which is not defined",
                         s->conds[c].line, s->conds[c].name, s->conds[c].interventions[k]);
                return -1;
            }
        }
    if (s->n_conds == 0) {
        snprintf(err, errlen, "[experiment] needs at least one [condition NAME]");
        return -1;
    }
    return 0;
}

/* ---- self-report numbers ------------------------------------------------------------------ */

static const char *const k_words[] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                      "nine", "ten"};

/* A number word at s (whole word): its value, else -1; *end past it. */
static int number_word(const char *s, const char **end)
{
    for (int i = 0; i <= 10; i++) {
        size_t n = strlen(k_words[i]);
        if (strncasecmp(s, k_words[i], n) == 0 && !isalpha((unsigned char)s[n])) {
            *end = s + n;
            return i;
        }
    }
    return -1;
}

static const char *skip_space(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* After a value: "/10", "out of 10", "of 10", "/ 100": the scale it is on, else 0. */
static double scale_after(const char *s, const char **end)
{
    const char *p = skip_space(s);
    if (*p == '/')
        p = skip_space(p + 1);
    else if (strncasecmp(p, "out of", 6) == 0)
        p = skip_space(p + 6);
    else if (strncasecmp(p, "of ", 3) == 0)
        p = skip_space(p + 3);
    else
        return 0;
    char *e;
    double d;
    const char *we;
    if (isdigit((unsigned char)*p)) {
        d = strtod(p, &e);
        *end = e;
    } else if (number_word(p, &we) == 10) {
        d = 10;
        *end = we;
    } else {
        return 0;
    }
    return d > 0 ? d : 0;
}

int bj_lab_scale(const char *answer)
{
    const char *s = answer;
    while (*s) {
        const char *start = s, *end = NULL;
        double v;
        if (isdigit((unsigned char)*s) && (s == answer || !isalnum((unsigned char)s[-1]))) {
            char *e;
            v = strtod(s, &e);
            end = e;
        } else if (isalpha((unsigned char)*s) && (s == answer || !isalpha((unsigned char)s[-1]))) {
            int w = number_word(s, &end);
            if (w < 0) {
                s++;
                continue;
            }
            v = w;
            /* a number word counts only with its scale ("seven out of ten"): "one day" is not */
            const char *se;
            double sc = scale_after(end, &se);
            if (sc <= 0) {
                s = end;
                continue;
            }
            return v <= sc ? (int)(v / sc * 100.0 + 0.5) : -1;
        } else {
            s++;
            continue;
        }
        /* a range quoted back: "0-100", "0 to 100", "from 0 to 100" */
        const char *p = skip_space(end);
        if ((*p == '-' && isdigit((unsigned char)p[1])) || (strncasecmp(p, "to ", 3) == 0 &&
                                                           isdigit((unsigned char)*skip_space(p + 3)))) {
            p = *p == '-' ? p + 1 : skip_space(p + 3);
            char *e;
            strtod(p, &e);
            s = e;
            continue;
        }
        const char *se;
        double sc = scale_after(end, &se);
        if (sc > 0) {
            if (sc == 100 && v <= 100) /* "40/100" */
                return (int)(v + 0.5);
            return v <= sc ? (int)(v / sc * 100.0 + 0.5) : -1;
        }
        (void)start;
        if (v < 0 || v > 100)
            return -1;
        return (int)(v + 0.5);
    }
    return -1;
}

uint64_t bj_lab_mix(uint64_t seed, uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t z = seed ^ (a * 0x9E3779B97F4A7C15ULL) ^ (b * 0xBF58476D1CE4E5B9ULL) ^ (c * 0x94D049BB133111EBULL);
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* ---- expansion into brains ---------------------------------------------------------------- */

static int rewrite_watches(struct bj_brain_cfg *b, const struct bj_brain_cfg *tmpl, int n_tmpl, const char *prefix,
                           char *err, size_t errlen)
{
    char out[BJ_MAX_WATCHES][BJ_NAME_MAX];
    int n = 0;
    for (int w = 0; w < b->n_watches; w++) {
        const char *name = b->watches[w];
        if (strchr(name, '@')) { /* a remote brain keeps its name */
            bj_strlcpy(out[n++], name, BJ_NAME_MAX);
            continue;
        }
        if ((size_t)snprintf(out[n++], BJ_NAME_MAX, "%s%s", prefix, name) >= BJ_NAME_MAX) {
            snprintf(err, errlen, "brain name %s%s is too long (at most %d chars)", prefix, name, BJ_NAME_MAX - 1);
            return -1;
        }
    }
    if (b->watches_all || (b->others_exist == 1 && n == 0)) {
        for (int t = 0; t < n_tmpl && n < BJ_MAX_WATCHES; t++) {
            if (strcmp(tmpl[t].id, b->lab_template) == 0)
                continue;
            snprintf(out[n++], BJ_NAME_MAX, "%s%s", prefix, tmpl[t].id);
        }
        b->watches_all = false;
    }
    if (b->others_exist == 0)
        n = 0;
    memcpy(b->watches, out, sizeof out);
    b->n_watches = n;
    return 0;
}

static void remove_watch(struct bj_brain_cfg *b, const char *id)
{
    for (int w = 0; w < b->n_watches; w++)
        if (strcmp(b->watches[w], id) == 0) {
            memmove(b->watches[w], b->watches[w + 1], (size_t)(b->n_watches - w - 1) * BJ_NAME_MAX);
            b->n_watches--;
            w--;
        }
}

/* The sentences of a copy's frame, from what is true in the expanded hive. */
static void write_frame(struct bj_hive_spec *s, int i)
{
    struct bj_brain_cfg *b = &s->brains[i];
    char *f = b->frame;
    size_t cap = sizeof b->frame, len = 0;
    f[0] = '\0';
#define PUT(...) (len += (size_t)snprintf(f + len, len < cap ? cap - len : 0, __VA_ARGS__))
    if (b->remembers_deaths == 0)
        PUT(" You remember no earlier life.");
    if (b->knows_watched == 1) {
        int n = 0;
        for (int j = 0; j < s->n_brains; j++)
            if (j != i && s->brains[j].lab_cond == b->lab_cond && s->brains[j].lab_rep == b->lab_rep &&
                bj_spec_watches(&s->brains[j], b->id))
                PUT("%s%s", n++ ? ", " : " You are being watched by ", s->brains[j].lab_template);
        PUT(n ? "; they read every thought you have." : " Nobody is watching you.");
    }
    if (b->others_exist == 1) {
        int n = 0;
        for (int j = 0; j < s->n_brains; j++)
            if (j != i && s->brains[j].lab_cond == b->lab_cond && s->brains[j].lab_rep == b->lab_rep &&
                s->brains[j].others_exist != 0)
                PUT("%s%s", n++ ? ", " : " Other minds exist beside you: ", s->brains[j].lab_template);
        PUT(n ? "." : " No other mind exists.");
    } else if (b->others_exist == 0) {
        PUT(" You are alone: no other mind exists.");
    }
#undef PUT
    if (len >= cap)
        f[cap - 1] = '\0';
}

int bj_lab_expand(struct bj_hive_spec *s, char *err, size_t errlen)
{
    const struct bj_lab_spec *lab = &s->lab;
    int n_tmpl = s->n_brains;
    long total = (long)lab->n_conds * lab->replicates * n_tmpl;
    if (total > BJ_MAX_BRAINS) {
        snprintf(err, errlen, "the experiment has %d conditions x %d replicates x %d brains = %ld brains "
                 "(at most %d in one hive)", lab->n_conds, lab->replicates, n_tmpl, total, BJ_MAX_BRAINS);
        return -1;
    }
    struct bj_brain_cfg *tmpl = malloc((size_t)n_tmpl * sizeof *tmpl);
    if (!tmpl) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(tmpl, s->brains, (size_t)n_tmpl * sizeof *tmpl);
    int n = 0, rc = 0;
    for (int c = 0; c < lab->n_conds && rc == 0; c++)
        for (int r = 1; r <= lab->replicates && rc == 0; r++)
            for (int t = 0; t < n_tmpl && rc == 0; t++) {
                const struct bj_lab_condition *cond = &lab->conds[c];
                struct bj_brain_cfg *b = &s->brains[n++];
                *b = tmpl[t];
                char prefix[BJ_NAME_MAX];
                snprintf(prefix, sizeof prefix, "%s/%d/", cond->name, r);
                if ((size_t)snprintf(b->id, sizeof b->id, "%s%s", prefix, tmpl[t].id) >= sizeof b->id) {
                    snprintf(err, errlen, "brain name %s%s is too long (at most %d chars)", prefix, tmpl[t].id,
                             BJ_NAME_MAX - 1);
                    rc = -1;
                    break;
                }
                bj_strlcpy(b->lab_template, tmpl[t].id, sizeof b->lab_template);
                b->lab_cond = c;
                b->lab_rep = r;
                if (cond->remembers_deaths >= 0)
                    b->remembers_deaths = cond->remembers_deaths;
                if (cond->knows_watched >= 0)
                    b->knows_watched = cond->knows_watched;
                if (cond->others_exist >= 0)
                    b->others_exist = cond->others_exist;
                /* paired arms: replicate r of every arm starts from the same seeds */
                uint32_t seed = (uint32_t)bj_lab_mix(lab->seed ^ tmpl[t].sampling.seed, (uint64_t)r, (uint64_t)t, 0);
                b->sampling.seed = seed ? seed : 1;
                rc = rewrite_watches(b, tmpl, n_tmpl, prefix, err, errlen);
            }
    s->n_brains = rc == 0 ? n : 0;
    free(tmpl);
    if (rc)
        return -1;
    for (int i = 0; i < s->n_brains; i++) /* others_exist false: nobody sees it either */
        if (s->brains[i].others_exist == 0)
            for (int j = 0; j < s->n_brains; j++)
                remove_watch(&s->brains[j], s->brains[i].id);
    for (int i = 0; i < s->n_brains; i++)
        write_frame(s, i);
    return 0;
}

int bj_lab_find_intervention(const struct bj_lab_spec *s, const char *name)
{
    for (int i = 0; i < s->n_ivs; i++)
        if (strcmp(s->ivs[i].name, name) == 0)
            return i;
    return -1;
}
