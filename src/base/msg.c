/* msg: see msg.h. */
#include "msg.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct bj_msg *bj_msg_new(int kind, int tag, size_t head, const void *payload, size_t len)
{
    struct bj_msg *m = malloc(sizeof *m + head + len + 1);
    if (!m)
        return NULL;
    atomic_init(&m->refs, 1);
    m->kind = kind;
    m->tag = tag;
    m->head = head;
    m->len = len;
    m->release = NULL;
    if (payload)
        memcpy(m->data + head, payload, len);
    else
        memset(m->data + head, 0, len);
    m->data[head + len] = 0;
    return m;
}

void bj_msg_ref(struct bj_msg *m)
{
    int was = atomic_fetch_add(&m->refs, 1);
    assert(was > 0); /* nobody may revive a freed message */
    (void)was;
}

void bj_msg_unref(struct bj_msg *m)
{
    if (!m)
        return;
    int was = atomic_fetch_sub(&m->refs, 1);
    assert(was > 0);
    if (was == 1) {
        if (m->release)
            m->release(m);
        free(m);
    }
}

bool bj_msg_sole(struct bj_msg *m) { return atomic_load(&m->refs) == 1; }
