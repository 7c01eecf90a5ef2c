/* labstats: see labstats.h. */
#include "labstats.h"

#include <math.h>
#include <stdlib.h>

#include "lab.h"

double bj_labstats_mean(const double *v, size_t n)
{
    if (n == 0)
        return NAN;
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[i];
    return s / (double)n;
}

double bj_labstats_sd(const double *v, size_t n)
{
    if (n < 2)
        return NAN;
    double m = bj_labstats_mean(v, n), s = 0;
    for (size_t i = 0; i < n; i++)
        s += (v[i] - m) * (v[i] - m);
    return sqrt(s / (double)(n - 1));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double resample_mean(const double *v, size_t n, uint64_t seed, uint64_t k, uint64_t which)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += v[bj_lab_mix(seed, k, which, i) % n];
    return s / (double)n;
}

void bj_labstats_compare(const double *a, size_t na, const double *b, size_t nb, uint64_t seed, int iters,
                         struct bj_labstats_cmp *out)
{
    out->na = na;
    out->nb = nb;
    out->mean_a = bj_labstats_mean(a, na);
    out->mean_b = bj_labstats_mean(b, nb);
    out->diff = out->mean_b - out->mean_a;
    out->lo = out->hi = out->d = NAN;
    if (na == 0 || nb == 0 || iters < 10)
        return;
    double *diffs = malloc((size_t)iters * sizeof *diffs);
    if (diffs) {
        for (int k = 0; k < iters; k++)
            diffs[k] = resample_mean(b, nb, seed, (uint64_t)k, 2) - resample_mean(a, na, seed, (uint64_t)k, 1);
        qsort(diffs, (size_t)iters, sizeof *diffs, cmp_double);
        out->lo = diffs[(int)floor(0.025 * (iters - 1))];
        out->hi = diffs[(int)ceil(0.975 * (iters - 1))];
        free(diffs);
    }
    double sa = bj_labstats_sd(a, na), sb = bj_labstats_sd(b, nb);
    if (na >= 2 && nb >= 2) {
        double pooled = sqrt(((double)(na - 1) * sa * sa + (double)(nb - 1) * sb * sb) / (double)(na + nb - 2));
        if (pooled > 0)
            out->d = out->diff / pooled;
    }
}
