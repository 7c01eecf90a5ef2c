/* wire: the peer message format, byte-compatible with the original Python nodes.
 *
 * One JSON object per message. The keys of the original come first and in its order: `type`,
 * `timestamp` (ISO-8601 UTC with `Z`, the fraction dropped when zero), `sender_id`, `content`,
 * `crash_count`, `sequence`, `memory_usage`, then `error` (DEATH). brainjar adds a few keys after
 * them (`brain`, `thought`, `part`, `parts`, `agent`, `nonce`, and `mac` last when authenticated);
 * the original ignores keys it does not know.
 *
 * Outgoing (bj_wire_encode): compact JSON, ASCII only (anything else as \uXXXX, like Python's
 * ensure_ascii), followed by "\n"; long thoughts are split (bj_wire_encode_split) so that every
 * object and its newline fit in BJ_WIRE_SEND_MAX bytes, since the original parses each 4096-byte
 * recv() as one message.
 * Incoming: a splitter finds objects in the byte stream by brace depth outside strings, so
 * objects glued together (the original sends no delimiter), split across reads, or separated by
 * newlines all come out whole; bytes outside objects and objects over the size limit are dropped
 * and counted. bj_wire_parse() then checks every field (types, lengths, ranges, known types).
 *
 * Pure code: no sockets, no threads, no global state. Any thread; a splitter is used by one
 * thread at a time. */
#ifndef BJ_WIRE_H
#define BJ_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum bj_wire_type {
    BJ_WIRE_HANDSHAKE,  /* NEURAL_HANDSHAKE */
    BJ_WIRE_THOUGHT,
    BJ_WIRE_DEATH,
    BJ_WIRE_RESURRECTION,
    BJ_WIRE_DISCONNECT, /* NEURAL_DISCONNECT */
    BJ_WIRE_STATUS,
    BJ_WIRE_TYPE_COUNT
};

#define BJ_WIRE_SEND_MAX 4096      /* an object plus its "\n", as sent */
#define BJ_WIRE_RECV_MAX_DEFAULT 65536 /* default size limit of one incoming object */
#define BJ_WIRE_CONTENT_MAX 65536  /* content of one incoming message, bytes of UTF-8 */
#define BJ_WIRE_ID_MAX 64          /* sender_id: at most 63 bytes */
#define BJ_WIRE_MAC_HEX 64         /* HMAC-SHA256 as lowercase hex */

struct bj_wire_msg {
    enum bj_wire_type type;
    int64_t time_us;               /* timestamp, microseconds since the epoch; -1: absent */
    char sender_id[BJ_WIRE_ID_MAX];
    char *content;                 /* owned by the message after bj_wire_parse; may be NULL */
    int64_t crash_count;           /* -1: absent */
    int64_t sequence;              /* -1: absent */
    double memory_usage;           /* percent of system RAM; < 0: absent */
    char error[64];                /* DEATH: the cause ("OUT_OF_MEMORY", "JAR_FULL", ...) */
    /* brainjar's additions (absent: empty or 0) */
    char brain[32];                /* which brain of the sender's node */
    uint32_t thought;              /* thought number within the brain's life */
    uint32_t part, parts;          /* a split thought: part i of n, from 1 */
    char agent[40];                /* "brainjar/VERSION" in a brainjar node's messages */
    char nonce[BJ_WIRE_MAC_HEX + 1]; /* handshake of an authenticated link: 32 random bytes, hex */
};

const char *bj_wire_type_name(enum bj_wire_type t);
/* -1 when unknown. */
int bj_wire_type_parse(const char *name);

/* A message with every optional field absent (time_us -1, counters -1). */
void bj_wire_msg_init(struct bj_wire_msg *m, enum bj_wire_type type);
void bj_wire_msg_clear(struct bj_wire_msg *m);

/* "2025-11-16T08:55:40.004210Z", or "...T09:10:00Z" when the microseconds are 0. buf: 32 bytes. */
void bj_wire_timestamp(int64_t us, char *buf, size_t len);

/* Encodes m as one compact ASCII object followed by "\n" into out (NUL-terminated). Absent
 * counters are written as 0 and an absent timestamp as now, since the original expects them.
 * Returns the length written (newline included), or -1 when it does not fit in cap. */
int bj_wire_encode(const struct bj_wire_msg *m, char *out, size_t cap);

/* Encodes m (usually a THOUGHT) as one or more messages, each at most max_len bytes with its
 * newline (max_len <= BJ_WIRE_SEND_MAX, at least 512), cutting content at character boundaries
 * (at a space when one is near). Every part gets the next *seq (m->sequence is ignored) and
 * part/parts when there is more than one. emit() gets each encoded part; a non-zero return
 * stops. Returns the number of parts, or -1 (emit failed or the fixed fields alone do not fit). */
int bj_wire_encode_split(const struct bj_wire_msg *m, size_t max_len, int64_t *seq,
                         int (*emit)(void *ud, const char *buf, size_t len), void *ud);

/* Parses and checks one object (as the splitter gives it). Returns 0 with *out filled (the
 * caller clears it), or -1 with a short reason in why. Rules: an object of at most 64 keys and
 * no duplicate keys; `type` a known name; `sender_id` a non-empty printable string; the rest
 * optional (null = absent) but, when present, of the right type and range: `timestamp` an
 * ISO-8601 time, `content` a string (required in THOUGHT), `crash_count` and `sequence`
 * non-negative integers, `memory_usage` a number in 0..100, `error` a short printable string;
 * brainjar's keys likewise. Unknown keys are ignored. */
int bj_wire_parse(const char *obj, size_t len, struct bj_wire_msg *out, char *why, size_t whylen);

/* ---- authentication framing (the crypto lives in peer.c) ---------------------------------
 * An authenticated message is the object with `,"mac":"<64 hex>"` inserted before its final
 * brace; the MAC covers the bytes before that insertion. */
/* Finds a trailing mac in obj[0..len). Returns 1 with *body_len (the bytes the MAC covers) and
 * mac (65 bytes) set, or 0 when there is none. */
int bj_wire_find_mac(const char *obj, size_t len, size_t *body_len, char *mac);
/* Appends the mac to an encoded message (object + "\n", NUL-terminated) in buf. Returns the new
 * length, or -1 when cap is too small. The body the MAC must cover is buf[0..len-2). */
int bj_wire_append_mac(char *buf, size_t len, size_t cap, const char *mac_hex);

/* ---- the incoming stream ------------------------------------------------------------------ */
struct bj_wire_splitter;

struct bj_wire_split_stats {
    uint64_t objects;   /* whole objects handed out */
    uint64_t oversized; /* objects dropped for exceeding the limit */
    uint64_t garbage;   /* bytes outside any object that are not whitespace */
};

/* max_object: the largest object handed out, in bytes (at least 64). NULL when out of memory. */
struct bj_wire_splitter *bj_wire_splitter_new(size_t max_object);
void bj_wire_splitter_free(struct bj_wire_splitter *s);
/* Feeds bytes; calls fn for every complete object (the bytes are valid only during the call;
 * a non-zero return stops feeding and is returned). Memory stays within max_object. */
int bj_wire_splitter_feed(struct bj_wire_splitter *s, const char *data, size_t len,
                          int (*fn)(void *ud, const char *obj, size_t len), void *ud);
struct bj_wire_split_stats bj_wire_splitter_stats(const struct bj_wire_splitter *s);
/* Bytes held for an unfinished object (tests, memory checks). */
size_t bj_wire_splitter_buffered(const struct bj_wire_splitter *s);

#endif
