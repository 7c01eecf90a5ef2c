/* labstats: the numbers a lab report compares arms with (pure, any thread): means, the
 * difference of two groups' means with a seeded percentile-bootstrap 95% confidence interval,
 * and Cohen's d (pooled standard deviation). */
#ifndef BJ_LABSTATS_H
#define BJ_LABSTATS_H

#include <stddef.h>
#include <stdint.h>

struct bj_labstats_cmp {
    double mean_a, mean_b, diff;  /* diff = mean_b - mean_a */
    double lo, hi;                /* 95% bootstrap CI of diff (NAN when a group is empty) */
    double d;                     /* Cohen's d (NAN when undefined: < 2 each, or no spread) */
    size_t na, nb;
};

double bj_labstats_mean(const double *v, size_t n);
double bj_labstats_sd(const double *v, size_t n); /* sample SD; NAN below 2 */
/* Compares b with a: iters resamples (2000 is plenty) drawn with a generator seeded by seed, so
 * the same data give the same interval. */
void bj_labstats_compare(const double *a, size_t na, const double *b, size_t nb, uint64_t seed, int iters,
                         struct bj_labstats_cmp *out);

#endif
