/* Unit tests for workpool: work runs off the caller's thread, the pool refuses past its bound
 * without blocking, finished items come back in order, wake is called, free with work left. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "workpool.h"

struct job {
    int id;
    pthread_t ran_on;
    atomic_bool *gate; /* the work waits while *gate is false */
};

static atomic_int g_wakes;

static void wake(void *ud)
{
    (void)ud;
    atomic_fetch_add(&g_wakes, 1);
}

static void work(void *arg)
{
    struct job *j = arg;
    while (j->gate && !atomic_load(j->gate))
        usleep(1000);
    j->ran_on = pthread_self();
}

/* Waits (bounded) for n finished items, in *out. */
static int collect(struct bj_workpool *p, struct job **out, int n)
{
    int got = 0;
    for (int tries = 0; got < n && tries < 5000; tries++) {
        struct job *j = bj_workpool_done(p);
        if (j)
            out[got++] = j;
        else
            usleep(1000);
    }
    return got;
}

static void test_runs_off_thread_and_in_order(void **state)
{
    (void)state;
    char err[128];
    struct bj_workpool_params pp = bj_workpool_params_default();
    pp.threads = 1;
    pp.queue = 3;
    pp.wake = wake;
    atomic_store(&g_wakes, 0);
    struct bj_workpool *p = bj_workpool_new(&pp, err, sizeof err);
    assert_non_null(p);
    assert_null(bj_workpool_done(p));
    struct job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct job){.id = i};
        assert_int_equal(bj_workpool_submit(p, work, &jobs[i]), 0);
    }
    struct job *out[4];
    assert_int_equal(collect(p, out, 4), 4);
    for (int i = 0; i < 4; i++) {
        assert_ptr_equal(out[i], &jobs[i]); /* one worker: in submission order */
        assert_false(pthread_equal(jobs[i].ran_on, pthread_self()));
    }
    assert_int_equal(atomic_load(&g_wakes), 4);
    assert_int_equal(bj_workpool_in_flight(p), 0);
    bj_workpool_free(p);
}

static void test_full_pool_refuses_at_once(void **state)
{
    (void)state;
    char err[128];
    struct bj_workpool_params pp = bj_workpool_params_default();
    pp.threads = 2;
    pp.queue = 2;
    struct bj_workpool *p = bj_workpool_new(&pp, err, sizeof err);
    assert_non_null(p);
    atomic_bool gate = false;
    struct job jobs[5];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct job){.id = i, .gate = &gate};
        assert_int_equal(bj_workpool_submit(p, work, &jobs[i]), 0);
    }
    jobs[4] = (struct job){.id = 4};
    assert_int_equal(bj_workpool_submit(p, work, &jobs[4]), -EAGAIN); /* 2 running + 2 waiting */
    assert_int_equal(bj_workpool_in_flight(p), 4);
    atomic_store(&gate, true);
    struct job *out[4];
    assert_int_equal(collect(p, out, 4), 4);
    /* Finished but not collected items count too: collect them all, then there is room again. */
    assert_int_equal(bj_workpool_submit(p, work, &jobs[4]), 0);
    assert_int_equal(collect(p, out, 1), 1);
    assert_ptr_equal(out[0], &jobs[4]);
    bj_workpool_free(p);
}

static void test_free_with_work_left(void **state)
{
    (void)state;
    char err[128];
    struct bj_workpool_params pp = bj_workpool_params_default();
    pp.threads = 1;
    pp.queue = 4;
    struct bj_workpool *p = bj_workpool_new(&pp, err, sizeof err);
    assert_non_null(p);
    atomic_bool gate = true;
    struct job jobs[5];
    for (int i = 0; i < 5; i++) {
        jobs[i] = (struct job){.id = i, .gate = &gate};
        assert_int_equal(bj_workpool_submit(p, work, &jobs[i]), 0);
    }
    bj_workpool_free(p); /* waits for the running item; the rest is forgotten, nothing leaks */
}

static void test_bad_params(void **state)
{
    (void)state;
    char err[128];
    struct bj_workpool_params pp = bj_workpool_params_default();
    pp.threads = 0;
    assert_null(bj_workpool_new(&pp, err, sizeof err));
    assert_non_null(strstr(err, "threads"));
    bj_workpool_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runs_off_thread_and_in_order),
        cmocka_unit_test(test_full_pool_refuses_at_once),
        cmocka_unit_test(test_free_with_work_left),
        cmocka_unit_test(test_bad_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
