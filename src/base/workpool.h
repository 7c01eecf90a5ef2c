/* workpool: a small, bounded pool of worker threads for slow work that must not run on an event
 * loop (the web server's password hashing: Argon2id takes 150-300 ms a try).
 *
 * The owner submits (fn, arg) pairs; a worker runs fn(arg) and puts arg on the finished list, then
 * calls the wake callback so the owner's loop knows to collect it with bj_workpool_done(). The
 * pool never blocks the submitter: past `threads + queue` items in flight (queued, running, or
 * finished and not yet collected) bj_workpool_submit() refuses at once (-EAGAIN), so the owner can
 * answer "busy" instead of piling work up. The pool never frees an arg: the owner owns them all,
 * before, during (only fn touches it then) and after.
 *
 * Threads: submit and done from the owner's thread (one thread at a time); fn and wake run on a
 * worker. Workers run at the process's own priority: a lowered one (nice +10, SCHED_BATCH) made
 * things worse, not better: a worker preempted while it held a kernel lock the loop needed too
 * (the address space's, in munmap of Argon2id's 64 MiB) stalled the web loop for 200 ms and more.
 *
 * Life cycle: bj_workpool_params_default(), bj_workpool_new(), bj_workpool_free() (waits for the
 * running items; items not started are not run: the owner still owns their args). */
#ifndef BJ_WORKPOOL_H
#define BJ_WORKPOOL_H

#include <stddef.h>

typedef void (*bj_work_fn)(void *arg);

struct bj_workpool_params {
    int threads;                 /* workers (default 2) */
    int queue;                   /* items waiting beyond the running ones (default 4) */
    const char *name;            /* thread name prefix, at most 10 characters ("bj-work") */
    void (*wake)(void *ud);      /* optional: called on a worker after each item finishes */
    void *wake_ud;
};
struct bj_workpool_params bj_workpool_params_default(void);

struct bj_workpool;

/* Starts the workers. NULL with err on failure. */
struct bj_workpool *bj_workpool_new(const struct bj_workpool_params *p, char *err, size_t errlen);
/* Hands fn(arg) to a worker. 0, or -EAGAIN when the pool is full (nothing happened). */
int bj_workpool_submit(struct bj_workpool *p, bj_work_fn fn, void *arg);
/* One finished item's arg (oldest first), or NULL when none is finished. */
void *bj_workpool_done(struct bj_workpool *p);
/* Items submitted and not yet collected. */
int bj_workpool_in_flight(struct bj_workpool *p);
/* Stops the workers after their current item and frees the pool. Args of items not run or not
 * collected are simply forgotten (the owner tracks what it submitted). NULL is fine. */
void bj_workpool_free(struct bj_workpool *p);

#endif
