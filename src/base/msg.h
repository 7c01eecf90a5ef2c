/* msg: one reference-counted message, shared by everyone who holds it and freed when the last
 * holder lets go. The bus queues an event in one for all its subscriptions; the web server queues
 * one encoded WebSocket frame for all its clients. The payload sits after `head` bytes of
 * headroom (libwebsockets writes its frame header there) and is followed by a NUL; it is aligned
 * for any type when head is 0.
 *
 * Threads: holders on any threads; the count is atomic. The payload is read-only once shared
 * (bj_msg_sole says when the caller is the only holder and may take what the payload owns). */
#ifndef BJ_MSG_H
#define BJ_MSG_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

struct bj_msg {
    atomic_int refs;
    int kind;                           /* the owner's: what the payload is */
    int tag;                            /* the owner's: whom it is about (a brain's index, -1: none) */
    size_t head, len;                   /* headroom, then len payload bytes */
    void (*release)(struct bj_msg *m);  /* frees what the payload owns; NULL: nothing */
    alignas(max_align_t) unsigned char data[];
};

/* A message with one reference: len bytes copied from payload (zeros when payload is NULL) after
 * head bytes of headroom. NULL when out of memory. */
struct bj_msg *bj_msg_new(int kind, int tag, size_t head, const void *payload, size_t len);
static inline void *bj_msg_payload(struct bj_msg *m) { return m->data + m->head; }
void bj_msg_ref(struct bj_msg *m);
/* Drops one reference; the last runs release and frees. NULL is fine. */
void bj_msg_unref(struct bj_msg *m);
/* True when the caller holds the only reference. */
bool bj_msg_sole(struct bj_msg *m);

#endif
