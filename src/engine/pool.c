/* pool: see pool.h. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "util.h"

struct worker {
    struct bj_pool *pool;
    int index;
    pthread_t thread;
};

/* One run as a thread sees it: copied under the lock, so a worker that wakes late never mixes
 * one run's items with another's function. */
struct run {
    uint32_t gen;
    void (*fn)(void *);
    void **items;
    int n;
};

struct bj_pool {
    pthread_mutex_t lock;
    pthread_cond_t go, done_cv;
    struct worker *workers;
    int n_workers;
    /* The current run (written under lock before gen is bumped; copied by workers under lock). */
    struct run cur;
    int width;
    uint64_t gen;
    /* (run's gen << 32) | next item: a claim succeeds only for the run it was meant for. */
    _Atomic uint64_t next;
    atomic_int done; /* items of the current run finished */
    bool quit;
};

/* Claims and runs items of run r until there are none left (or a newer run has begun). The
 * thread finishing the last item wakes the caller if it sleeps. */
static void take_items(struct bj_pool *p, const struct run *r)
{
    for (;;) {
        uint64_t v = atomic_load(&p->next);
        if ((uint32_t)(v >> 32) != r->gen || (int)(uint32_t)v >= r->n)
            return;
        if (!atomic_compare_exchange_weak(&p->next, &v, v + 1))
            continue;
        r->fn(r->items[(uint32_t)v]);
        if (atomic_fetch_add_explicit(&p->done, 1, memory_order_acq_rel) + 1 == r->n) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->lock);
        }
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct bj_pool *p = w->pool;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (p->gen == seen && !p->quit)
            pthread_cond_wait(&p->go, &p->lock);
        if (p->quit)
            break;
        seen = p->gen;
        struct run r = p->cur;
        bool mine = w->index < p->width - 1; /* the caller is one of the width */
        pthread_mutex_unlock(&p->lock);
        if (mine)
            take_items(p, &r);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

struct bj_pool *bj_pool_new(int n_workers)
{
    struct bj_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    atomic_init(&p->next, 0);
    atomic_init(&p->done, 0);
    if (n_workers > 0 && !(p->workers = calloc((size_t)n_workers, sizeof *p->workers))) {
        bj_pool_free(p);
        return NULL;
    }
    for (int i = 0; i < n_workers; i++) {
        p->workers[i] = (struct worker){.pool = p, .index = i};
        if (pthread_create(&p->workers[i].thread, NULL, worker_main, &p->workers[i]) != 0)
            break; /* fewer workers: runs are narrower, never wrong */
        p->n_workers++;
    }
    return p;
}

void bj_pool_free(struct bj_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->quit = true;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->lock);
    for (int i = 0; i < p->n_workers; i++)
        pthread_join(p->workers[i].thread, NULL);
    free(p->workers);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done_cv);
    free(p);
}

int bj_pool_workers(const struct bj_pool *p) { return p ? p->n_workers : 0; }

/* How long the caller spins for the last items before it sleeps: they are short (a row's
 * sampling takes tens of microseconds); a long one (a parallel decode) is waited for asleep. */
#define SPIN_US 50

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

void bj_pool_run(struct bj_pool *p, void (*fn)(void *), void **items, int n, int width)
{
    if (n <= 0)
        return;
    if (width < 1)
        width = 1;
    if (!p || p->n_workers == 0 || width == 1 || n == 1) {
        for (int k = 0; k < n; k++)
            fn(items[k]);
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->gen++;
    p->cur = (struct run){.gen = (uint32_t)p->gen, .fn = fn, .items = items, .n = n};
    p->width = width;
    atomic_store(&p->done, 0);
    atomic_store(&p->next, (uint64_t)p->cur.gen << 32);
    struct run r = p->cur;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->lock);
    take_items(p, &r);
    /* Every item is claimed now; wait for those still running on workers, not for workers that
     * have not even woken up (they will find nothing left). */
    int64_t until = bj_now_us() + SPIN_US;
    for (int s = 0; atomic_load_explicit(&p->done, memory_order_acquire) < n; s++) {
        if ((s & 63) == 63 && bj_now_us() > until)
            break;
        cpu_relax();
    }
    pthread_mutex_lock(&p->lock);
    while (atomic_load_explicit(&p->done, memory_order_acquire) < n)
        pthread_cond_wait(&p->done_cv, &p->lock);
    pthread_mutex_unlock(&p->lock);
}
