/* workpool: see workpool.h.
 *
 * One mutex guards two FIFO rings of fixed size (threads + queue slots each): the items waiting
 * and the items finished. in_flight counts submitted items not yet collected, so both rings can
 * never overflow: an item is in at most one of them, or running. */
#include "workpool.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct item {
    bj_work_fn fn;
    void *arg;
};

struct ring {
    struct item *v;
    int head, n;
};

struct bj_workpool {
    struct bj_workpool_params p;
    char name[12];
    int cap;                /* threads + queue: the most items in flight */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct ring todo, done;
    int in_flight;
    bool stop;
    pthread_t *tids;
    int n_started;
};

struct bj_workpool_params bj_workpool_params_default(void)
{
    return (struct bj_workpool_params){.threads = 2, .queue = 4, .name = "bj-work"};
}

static void ring_push(struct ring *r, int cap, struct item it)
{
    assert(r->n < cap);
    r->v[(r->head + r->n) % cap] = it;
    r->n++;
}

static struct item ring_pop(struct ring *r, int cap)
{
    assert(r->n > 0);
    struct item it = r->v[r->head];
    r->head = (r->head + 1) % cap;
    r->n--;
    return it;
}

static void *worker_main(void *arg)
{
    struct bj_workpool *p = arg;
    char name[16];
    snprintf(name, sizeof name, "%s", p->name);
    pthread_setname_np(pthread_self(), name);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->todo.n == 0)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->stop)
            break;
        struct item it = ring_pop(&p->todo, p->cap);
        pthread_mutex_unlock(&p->mu);
        it.fn(it.arg);
        pthread_mutex_lock(&p->mu);
        ring_push(&p->done, p->cap, it);
        pthread_mutex_unlock(&p->mu);
        if (p->p.wake)
            p->p.wake(p->p.wake_ud);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

struct bj_workpool *bj_workpool_new(const struct bj_workpool_params *params, char *err, size_t errlen)
{
    if (params->threads < 1 || params->threads > 64 || params->queue < 0 || params->queue > 4096) {
        snprintf(err, errlen, "workpool: threads must be 1..64 and queue 0..4096 (got %d, %d)", params->threads,
                 params->queue);
        return NULL;
    }
    struct bj_workpool *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->p = *params;
    snprintf(p->name, sizeof p->name, "%.10s", params->name ? params->name : "bj-work");
    p->cap = params->threads + params->queue;
    p->todo.v = calloc((size_t)p->cap, sizeof *p->todo.v);
    p->done.v = calloc((size_t)p->cap, sizeof *p->done.v);
    p->tids = calloc((size_t)params->threads, sizeof *p->tids);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (!p->todo.v || !p->done.v || !p->tids) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (; p->n_started < params->threads; p->n_started++) {
        int rc = pthread_create(&p->tids[p->n_started], NULL, worker_main, p);
        if (rc) {
            snprintf(err, errlen, "workpool: cannot start a thread: %s", strerror(rc));
            goto fail;
        }
    }
    return p;
fail:
    bj_workpool_free(p);
    return NULL;
}

int bj_workpool_submit(struct bj_workpool *p, bj_work_fn fn, void *arg)
{
    pthread_mutex_lock(&p->mu);
    if (p->in_flight >= p->cap) {
        pthread_mutex_unlock(&p->mu);
        return -EAGAIN;
    }
    p->in_flight++;
    ring_push(&p->todo, p->cap, (struct item){fn, arg});
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void *bj_workpool_done(struct bj_workpool *p)
{
    void *arg = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->done.n > 0) {
        arg = ring_pop(&p->done, p->cap).arg;
        p->in_flight--;
        assert(p->in_flight >= 0);
    }
    pthread_mutex_unlock(&p->mu);
    return arg;
}

int bj_workpool_in_flight(struct bj_workpool *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->in_flight;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void bj_workpool_free(struct bj_workpool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_started; i++)
        pthread_join(p->tids[i], NULL);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p->tids);
    free(p->todo.v);
    free(p->done.v);
    free(p);
}
