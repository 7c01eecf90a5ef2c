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
        cmocka_unit_test(test_no_workers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
