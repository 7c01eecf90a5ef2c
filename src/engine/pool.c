/* pool: see pool.h. */
#include "pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

struct worker {
    struct bj_pool *pool;
    int index;
    pthread_t thread;
};

struct bj_pool {
    pthread_mutex_t lock;
    pthread_cond_t go, done;
    struct worker *workers;
    int n_workers;
    /* The current run (written under lock before gen is bumped; read by workers after). */
    uint64_t gen;
    void (*fn)(void *);
    void **items;
    int n, width;
    atomic_int next;  /* next item to take */
    int pending;      /* workers that have not finished the current run */
    bool quit;
};

static void take_items(struct bj_pool *p)
{
    for (int k; (k = atomic_fetch_add(&p->next, 1)) < p->n;)
        p->fn(p->items[k]);
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
        bool mine = w->index < p->width - 1; /* the caller is one of the width */
        pthread_mutex_unlock(&p->lock);
        if (mine)
            take_items(p);
        pthread_mutex_lock(&p->lock);
        if (--p->pending == 0)
            pthread_cond_signal(&p->done);
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
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next, 0);
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
    pthread_cond_destroy(&p->done);
    free(p);
}

int bj_pool_workers(const struct bj_pool *p) { return p ? p->n_workers : 0; }

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
    p->fn = fn;
    p->items = items;
    p->n = n;
    p->width = width;
    atomic_store(&p->next, 0);
    p->pending = p->n_workers;
    p->gen++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->lock);
    take_items(p);
    pthread_mutex_lock(&p->lock);
    while (p->pending > 0)
        pthread_cond_wait(&p->done, &p->lock);
    pthread_mutex_unlock(&p->lock);
}
