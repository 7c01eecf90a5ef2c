/* pool: a few persistent worker threads that run one function over a list of items.
 *
 * The engine's per-step parallel work (CPU sampling of every brain, the parallel schedule's
 * decodes) used to create and join a thread per item every step; the pool's threads are made
 * once, sleep on a condition variable between runs and claim items from a shared counter, so a
 * run costs one wake-up instead of thread creations. The calling thread works too (a pool of W
 * workers runs W + 1 items at once), and it waits for the items still running, not for workers
 * that have not woken up yet: those find nothing left and sleep again.
 *
 * Threads: new/free by the owner; bj_pool_run from one thread at a time (the owner's), never
 * from inside fn. fn runs on the caller and on the workers concurrently. */
#ifndef BJ_POOL_H
#define BJ_POOL_H

struct bj_pool;

/* A pool of n_workers threads (0 is valid: every run then happens on the caller). NULL when
 * out of memory; fewer workers than asked when threads cannot be made. */
struct bj_pool *bj_pool_new(int n_workers);
void bj_pool_free(struct bj_pool *p);

/* Workers the pool really has. */
int bj_pool_workers(const struct bj_pool *p);

/* Runs fn(items[k]) for every k < n, at most `width` at once (the caller included; width < 1
 * counts as 1, width above workers + 1 as workers + 1). Returns when every item is done. */
void bj_pool_run(struct bj_pool *p, void (*fn)(void *), void **items, int n, int width);

#endif
