/* history_cli: see history_cli.h. */
#include "history_cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "config.h"
#include "store.h"
#include "util.h"

static void iso(int64_t us, char *buf, size_t len)
{
    if (us <= 0) {
        bj_strlcpy(buf, "", len);
        return;
    }
    time_t s = (time_t)(us / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(us % 1000000));
}

static struct bj_store *open_ro(const char *dir)
{
    char err[1024];
    int status;
    struct bj_store *st = bj_store_new_reader(dir, &status, err, sizeof err);
    if (!st)
        fprintf(stderr, "brainjar: %s\n", err);
    return st;
}

static void default_dir(char *dir, size_t len)
{
    static struct bj_config c;
    bj_config_defaults(&c);
    bj_strlcpy(dir, c.spec.data_dir, len);
}

int bj_check_main(int argc, char **argv)
{
    static const struct option opts[] = {{"data-dir", required_argument, 0, 'd'}, {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    char dir[PATH_MAX];
    default_dir(dir, sizeof dir);
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'd': bj_strlcpy(dir, optarg, sizeof dir); break;
        case 'h':
            printf("usage: brainjar check [--data-dir DIR]\n  runs SQLite's full integrity check on DIR/brainjar.db"
                   " (exit 0: sound, 1: damaged or unreadable)\n");
            return 0;
        default: return bj_cli_option_error("check", opt, argv);
        }
    }
    if (bj_cli_no_more_args("check", optind, argc, argv))
        return 2;
    struct bj_store *st = open_ro(dir);
    if (!st)
        return 1;
    char msg[2048];
    int rc = bj_store_check(st, true, msg, sizeof msg);
    if (rc == 0)
        printf("%s: ok\n", bj_store_path(st));
    else
        fprintf(stderr, "brainjar: %s: %s: %s\n", bj_store_path(st), rc > 0 ? "damaged" : "cannot check", msg);
    bj_store_free(st);
    return rc == 0 ? 0 : 1;
}

int bj_runs_main(int argc, char **argv)
{
    static const struct option opts[] = {{"data-dir", required_argument, 0, 'd'}, {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    char dir[PATH_MAX];
    default_dir(dir, sizeof dir);
    bool as_json = false;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'd': bj_strlcpy(dir, optarg, sizeof dir); break;
        case 'j': as_json = true; break;
        case 'h':
            printf("usage: brainjar runs [--data-dir DIR] [--json]\n  lists the runs recorded in DIR/brainjar.db\n");
            return 0;
        default: return bj_cli_option_error("runs", opt, argv);
        }
    }
    if (bj_cli_no_more_args("runs", optind, argc, argv))
        return 2;
    struct bj_store *st = open_ro(dir);
    if (!st)
        return 1;
    struct bj_stored_run *r;
    char err[300];
    int n = bj_store_read_runs(st, &r, err, sizeof err);
    if (n < 0) {
        fprintf(stderr, "brainjar runs: %s\n", err);
        bj_store_free(st);
        return 1;
    }
    if (!as_json)
        printf("%-5s %-27s %-27s %-9s %6s %8s %9s  %s\n", "RUN", "STARTED", "ENDED", "END", "BRAINS", "DEATHS",
               "THOUGHTS", "VERSION");
    for (int i = 0; i < n; i++) {
        char a[40], b[40];
        iso(r[i].started_us, a, sizeof a);
        iso(r[i].ended_us, b, sizeof b);
        const char *end = r[i].ended_us == 0 ? "running?" : r[i].refused ? "refused" : r[i].clean ? "clean"
                          : r[i].recovered ? "unclean" : "stopped";
        if (as_json) {
            json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:i,s:I,s:I,s:s,s:i}", "run", (json_int_t)r[i].id, "started", a,
                                  "ended", b, "end", end, "brains", r[i].n_brains, "deaths", (json_int_t)r[i].deaths,
                                  "thoughts", (json_int_t)r[i].thoughts, "version", r[i].version, "pid", r[i].pid);
            if (o && r[i].argv)
                json_object_set_new(o, "argv", json_loads(r[i].argv, 0, NULL));
            if (o && r[i].refused)
                json_object_set_new(o, "refused", json_string(r[i].refused));
            if (o)
                json_object_set_new(o, "lost", json_integer((json_int_t)r[i].lost));
            char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
            if (s)
                printf("%s\n", s);
            free(s);
            json_decref(o);
        } else {
            printf("%-5" PRId64 " %-27s %-27s %-9s %6d %8" PRIu64 " %9" PRIu64 "  %s\n", r[i].id, a, *b ? b : "-", end,
                   r[i].n_brains, r[i].deaths, r[i].thoughts, r[i].version);
        }
    }
    bj_store_free_runs(r, n);
    bj_store_free(st);
    return 0;
}

/* ---- export --------------------------------------------------------------------------------- */

struct exp {
    FILE *out;
    bool csv;
    uint64_t rows;
};

static void csv_field(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static int put_thought(void *ud, const struct bj_stored_thought *t)
{
    struct exp *x = ud;
    char a[40], b[40];
    iso(t->started_us, a, sizeof a);
    iso(t->ended_us, b, sizeof b);
    if (x->csv) {
        fprintf(x->out, "thought,%" PRId64 ",%s,%u,%u,,,%s,%s,%d,%d,", t->run, t->brain, t->life, t->thought, a, b,
                t->tokens, t->complete);
        csv_field(x->out, t->text);
        fputc('\n', x->out);
    } else {
        json_t *o = json_pack("{s:s,s:I,s:s,s:i,s:i,s:s,s:s,s:i,s:b,s:s}", "kind", "thought", "run", (json_int_t)t->run,
                              "brain", t->brain, "life", (int)t->life, "thought", (int)t->thought, "started", a,
                              "ended", b, "tokens", t->tokens, "complete", t->complete, "text", t->text);
        char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (s)
            fprintf(x->out, "%s\n", s);
        free(s);
        json_decref(o);
    }
    x->rows++;
    return ferror(x->out) ? 1 : 0;
}

static int put_lab(void *ud, const struct bj_stored_lab *r)
{
    struct exp *x = ud;
    char t[40];
    iso(r->time_us, t, sizeof t);
    if (x->csv) { /* kind,run,brain,life,thought,count,cause,started,ended,tokens,complete,text */
        fprintf(x->out, "%s,%" PRId64 ",%s,%d,%d,%d,%s:%s,,%s,,,", r->kind, r->run, r->brain, r->life, r->thought,
                r->score, r->action, r->name ? r->name : "", t);
        csv_field(x->out, r->text);
        fputc('\n', x->out);
    } else {
        json_t *o = json_pack("{s:s,s:I,s:s,s:s?,s:i,s:s?,s:s?,s:i,s:i,s:s,s:s?}", "kind", r->kind, "run",
                              (json_int_t)r->run, "brain", r->brain, "condition", r->condition, "replicate",
                              r->replicate, "name", r->name, "action", r->action, "life", r->life, "thought",
                              r->thought, "time", t, "text", r->text);
        if (o && strcmp(r->kind, "self_report") == 0)
            json_object_set_new(o, "score", r->score >= 0 ? json_integer(r->score) : json_null());
        char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        if (s)
            fprintf(x->out, "%s\n", s);
        free(s);
        json_decref(o);
    }
    x->rows++;
    return ferror(x->out) ? 1 : 0;
}

static int put_deaths(struct bj_store *st, struct exp *x, const char *brain, int64_t run)
{
    struct bj_stored_death *d;
    char err[300];
    int n = bj_store_read_deaths(st, brain, run, 0, 1 << 30, true, &d, err, sizeof err);
    if (n < 0) {
        fprintf(stderr, "brainjar export: %s\n", err);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char t[40];
        iso(d[i].time_us, t, sizeof t);
        if (x->csv) {
            fprintf(x->out, "death,%" PRId64 ",%s,,,%u,%s,,%s,,,\n", d[i].run, d[i].brain, d[i].count, d[i].cause, t);
        } else {
            json_t *o = json_pack("{s:s,s:I,s:s,s:i,s:s,s:s,s:i,s:i}", "kind", "death", "run", (json_int_t)d[i].run,
                                  "brain", d[i].brain, "count", (int)d[i].count, "cause", d[i].cause, "time", t,
                                  "jar_used", d[i].jar_used, "jar_tokens", d[i].jar_tokens);
            char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
            if (s)
                fprintf(x->out, "%s\n", s);
            free(s);
            json_decref(o);
        }
        x->rows++;
    }
    free(d);
    return 0;
}

int bj_export_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"data-dir", required_argument, 0, 'd'}, {"run", required_argument, 0, 'r'},
        {"brain", required_argument, 0, 'b'},    {"format", required_argument, 0, 'f'},
        {"output", required_argument, 0, 'o'},   {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    char dir[PATH_MAX];
    default_dir(dir, sizeof dir);
    const char *brain = NULL, *outpath = NULL;
    long run = 0;
    bool csv = false;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":ho:", opts, NULL)) != -1) {
        switch (opt) {
        case 'd': bj_strlcpy(dir, optarg, sizeof dir); break;
        case 'r':
            if (bj_parse_long(optarg, 1, 1L << 50, &run)) {
                fprintf(stderr, "brainjar export: --run: '%s' is not a run number (see brainjar runs)\n", optarg);
                return 2;
            }
            break;
        case 'b': brain = optarg; break;
        case 'f':
            if (strcmp(optarg, "csv") == 0)
                csv = true;
            else if (strcmp(optarg, "jsonl") == 0)
                csv = false;
            else {
                fprintf(stderr, "brainjar export: --format: '%s' is not jsonl or csv\n", optarg);
                return 2;
            }
            break;
        case 'o': outpath = optarg; break;
        case 'h':
            printf("usage: brainjar export [--data-dir DIR] [--run R] [--brain B] [--format jsonl|csv] [-o FILE]\n"
                   "  writes the recorded thoughts, then the deaths (to stdout without -o)\n");
            return 0;
        default: return bj_cli_option_error("export", opt, argv);
        }
    }
    if (bj_cli_no_more_args("export", optind, argc, argv))
        return 2;
    /* Only a regular file may be replaced (never a device, a directory, a fifo or a link): the
     * one safe writer of base/util, as every file brainjar writes over. */
    char tmp[PATH_MAX + 32] = "";
    struct exp x = {.out = stdout, .csv = csv};
    if (outpath && strcmp(outpath, "-") != 0) {
        int fd = bj_output_open_tmp(outpath, tmp, sizeof tmp);
        if (fd == -EINVAL || fd == -ELOOP) {
            fprintf(stderr, "brainjar export: %s exists and is not a regular file; not overwriting it\n", outpath);
            return 2;
        }
        if (fd < 0 || !(x.out = fdopen(fd, "w"))) {
            fprintf(stderr, "brainjar export: %s: %s\n", outpath, strerror(fd < 0 ? -fd : errno));
            if (fd >= 0) {
                close(fd);
                unlink(tmp);
            }
            return 1;
        }
    }
    int rc = 1;
    struct bj_store *st = open_ro(dir);
    if (!st)
        goto out;
    if (csv)
        fprintf(x.out, "kind,run,brain,life,thought,count,cause,started,ended,tokens,complete,text\n");
    char err[300];
    if (bj_store_each_thought(st, brain, run, put_thought, &x, err, sizeof err) < 0) {
        fprintf(stderr, "brainjar export: %s\n", err);
        goto out;
    }
    if (put_deaths(st, &x, brain, run))
        goto out;
    if (bj_store_each_lab(st, brain, run, put_lab, &x, err, sizeof err) < 0) {
        fprintf(stderr, "brainjar export: %s\n", err);
        goto out;
    }
    if (fflush(x.out) != 0 || ferror(x.out)) {
        fprintf(stderr, "brainjar export: write failed: %s\n", strerror(errno));
        goto out;
    }
    rc = 0;
out:
    bj_store_free(st);
    if (x.out != stdout) {
        if (fclose(x.out) != 0)
            rc = 1;
        int crc = rc == 0 ? bj_output_commit(tmp, outpath) : 0;
        if (crc) {
            fprintf(stderr, "brainjar export: %s: %s\n", outpath, strerror(-crc));
            rc = 1;
        }
        if (rc)
            unlink(tmp);
    }
    if (rc == 0 && outpath)
        fprintf(stderr, "brainjar export: %" PRIu64 " records written to %s\n", x.rows, outpath);
    return rc;
}

/* ---- replay --------------------------------------------------------------------------------- */

int bj_replay_args(int argc, char **argv, int *out_argc, char ***out_argv)
{
    const char *run_s = NULL, *from = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--replay") == 0 && i + 1 < argc)
            run_s = argv[++i];
        else if (strncmp(argv[i], "--replay=", 9) == 0)
            run_s = argv[i] + 9;
        else if (strcmp(argv[i], "--replay-from") == 0 && i + 1 < argc)
            from = argv[++i];
    }
    if (!run_s)
        return 0;
    long run;
    if (bj_parse_long(run_s, 1, 1L << 50, &run)) {
        fprintf(stderr, "brainjar run: --replay: '%s' is not a run number (see brainjar runs)\n", run_s);
        return 2;
    }
    char dir[PATH_MAX];
    if (from)
        bj_strlcpy(dir, from, sizeof dir);
    else
        default_dir(dir, sizeof dir);
    struct bj_store *st = open_ro(dir);
    if (!st)
        return 2;
    struct bj_stored_run *r;
    char err[300];
    int n = bj_store_read_runs(st, &r, err, sizeof err);
    bj_store_free(st);
    if (n < 0) {
        fprintf(stderr, "brainjar run: --replay: %s\n", err);
        return 2;
    }
    json_t *rec = NULL;
    for (int i = 0; i < n; i++)
        if (r[i].id == run && r[i].argv)
            rec = json_loads(r[i].argv, 0, NULL);
    bj_store_free_runs(r, n);
    if (!json_is_array(rec) || json_array_size(rec) < 2) {
        fprintf(stderr, "brainjar run: --replay: run %ld is not recorded with its arguments in %s\n", run, dir);
        json_decref(rec);
        return 2;
    }
    size_t nrec = json_array_size(rec);
    char **v = calloc(nrec + (size_t)argc + 8, sizeof *v); /* NULL-terminated */
    if (!v) {
        fprintf(stderr, "brainjar run: --replay: out of memory\n");
        json_decref(rec);
        return 2;
    }
    int k = 0;
    v[k++] = strdup(argv[0]); /* every entry is v's own: bj_replay_args_free frees them all */
    for (size_t i = 2; i < nrec; i++) { /* recorded: brainjar run ARGS... */
        const char *a = json_string_value(json_array_get(rec, i));
        v[k++] = strdup(a ? a : "");
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--replay") == 0 || strcmp(argv[i], "--replay-from") == 0) {
            i++;
            continue;
        }
        if (strncmp(argv[i], "--replay=", 9) == 0)
            continue;
        v[k++] = strdup(argv[i]);
    }
    char num[32];
    snprintf(num, sizeof num, "%ld", run);
    v[k++] = strdup("--replay-run");
    v[k++] = strdup(num);
    v[k++] = strdup("--replay-from");
    v[k++] = strdup(dir);
    json_decref(rec);
    for (int i = 0; i < k; i++)
        if (!v[i]) { /* a strdup failed: the list would end early */
            for (int j = 0; j < k; j++)
                free(v[j]);
            free(v);
            fprintf(stderr, "brainjar run: --replay: out of memory\n");
            return 2;
        }
    *out_argc = k;
    *out_argv = v;
    return 1;
}

void bj_replay_args_free(char **v)
{
    if (!v)
        return;
    for (char **a = v; *a; a++)
        free(*a);
    free(v);
}
