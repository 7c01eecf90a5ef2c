/* libFuzzer target for the peer wire input path: the stream splitter and the validator.
 *
 * The first input byte picks how the rest is cut into reads (1..256 bytes), so glued and split
 * objects are explored. Every object the splitter hands out is parsed; every accepted message is
 * encoded again (and split when long) and must parse back with the same fields. Checked: no
 * crash, no leak (LeakSanitizer), the splitter never holds more than its limit. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

#define LIMIT 1024 /* small, so that inputs of libFuzzer's default 4096 bytes reach the oversized path */

static int reparse(void *ud, const char *buf, size_t len)
{
    const struct bj_wire_msg *orig = ud;
    struct bj_wire_msg m;
    char why[128];
    if (len > BJ_WIRE_SEND_MAX || buf[len - 1] != '\n' || bj_wire_parse(buf, len - 1, &m, why, sizeof why) != 0) {
        fprintf(stderr, "re-encoded message rejected (%s): %.*s\n", why, (int)len, buf);
        abort();
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)buf[i] >= 0x80)
            abort();
    if (m.type != orig->type || strcmp(m.sender_id, orig->sender_id) != 0 || strcmp(m.brain, orig->brain) != 0 ||
        strcmp(m.error, orig->error) != 0)
        abort();
    bj_wire_msg_clear(&m);
    return 0;
}

static int on_object(void *ud, const char *obj, size_t len)
{
    (void)ud;
    if (len > LIMIT)
        abort();
    struct bj_wire_msg m;
    char why[128];
    size_t body;
    char mac[BJ_WIRE_MAC_HEX + 1];
    (void)bj_wire_find_mac(obj, len, &body, mac);
    if (bj_wire_parse(obj, len, &m, why, sizeof why) == 0) {
        int64_t seq = 1;
        struct bj_wire_msg e = m;
        e.part = e.parts = 0;
        if (bj_wire_encode_split(&e, BJ_WIRE_SEND_MAX, &seq, reparse, &m) < 0)
            abort();
        bj_wire_msg_clear(&m);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] + 1;
    data++, size--;
    struct bj_wire_splitter *s = bj_wire_splitter_new(LIMIT);
    for (size_t off = 0; off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        bj_wire_splitter_feed(s, (const char *)data + off, n, on_object, NULL);
        if (bj_wire_splitter_buffered(s) > LIMIT)
            abort();
    }
    bj_wire_splitter_free(s);
    return 0;
}
