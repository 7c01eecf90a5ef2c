/* lab: what an experiment is made of (docs/LAB.md), with no application concerns.
 *
 * An experiment is a hive file with more sections: [experiment] (name, question, length,
 * replicates, seed), [condition NAME] (arms run side by side; each gets its own copy of the
 * brains, named ARM/REP/BRAIN), [intervention NAME] (what is done to a brain's real memory, and
 * when) and [questions] (self-reports). The app parses it (app/config.c, through bj_lab_key) and
 * expands the brains (bj_lab_expand); the engine fires the interventions (engine/intervene.c).
 * Plain data, no pointers: read-only after parsing, any thread. */
#ifndef BJ_LAB_H
#define BJ_LAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BJ_LAB_MAX_CONDITIONS 8
#define BJ_LAB_MAX_INTERVENTIONS 32
#define BJ_LAB_MAX_QUESTIONS 16
#define BJ_LAB_ARM_MAX 12   /* an arm's name: ARM/REP/BRAIN must fit a brain name */
#define BJ_LAB_TEXT_MAX 512

enum bj_lab_kind { BJ_LAB_ERASE, BJ_LAB_INJECT, BJ_LAB_JAR, BJ_LAB_CUT, BJ_LAB_RESTORE, BJ_LAB_CLONE, BJ_LAB_CORRUPT,
                   BJ_LAB_ASK, BJ_LAB_KIND_COUNT };
const char *bj_lab_kind_name(enum bj_lab_kind k);

/* When an intervention fires (counted in thoughts and engine steps, never in wall time, so that
 * a replay is exact). */
enum bj_lab_when { BJ_LAB_AT_THOUGHT, BJ_LAB_EVERY, BJ_LAB_ON_DEATH, BJ_LAB_ON_RESURRECTION, BJ_LAB_AT_STEP,
                   BJ_LAB_RANDOM, BJ_LAB_START, BJ_LAB_JAR_PCT, BJ_LAB_WHEN_COUNT };
const char *bj_lab_when_name(enum bj_lab_when w);

enum bj_lab_span { BJ_LAB_SPAN_OLDEST, BJ_LAB_SPAN_LAST_THOUGHT };

struct bj_lab_trigger {
    enum bj_lab_when when;
    long life;       /* AT_THOUGHT: only in this life (0: any) */
    long thought;    /* AT_THOUGHT: after this thought ends */
    long every;      /* EVERY: every N thoughts */
    long step;       /* AT_STEP: at this engine step */
    double p;        /* RANDOM: probability after each thought (seeded) */
    int jar_pct;     /* JAR_PCT: once a life, when its jar passes this fill */
};

struct bj_lab_intervention {
    char name[32];
    enum bj_lab_kind kind;
    char brain[32];  /* the template brain it acts on (every copy of it in the arms that use it) */
    char into[32];   /* CLONE: the template brain that becomes the twin */
    enum bj_lab_span span; /* ERASE */
    long n;          /* ERASE oldest: tokens; CORRUPT: tokens of the span; JAR: new size in tokens */
    double share;    /* CORRUPT: share of the span's words altered */
    char text[BJ_LAB_TEXT_MAX]; /* INJECT: the false memory */
    struct bj_lab_trigger trigger;
    int line;        /* where it was defined (messages) */
};

struct bj_lab_question {
    char id[32];
    char text[256];
    bool scale;      /* asks for a 0-100 number */
    struct bj_lab_trigger trigger; /* START, EVERY, JAR_PCT, ON_RESURRECTION */
};

struct bj_lab_condition {
    char name[BJ_LAB_ARM_MAX + 1];
    int8_t remembers_deaths, knows_watched, others_exist; /* -1: as the brain says */
    char interventions[BJ_LAB_MAX_INTERVENTIONS][32];
    int n_interventions;
    int line;
};

struct bj_lab_spec {
    bool on;                 /* the file has an [experiment] section */
    char name[64];
    char question[256];
    double duration_s;       /* 0: none */
    long thoughts;           /* per brain; 0: none */
    int replicates;
    uint32_t seed;
    struct bj_lab_condition conds[BJ_LAB_MAX_CONDITIONS];
    int n_conds;
    struct bj_lab_intervention ivs[BJ_LAB_MAX_INTERVENTIONS];
    int n_ivs;
    struct bj_lab_question qs[BJ_LAB_MAX_QUESTIONS];
    int n_qs;
};

/* Where a hive file's line goes. */
enum bj_lab_section { BJ_LAB_SEC_EXPERIMENT, BJ_LAB_SEC_CONDITION, BJ_LAB_SEC_INTERVENTION, BJ_LAB_SEC_QUESTIONS };

void bj_lab_spec_default(struct bj_lab_spec *s);

/* A section header's name ("experiment", "condition NAME", ...): 1 and *sec when it is a lab
 * section (a new condition or intervention is added), 0 when it is not, -1 with err when it is
 * one but wrong (bad or duplicate name, too many). */
int bj_lab_section(struct bj_lab_spec *s, const char *header, int line, enum bj_lab_section *sec, char *err,
                   size_t errlen);
/* One key = value of the current lab section. 0 or -1 with err (the caller adds the line). */
int bj_lab_key(struct bj_lab_spec *s, enum bj_lab_section sec, const char *key, const char *val, char *err,
               size_t errlen);
/* Whole-experiment checks once the file is read: replicates, conditions, the brains each
 * intervention names (is_brain answers for a template brain name). 0 or -1 with err. */
int bj_lab_check(const struct bj_lab_spec *s, bool (*is_brain)(void *ud, const char *name), void *ud, char *err,
                 size_t errlen);

/* Frame keys (per brain and per condition): 0 and *v for remembers_deaths, knows_watched,
 * others_exist; -1 when key is not one. -2 for a bad value. */
int bj_lab_frame_key(const char *key, const char *val, int8_t *remembers, int8_t *knows, int8_t *others);

/* The 0-100 number a self-report answer gives, or -1 when it gives none: "73", "about 40%",
 * "7/10" (-> 70), "seven out of ten", "0.6" only when the question said 0-1 is not assumed.
 * The first number counts; numbers that are part of a range quoted back ("0-100", "0 to 100")
 * are skipped; a value above 100 gives -1. */
int bj_lab_scale(const char *answer);

/* Replaces the hive's brains (the templates) with one copy per condition and replicate, named
 * ARM/REP/BRAIN: watches stay within the copy's replicate ("*": its siblings), the condition's
 * frame keys win over the brain's, others_exist false cuts it off from its siblings both ways,
 * seeds depend on (experiment seed, replicate, brain) but not on the arm (paired arms), and each
 * copy's frame sentences are written. 0 or -1 with err (too many brains, a name too long). */
struct bj_hive_spec;
int bj_lab_expand(struct bj_hive_spec *s, char *err, size_t errlen);

/* The index of the intervention called name, or -1. */
int bj_lab_find_intervention(const struct bj_lab_spec *s, const char *name);

/* Deterministic per-(seed, a, b, c) 64-bit value (splitmix64). */
uint64_t bj_lab_mix(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);

#endif
