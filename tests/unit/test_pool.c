/* pool: every item runs exactly once per run, at most `width` at once, across many runs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <unistd.h>

#include "pool.h"

struct item {
    atomic_int *running, *peak;
    int runs;
};

static void work(void *arg)
{
    struct item *it = arg;
    int now = atomic_fetch_add(it->running, 1) + 1;
    for (int peak = atomic_load(it->peak); now > peak && !atomic_compare_exchange_weak(it->peak, &peak, now);)
        ;
    usleep(200);
    it->runs++; /* each item belongs to one run at a time: no race */
    atomic_fetch_sub(it->running, 1);
}

static void run_items(struct bj_pool *p, int n, int width, int rounds)
{
    atomic_int running = 0, peak = 0;
    struct item items[64];
    void *ptrs[64];
    for (int k = 0; k < n; k++) {
        items[k] = (struct item){&running, &peak, 0};
        ptrs[k] = &items[k];
    }
    for (int r = 0; r < rounds; r++)
        bj_pool_run(p, work, ptrs, n, width);
    for (int k = 0; k < n; k++)
        assert_int_equal(items[k].runs, rounds);
    int limit = width < 1 ? 1 : width;
    if (limit > bj_pool_workers(p) + 1)
        limit = bj_pool_workers(p) + 1;
    assert_true(atomic_load(&peak) <= limit);
    assert_true(atomic_load(&peak) >= 1);
}

static void test_runs_everything_within_width(void **state)
{
    (void)state;
    struct bj_pool *p = bj_pool_new(3);
    assert_non_null(p);
    assert_int_equal(bj_pool_workers(p), 3);
    run_items(p, 64, 4, 20);
    run_items(p, 64, 2, 20);
    run_items(p, 5, 1, 20);
    run_items(p, 1, 4, 20);
    run_items(p, 3, 100, 20);
    bj_pool_run(p, work, NULL, 0, 4); /* nothing to do */
    bj_pool_free(p);
}

/* Many short runs back to back, two item arrays in turn: a worker that wakes late for one run
 * must neither run an item of the next with the old run's items nor run any item twice. */
static void count(void *arg) { atomic_fetch_add((atomic_int *)arg, 1); }

static void test_late_workers_touch_no_later_run(void **state)
{
    (void)state;
    struct bj_pool *p = bj_pool_new(7);
    assert_non_null(p);
    atomic_int a[3], b[3];
    void *pa[3], *pb[3];
    for (int k = 0; k < 3; k++) {
        atomic_init(&a[k], 0), atomic_init(&b[k], 0);
        pa[k] = &a[k], pb[k] = &b[k];
    }
    for (int r = 0; r < 3000; r++)
        bj_pool_run(p, count, r % 2 ? pb : pa, 2 + r % 2, 8);
    bj_pool_free(p);
    for (int k = 0; k < 2; k++) {
        assert_int_equal(atomic_load(&a[k]), 1500);
        assert_int_equal(atomic_load(&b[k]), 1500);
    }
    assert_int_equal(atomic_load(&a[2]), 0); /* runs on pa had 2 items */
    assert_int_equal(atomic_load(&b[2]), 1500);
}

static void test_no_workers(void **state)
{
    (void)state;
    struct bj_pool *p = bj_pool_new(0);
    assert_non_null(p);
    run_items(p, 10, 8, 3);
    bj_pool_free(p);
    run_items(NULL, 10, 8, 3); /* no pool at all: the caller runs everything */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs_everything_within_width),
        cmocka_unit_test(test_late_workers_touch_no_later_run),
        cmocka_unit_test(test_no_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
