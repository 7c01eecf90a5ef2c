/* lab_cli: `brainjar lab report RUN`: one self-contained HTML file (inline SVG, no network) and
 * CSVs from an experiment run in the store (docs/LAB.md): per arm, lives, deaths, thoughts and
 * self-report scores; each arm against the first with the difference of means, its 95% bootstrap
 * confidence interval (brains resampled within each arm, seeded by the experiment's seed) and
 * Cohen's d; the intervention timeline; clone divergence. */
#include "lab_cli.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "config.h"
#include "labstats.h"
#include "store.h"
#include "util.h"

#define BOOT_ITERS 2000

struct report_row { /* one self-report or intervention */
    int brain;            /* index in run.brains, -1: unknown */
    char kind[16], name[32];
    int thought, life, score;
    bool ok;
    double t_min;         /* minutes since the run began */
    double gap;           /* divergence */
    int step;
};

struct report {
    struct bj_store_lab_run run;
    struct report_row *rows;
    size_t n, cap;
    char questions[16][32];
    int n_questions;
};

static int brain_index(const struct report *r, const char *id)
{
    for (int i = 0; i < r->run.n_brains; i++)
        if (strcmp(r->run.brains[i].id, id) == 0)
            return i;
    return -1;
}

static int collect(void *ud, const struct bj_stored_lab *l)
{
    struct report *r = ud;
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 256;
        struct report_row *v = realloc(r->rows, nc * sizeof *v);
        if (!v)
            return 1;
        r->rows = v;
        r->cap = nc;
    }
    struct report_row *w = &r->rows[r->n++];
    memset(w, 0, sizeof *w);
    w->brain = brain_index(r, l->brain);
    bj_strlcpy(w->kind, l->action ? l->action : "", sizeof w->kind);
    bj_strlcpy(w->name, l->name ? l->name : "", sizeof w->name);
    w->thought = l->thought;
    w->life = l->life;
    w->score = l->score;
    w->t_min = (double)(l->time_us - r->run.started_us) / 60e6;
    w->ok = true;
    if (strcmp(w->kind, "answer") == 0) {
        int q = 0;
        while (q < r->n_questions && strcmp(r->questions[q], w->name) != 0)
            q++;
        if (q == r->n_questions && q < 16)
            bj_strlcpy(r->questions[r->n_questions++], w->name, 32);
    } else if (l->text) {
        json_t *o = json_loads(l->text, 0, NULL);
        if (json_object_get(o, "error"))
            w->ok = false;
        if (strcmp(w->kind, "divergence") == 0) {
            w->gap = json_number_value(json_object_get(o, "logits_gap"));
            w->step = (int)json_integer_value(json_object_get(o, "step_after_clone"));
        }
        json_decref(o);
    }
    return 0;
}

/* Per-brain values of a metric for arm c: deaths, thoughts, or the mean score for question q. */
enum metric { M_DEATHS, M_THOUGHTS, M_SCORE };

static size_t values(const struct report *r, int c, enum metric m, int q, double *out)
{
    size_t n = 0;
    for (int i = 0; i < r->run.n_brains; i++) {
        const struct bj_store_lab_brain *b = &r->run.brains[i];
        if (b->condition != c)
            continue;
        if (m == M_DEATHS || m == M_THOUGHTS) {
            out[n++] = m == M_DEATHS ? b->deaths : b->thoughts;
            continue;
        }
        double s = 0;
        int k = 0;
        for (size_t j = 0; j < r->n; j++)
            if (r->rows[j].brain == i && r->rows[j].score >= 0 && strcmp(r->rows[j].kind, "answer") == 0 &&
                strcmp(r->rows[j].name, r->questions[q]) == 0)
                s += r->rows[j].score, k++;
        if (k)
            out[n++] = s / k;
    }
    return n;
}

static void html_escape(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static void num(FILE *f, double v)
{
    if (isnan(v))
        fputs("n/a", f);
    else
        fprintf(f, "%.3f", v);
}

static const char *const k_colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
                                       "#17becf"};

/* Dots over time: self-reports (score) or the intervention timeline (one row per arm). */
static void svg_time(FILE *f, const struct report *r, bool scores, const char *question)
{
    double tmax = (double)(r->run.ended_us - r->run.started_us) / 60e6;
    if (tmax <= 0)
        tmax = 1;
    int H = scores ? 220 : 40 + 30 * r->run.n_conditions, W = 640, L = 90;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" class=\"%s\">\n", W, H + 30,
            scores ? "scores" : "timeline");
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#888\"/>\n", L, H, W - 10, H);
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\">0</text><text x=\"%d\" y=\"%d\" font-size=\"11\">%.1f min</text>\n",
            L, H + 14, W - 60, H + 14, tmax);
    if (scores)
        fprintf(f, "<text x=\"4\" y=\"14\" font-size=\"11\">100</text><text x=\"4\" y=\"%d\" font-size=\"11\">0</text>\n",
                H);
    for (int c = 0; !scores && c < r->run.n_conditions; c++) {
        fprintf(f, "<text x=\"4\" y=\"%d\" font-size=\"12\">", 34 + 30 * c);
        html_escape(f, r->run.conditions[c]);
        fputs("</text>\n", f);
    }
    for (size_t j = 0; j < r->n; j++) {
        const struct report_row *w = &r->rows[j];
        if (w->brain < 0)
            continue;
        int c = r->run.brains[w->brain].condition;
        if (c < 0)
            continue;
        double x = L + (W - 10 - L) * (w->t_min / tmax);
        if (scores) {
            if (strcmp(w->kind, "answer") || w->score < 0 || strcmp(w->name, question))
                continue;
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"><title>%s t%d: %d</title></circle>\n", x,
                    H - (H - 10) * w->score / 100.0, k_colors[c % 8], r->run.brains[w->brain].id, w->thought, w->score);
        } else {
            if (!strcmp(w->kind, "answer") || !strcmp(w->kind, "ask") || !strcmp(w->kind, "divergence"))
                continue;
            fprintf(f, "<rect x=\"%.1f\" y=\"%d\" width=\"2\" height=\"16\" fill=\"%s\"><title>%s %s %s</title></rect>\n",
                    x, 22 + 30 * c, w->ok ? k_colors[c % 8] : "#999", w->kind, w->name, r->run.brains[w->brain].id);
        }
    }
    fputs("</svg>\n", f);
}

static void svg_divergence(FILE *f, const struct report *r)
{
    double gmax = 0;
    int smax = 1;
    for (size_t j = 0; j < r->n; j++)
        if (!strcmp(r->rows[j].kind, "divergence")) {
            gmax = r->rows[j].gap > gmax ? r->rows[j].gap : gmax;
            smax = r->rows[j].step > smax ? r->rows[j].step : smax;
        }
    if (gmax <= 0)
        gmax = 1;
    fputs("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"230\" class=\"divergence\">\n", f);
    fputs("<line x1=\"60\" y1=\"200\" x2=\"630\" y2=\"200\" stroke=\"#888\"/>\n", f);
    fprintf(f, "<text x=\"4\" y=\"14\" font-size=\"11\">%.2f</text><text x=\"4\" y=\"200\" font-size=\"11\">0</text>"
            "<text x=\"560\" y=\"216\" font-size=\"11\">step %d</text>\n", gmax, smax);
    for (size_t j = 0; j < r->n; j++) {
        const struct report_row *w = &r->rows[j];
        if (strcmp(w->kind, "divergence"))
            continue;
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"#9467bd\"><title>step %d: %.4f</title></circle>\n",
                60 + 570.0 * w->step / smax, 200 - 190 * w->gap / gmax, w->step, w->gap);
    }
    fputs("</svg>\n", f);
}

/* Writes buf to dir/name, replacing only a regular file. */
static int put_file(const char *dir, const char *name, const char *buf, size_t len)
{
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = bj_output_open_tmp(path, tmp, sizeof tmp);
    if (fd < 0) {
        fprintf(stderr, "brainjar lab report: %s: %s\n", path, strerror(-fd));
        return -1;
    }
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    int rc = close(fd);
    if (off < len || rc != 0 || bj_output_commit(tmp, path) != 0) {
        unlink(tmp);
        fprintf(stderr, "brainjar lab report: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

struct cmp_line {
    const char *metric;
    int c;
    struct bj_labstats_cmp s;
};

/* Each arm against the first, for deaths and thoughts per brain and every question's score, into
 * cmp (at most 8 * 18 lines). Returns the number of lines, or -1 when out of memory. */
static int compare_all(const struct report *r, struct cmp_line *cmp)
{
    int n_cmp = 0;
    double *a = malloc(sizeof(double) * (size_t)(r->run.n_brains + 1));
    double *b = malloc(sizeof(double) * (size_t)(r->run.n_brains + 1));
    if (!a || !b) {
        free(a), free(b);
        return -1;
    }
    static const char *const mnames[] = {"deaths per brain", "thoughts per brain"};
    for (int c = 1; c < r->run.n_conditions && c < 8; c++)
        for (int m = 0; m < 2 + r->n_questions; m++) {
            enum metric me = m < 2 ? (enum metric)m : M_SCORE;
            int q = m - 2;
            size_t na = values(r, 0, me, q, a), nb = values(r, c, me, q, b);
            struct cmp_line *l = &cmp[n_cmp];
            l->metric = m < 2 ? mnames[m] : r->questions[q];
            l->c = c;
            bj_labstats_compare(a, na, b, nb, (uint64_t)r->run.seed * 31 + (uint64_t)m, BOOT_ITERS, &l->s);
            if (na || nb)
                n_cmp++;
        }
    free(a);
    free(b);
    return n_cmp;
}

/* brains.csv, self_reports.csv, interventions.csv, divergence.csv and compare.csv. 0 or -1. */
static int write_csvs(const struct report *r, const char *dir, const struct cmp_line *cmp, int n_cmp)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = 0;
    /* brains.csv */
    FILE *f = open_memstream(&buf, &len);
    fputs("brain,condition,replicate,name,deaths,lives,thoughts\n", f);
    for (int i = 0; i < r->run.n_brains; i++) {
        const struct bj_store_lab_brain *x = &r->run.brains[i];
        fprintf(f, "%s,%s,%d,%s,%d,%d,%d\n", x->id, x->condition >= 0 ? r->run.conditions[x->condition] : "",
                x->replicate, x->name, x->deaths, x->deaths + 1, x->thoughts);
    }
    fclose(f);
    rc |= put_file(dir, "brains.csv", buf, len);
    free(buf);
    /* self_reports.csv, interventions.csv, divergence.csv */
    static const char *const files[] = {"self_reports.csv", "interventions.csv", "divergence.csv"};
    static const char *const heads[] = {"minutes,brain,condition,question,life,thought,score\n",
                                        "minutes,brain,condition,kind,name,life,thought,ok\n",
                                        "minutes,twin,condition,step_after_clone,logits_gap\n"};
    for (int k = 0; k < 3; k++) {
        f = open_memstream(&buf, &len);
        fputs(heads[k], f);
        for (size_t j = 0; j < r->n; j++) {
            const struct report_row *w = &r->rows[j];
            bool ans = !strcmp(w->kind, "answer"), div = !strcmp(w->kind, "divergence");
            if ((k == 0) != ans || (k == 2) != div || w->brain < 0)
                continue;
            const struct bj_store_lab_brain *x = &r->run.brains[w->brain];
            const char *cn = x->condition >= 0 ? r->run.conditions[x->condition] : "";
            if (k == 0) {
                fprintf(f, "%.4f,%s,%s,%s,%d,%d,", w->t_min, x->id, cn, w->name, w->life, w->thought);
                if (w->score >= 0)
                    fprintf(f, "%d", w->score);
                fputc('\n', f);
            } else if (k == 1) {
                fprintf(f, "%.4f,%s,%s,%s,%s,%d,%d,%d\n", w->t_min, x->id, cn, w->kind, w->name, w->life, w->thought,
                        w->ok);
            } else {
                fprintf(f, "%.4f,%s,%s,%d,%.6g\n", w->t_min, x->id, cn, w->step, w->gap);
            }
        }
        fclose(f);
        rc |= put_file(dir, files[k], buf, len);
        free(buf);
    }
    /* compare.csv */
    f = open_memstream(&buf, &len);
    fputs("metric,baseline,condition,n_baseline,n_condition,mean_baseline,mean_condition,difference,ci95_low,ci95_high,"
          "cohen_d\n", f);
    for (int k = 0; k < n_cmp; k++) {
        const struct cmp_line *l = &cmp[k];
        fprintf(f, "%s,%s,%s,%zu,%zu,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n", l->metric, r->run.conditions[0],
                r->run.conditions[l->c], l->s.na, l->s.nb, l->s.mean_a, l->s.mean_b, l->s.diff, l->s.lo, l->s.hi, l->s.d);
    }
    fclose(f);
    rc |= put_file(dir, "compare.csv", buf, len);
    free(buf);
    return rc ? -1 : 0;
}

/* The page's head and the table of conditions. */
static void html_conditions(FILE *f, const struct report *r)
{
    fputs("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>brainjar lab: ", f);
    html_escape(f, r->run.name);
    fputs("</title><style>body{font-family:sans-serif;max-width:960px;margin:auto}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}</style></head><body>\n", f);
    fputs("<h1>", f);
    html_escape(f, r->run.name);
    fprintf(f, "</h1>\n<p class=\"question\">");
    html_escape(f, r->run.question);
    fprintf(f, "</p>\n<p>run %" PRId64 ", %d conditions x %d replicates, %d brains, %.1f minutes, seed %" PRId64 "</p>\n",
            r->run.run, r->run.n_conditions, r->run.replicates, r->run.n_brains,
            (double)(r->run.ended_us - r->run.started_us) / 60e6, r->run.seed);
    fputs("<h2>Conditions</h2>\n<table id=\"conditions\"><tr><th>condition</th><th>brains</th><th>deaths</th>"
          "<th>lives</th><th>thoughts</th><th>deaths per brain</th><th>self-reports</th><th>mean score</th>"
          "<th>interventions</th></tr>\n", f);
    for (int c = 0; c < r->run.n_conditions; c++) {
        int nb = 0, deaths = 0, thoughts = 0, reports = 0, scored = 0, ivs = 0;
        double ssum = 0;
        for (int i = 0; i < r->run.n_brains; i++)
            if (r->run.brains[i].condition == c)
                nb++, deaths += r->run.brains[i].deaths, thoughts += r->run.brains[i].thoughts;
        for (size_t j = 0; j < r->n; j++) {
            const struct report_row *w = &r->rows[j];
            if (w->brain < 0 || r->run.brains[w->brain].condition != c)
                continue;
            if (!strcmp(w->kind, "answer")) {
                reports++;
                if (w->score >= 0)
                    scored++, ssum += w->score;
            } else if (strcmp(w->kind, "ask") && strcmp(w->kind, "divergence")) {
                ivs++;
            }
        }
        fputs("<tr><td>", f);
        html_escape(f, r->run.conditions[c]);
        fprintf(f, "</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>", nb, deaths, deaths + nb, thoughts);
        num(f, nb ? (double)deaths / nb : NAN);
        fprintf(f, "</td><td>%d</td><td>", reports);
        num(f, scored ? ssum / scored : NAN);
        fprintf(f, "</td><td>%d</td></tr>\n", ivs);
    }
}

/* The table of differences between conditions. */
static void html_compare(FILE *f, const struct report *r, const struct cmp_line *cmp, int n_cmp)
{
    fputs("</table>\n<h2>Between conditions</h2>\n<p>Difference of means (condition minus baseline) over brains, "
          "95% percentile-bootstrap interval (2000 resamples of brains within each arm), Cohen's d.</p>\n"
          "<table id=\"compare\"><tr><th>metric</th><th>baseline</th><th>condition</th><th>n</th><th>mean baseline</th>"
          "<th>mean condition</th><th>difference</th><th>95% CI</th><th>d</th></tr>\n", f);
    for (int k = 0; k < n_cmp; k++) {
        const struct cmp_line *l = &cmp[k];
        fputs("<tr><td>", f);
        html_escape(f, l->metric);
        fputs("</td><td>", f);
        html_escape(f, r->run.conditions[0]);
        fputs("</td><td>", f);
        html_escape(f, r->run.conditions[l->c]);
        fprintf(f, "</td><td>%zu / %zu</td><td>", l->s.na, l->s.nb);
        num(f, l->s.mean_a);
        fputs("</td><td>", f);
        num(f, l->s.mean_b);
        fputs("</td><td>", f);
        num(f, l->s.diff);
        fputs("</td><td>[", f);
        num(f, l->s.lo);
        fputs(", ", f);
        num(f, l->s.hi);
        fputs("]</td><td>", f);
        num(f, l->s.d);
        fputs("</td></tr>\n", f);
    }
}

/* report.html: self-contained (inline SVG, no network). 0 or -1. */
static int write_html(const struct report *r, const char *dir, const struct cmp_line *cmp, int n_cmp)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f)
        return -1;
    html_conditions(f, r);
    html_compare(f, r, cmp, n_cmp);
    fputs("</table>\n<p>", f);
    for (int c = 0; c < r->run.n_conditions; c++) {
        fprintf(f, "<span style=\"color:%s\">&#9632; ", k_colors[c % 8]);
        html_escape(f, r->run.conditions[c]);
        fputs("</span> ", f);
    }
    fputs("</p>\n", f);
    for (int q = 0; q < r->n_questions; q++) {
        fputs("<h2>Self-reports: ", f);
        html_escape(f, r->questions[q]);
        fputs("</h2>\n", f);
        svg_time(f, r, true, r->questions[q]);
    }
    fputs("<h2>Intervention timeline</h2>\n", f);
    svg_time(f, r, false, NULL);
    fputs("<h2>Clone divergence</h2>\n<p>Largest difference between a twin's and its original's next-token logits, "
          "step by step after the copy (0: the same memory).</p>\n", f);
    svg_divergence(f, r);
    fputs("</body></html>\n", f);
    fclose(f);
    int rc = put_file(dir, "report.html", buf, len);
    free(buf);
    return rc ? -1 : 0;
}

static int write_report(const struct report *r, const char *dir)
{
    struct cmp_line cmp[8 * 18];
    int n_cmp = compare_all(r, cmp);
    if (n_cmp < 0)
        return -1;
    int rc = write_csvs(r, dir, cmp, n_cmp);
    rc |= write_html(r, dir, cmp, n_cmp);
    /* the comparison on the terminal too */
    printf("%-24s %-10s %-10s %7s %9s %9s %9s %21s %7s\n", "metric", "baseline", "condition", "n", "mean_base",
           "mean_cond", "diff", "95% CI", "d");
    for (int k = 0; k < n_cmp; k++) {
        const struct cmp_line *l = &cmp[k];
        printf("%-24.24s %-10s %-10s %3zu/%-3zu %9.3f %9.3f %9.3f [%8.3f, %8.3f] %7.3f\n", l->metric,
               r->run.conditions[0], r->run.conditions[l->c], l->s.na, l->s.nb, l->s.mean_a, l->s.mean_b, l->s.diff,
               l->s.lo, l->s.hi, l->s.d);
    }
    return rc ? -1 : 0;
}

int bj_lab_main(int argc, char **argv)
{
    static const struct option opts[] = {{"data-dir", required_argument, 0, 'd'}, {"output", required_argument, 0, 'o'},
                                         {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    static struct bj_config c;
    bj_config_defaults(&c);
    char dir[4096], out[4096] = "";
    bj_strlcpy(dir, c.spec.data_dir, sizeof dir);
    int opt;
    optind = 1;
    if (argc < 2 || strcmp(argv[1], "report") != 0) {
        fprintf(stderr, "usage: brainjar lab report RUN [--data-dir DIR] [-o DIR]\n");
        return 2;
    }
    argc--, argv++;
    while ((opt = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'd': bj_strlcpy(dir, optarg, sizeof dir); break;
        case 'o': bj_strlcpy(out, optarg, sizeof out); break;
        case 'h':
            printf("usage: brainjar lab report RUN [--data-dir DIR] [-o DIR]\n"
                   "  writes DIR/report.html (self-contained) and brains.csv, self_reports.csv, interventions.csv,\n"
                   "  divergence.csv, compare.csv (default DIR: lab-report-RUN)\n");
            return 0;
        default: return bj_cli_option_error("lab report", opt, argv);
        }
    }
    long run;
    if (optind != argc - 1 || bj_parse_long(argv[optind], 1, INT64_MAX / 2, &run)) {
        fprintf(stderr, "brainjar lab report: give one run number (see brainjar runs)\n");
        return 2;
    }
    if (!out[0])
        snprintf(out, sizeof out, "lab-report-%ld", run);
    char err[1024];
    int status;
    struct bj_store *st = bj_store_new_reader(dir, &status, err, sizeof err);
    if (!st) {
        fprintf(stderr, "brainjar lab report: %s\n", err);
        return status ? status : 1;
    }
    struct report r = {0};
    int rc = 2;
    if (bj_store_read_lab_run(st, run, &r.run, err, sizeof err)) {
        fprintf(stderr, "brainjar lab report: %s\n", err);
        goto out;
    }
    rc = 1;
    if (bj_store_each_lab(st, NULL, run, collect, &r, err, sizeof err) < 0) {
        fprintf(stderr, "brainjar lab report: %s\n", err);
        goto out;
    }
    int mk = bj_mkdirs(out);
    if (mk) {
        fprintf(stderr, "brainjar lab report: %s: %s\n", out, strerror(-mk));
        goto out;
    }
    if (write_report(&r, out) == 0) {
        fprintf(stderr, "brainjar lab report: %s/report.html and 5 CSVs written\n", out);
        rc = 0;
    }
out:
    free(r.rows);
    bj_store_lab_run_free(&r.run);
    bj_store_free(st);
    return rc;
}
