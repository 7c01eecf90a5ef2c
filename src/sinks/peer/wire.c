/* wire: see wire.h. The encoder writes bytes by hand (jansson cannot promise the original's key
 * order and escaping); the parser uses jansson and then checks each field. */
#include "wire.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

static const char *const k_types[BJ_WIRE_TYPE_COUNT] = {
    "NEURAL_HANDSHAKE", "THOUGHT", "DEATH", "RESURRECTION", "NEURAL_DISCONNECT", "STATUS",
};

const char *bj_wire_type_name(enum bj_wire_type t)
{
    return (unsigned)t < BJ_WIRE_TYPE_COUNT ? k_types[t] : "UNKNOWN";
}

int bj_wire_type_parse(const char *name)
{
    for (int i = 0; i < BJ_WIRE_TYPE_COUNT; i++)
        if (strcmp(name, k_types[i]) == 0)
            return i;
    return -1;
}

void bj_wire_msg_init(struct bj_wire_msg *m, enum bj_wire_type type)
{
    memset(m, 0, sizeof *m);
    m->type = type;
    m->time_us = -1;
    m->crash_count = -1;
    m->sequence = -1;
    m->memory_usage = -1;
}

void bj_wire_msg_clear(struct bj_wire_msg *m)
{
    free(m->content);
    m->content = NULL;
}

void bj_wire_timestamp(int64_t us, char *buf, size_t len)
{
    time_t s = (time_t)(us / 1000000);
    long frac = (long)(us % 1000000);
    if (frac < 0) {
        frac += 1000000;
        s--;
    }
    struct tm tm;
    gmtime_r(&s, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    if (frac)
        snprintf(buf + n, len - n, ".%06ldZ", frac);
    else
        snprintf(buf + n, len - n, "Z");
}

/* ---- encoding ------------------------------------------------------------------------------ */

/* The next code point of s[0..len); invalid or truncated sequences give U+FFFD for one byte. */
static size_t next_cp(const unsigned char *s, size_t len, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, min;
    if ((c & 0xE0) == 0xC0) n = 2, v = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) n = 3, v = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) n = 4, v = c & 0x07, min = 0x10000;
    else goto bad;
    if (n > len)
        goto bad;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            goto bad;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
        goto bad;
    *cp = v;
    return n;
bad:
    *cp = 0xFFFD;
    return 1;
}

/* Writes code point cp as Python's json.dumps(ensure_ascii=True) does; returns the length
 * (at most 12). out may be NULL to measure. */
static size_t escape_cp(uint32_t cp, char *out)
{
    char tmp[16];
    char *o = out ? out : tmp;
    switch (cp) {
    case '"': memcpy(o, "\\\"", 2); return 2;
    case '\\': memcpy(o, "\\\\", 2); return 2;
    case '\n': memcpy(o, "\\n", 2); return 2;
    case '\r': memcpy(o, "\\r", 2); return 2;
    case '\t': memcpy(o, "\\t", 2); return 2;
    case '\b': memcpy(o, "\\b", 2); return 2;
    case '\f': memcpy(o, "\\f", 2); return 2;
    default: break;
    }
    if (cp >= 0x20 && cp < 0x7F) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x10000) {
        snprintf(tmp, sizeof tmp, "\\u%04x", (unsigned)cp);
        if (out)
            memcpy(out, tmp, 6);
        return 6;
    }
    uint32_t v = cp - 0x10000;
    snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", (unsigned)(0xD800 + (v >> 10)), (unsigned)(0xDC00 + (v & 0x3FF)));
    if (out)
        memcpy(out, tmp, 12);
    return 12;
}

struct sb {
    char *buf;
    size_t len, cap;
    bool over;
};

static void sb_put(struct sb *b, const char *s, size_t n)
{
    if (b->over || b->len + n + 1 > b->cap) {
        b->over = true;
        return;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void sb_str(struct sb *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_fmt(struct sb *b, const char *fmt, long long v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, fmt, v);
    sb_put(b, tmp, (size_t)n);
}

/* A JSON string of s[0..len), escaped. */
static void sb_json(struct sb *b, const char *s, size_t len)
{
    sb_put(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s;
    char esc[16];
    for (size_t i = 0; i < len && !b->over;) {
        uint32_t cp;
        i += next_cp(p + i, len - i, &cp);
        sb_put(b, esc, escape_cp(cp, esc));
    }
    sb_put(b, "\"", 1);
}

static void sb_key(struct sb *b, const char *key, bool first)
{
    if (!first)
        sb_put(b, ",", 1);
    sb_put(b, "\"", 1);
    sb_str(b, key);
    sb_put(b, "\":", 2);
}

/* Encodes with the content taken from content[0..clen). */
static int encode(const struct bj_wire_msg *m, const char *content, size_t clen, char *out, size_t cap)
{
    struct sb b = {.buf = out, .cap = cap};
    char ts[40];
    int64_t t = m->time_us;
    if (t < 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        t = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    }
    bj_wire_timestamp(t, ts, sizeof ts);
    sb_put(&b, "{", 1);
    sb_key(&b, "type", true);
    sb_json(&b, bj_wire_type_name(m->type), strlen(bj_wire_type_name(m->type)));
    sb_key(&b, "timestamp", false);
    sb_json(&b, ts, strlen(ts));
    sb_key(&b, "sender_id", false);
    sb_json(&b, m->sender_id, strlen(m->sender_id));
    sb_key(&b, "content", false);
    sb_json(&b, content ? content : "", content ? clen : 0);
    sb_key(&b, "crash_count", false);
    sb_fmt(&b, "%lld", m->crash_count < 0 ? 0 : m->crash_count);
    sb_key(&b, "sequence", false);
    sb_fmt(&b, "%lld", m->sequence < 0 ? 0 : m->sequence);
    sb_key(&b, "memory_usage", false);
    sb_fmt(&b, "%lld", m->memory_usage < 0 ? 0 : (long long)llround(m->memory_usage));
    if (m->error[0] || m->type == BJ_WIRE_DEATH) {
        sb_key(&b, "error", false);
        sb_json(&b, m->error, strlen(m->error));
    }
    if (m->brain[0]) {
        sb_key(&b, "brain", false);
        sb_json(&b, m->brain, strlen(m->brain));
    }
    if (m->thought) {
        sb_key(&b, "thought", false);
        sb_fmt(&b, "%lld", m->thought);
    }
    if (m->parts) {
        sb_key(&b, "part", false);
        sb_fmt(&b, "%lld", m->part);
        sb_key(&b, "parts", false);
        sb_fmt(&b, "%lld", m->parts);
    }
    if (m->agent[0]) {
        sb_key(&b, "agent", false);
        sb_json(&b, m->agent, strlen(m->agent));
    }
    if (m->nonce[0]) {
        sb_key(&b, "nonce", false);
        sb_json(&b, m->nonce, strlen(m->nonce));
    }
    sb_put(&b, "}\n", 2);
    return b.over ? -1 : (int)b.len;
}

int bj_wire_encode(const struct bj_wire_msg *m, char *out, size_t cap)
{
    return encode(m, m->content, m->content ? strlen(m->content) : 0, out, cap);
}

int bj_wire_encode_split(const struct bj_wire_msg *m, size_t max_len, int64_t *seq,
                         int (*emit)(void *ud, const char *buf, size_t len), void *ud)
{
    if (max_len > BJ_WIRE_SEND_MAX || max_len < 512)
        return -1;
    char buf[BJ_WIRE_SEND_MAX + 1];
    struct bj_wire_msg w = *m;
    const char *c = m->content ? m->content : "";
    size_t clen = strlen(c);
    /* The fixed part at its widest: the largest sequence and part numbers it could carry. */
    w.sequence = INT64_MAX;
    w.part = w.parts = 4294967295u;
    int fixed = encode(&w, "", 0, buf, sizeof buf);
    if (fixed < 0 || (size_t)fixed + 16 > max_len)
        return -1;
    size_t budget = max_len - (size_t)fixed;

    /* Cut points: each piece's escaped length fits the budget. */
    size_t *cuts = NULL, n_cuts = 0, cap_cuts = 0;
    size_t start = 0, used = 0, last_space = 0;
    const unsigned char *p = (const unsigned char *)c;
    for (size_t i = 0; i < clen;) {
        uint32_t cp;
        size_t n = next_cp(p + i, clen - i, &cp);
        size_t e = escape_cp(cp, NULL);
        if (used + e > budget) {
            /* Cut after a space in the last quarter of the piece, else here. */
            size_t cut = last_space > start && last_space - start >= (i - start) * 3 / 4 ? last_space : i;
            if (n_cuts == cap_cuts) {
                size_t nc = cap_cuts ? cap_cuts * 2 : 8;
                size_t *t = realloc(cuts, nc * sizeof *t);
                if (!t) {
                    free(cuts);
                    return -1;
                }
                cuts = t, cap_cuts = nc;
            }
            /* Re-measure what moves into the next piece; cut here if that would not fit. */
            used = 0;
            for (size_t j = cut; j < i;) {
                uint32_t cq;
                j += next_cp(p + j, i - j, &cq);
                used += escape_cp(cq, NULL);
            }
            if (used + e > budget)
                cut = i, used = 0;
            cuts[n_cuts++] = cut;
            start = cut;
            last_space = 0;
        }
        used += e;
        i += n;
        if (cp == ' ')
            last_space = i;
    }
    size_t parts = n_cuts + 1;
    int rc = (int)parts;
    size_t from = 0;
    for (size_t k = 0; k < parts; k++) {
        size_t to = k < n_cuts ? cuts[k] : clen;
        w = *m;
        w.sequence = (*seq)++;
        if (parts > 1)
            w.part = (uint32_t)(k + 1), w.parts = (uint32_t)parts;
        int len = encode(&w, c + from, to - from, buf, sizeof buf);
        if (len < 0 || (size_t)len > max_len || emit(ud, buf, (size_t)len)) {
            rc = -1;
            break;
        }
        from = to;
    }
    free(cuts);
    return rc;
}

/* ---- authentication framing ------------------------------------------------------------------ */

#define MAC_KEY ",\"mac\":\""

int bj_wire_find_mac(const char *obj, size_t len, size_t *body_len, char *mac)
{
    /* ,"mac":"<64 hex>"}  =  8 + 64 + 2 bytes */
    size_t tail = strlen(MAC_KEY) + BJ_WIRE_MAC_HEX + 2;
    if (len < tail + 1)
        return 0;
    const char *t = obj + len - tail;
    if (memcmp(t, MAC_KEY, strlen(MAC_KEY)) != 0 || memcmp(obj + len - 2, "\"}", 2) != 0)
        return 0;
    const char *h = t + strlen(MAC_KEY);
    for (int i = 0; i < BJ_WIRE_MAC_HEX; i++)
        if (!isxdigit((unsigned char)h[i]))
            return 0;
    memcpy(mac, h, BJ_WIRE_MAC_HEX);
    mac[BJ_WIRE_MAC_HEX] = '\0';
    *body_len = (size_t)(t - obj);
    return 1;
}

int bj_wire_append_mac(char *buf, size_t len, size_t cap, const char *mac_hex)
{
    /* buf ends with "}\n" */
    if (len < 2 || buf[len - 2] != '}' || buf[len - 1] != '\n' || strlen(mac_hex) != BJ_WIRE_MAC_HEX)
        return -1;
    size_t add = strlen(MAC_KEY) + BJ_WIRE_MAC_HEX + 1;
    if (len + add + 1 > cap)
        return -1;
    char *o = buf + len - 2;
    memcpy(o, MAC_KEY, strlen(MAC_KEY));
    o += strlen(MAC_KEY);
    memcpy(o, mac_hex, BJ_WIRE_MAC_HEX);
    o += BJ_WIRE_MAC_HEX;
    memcpy(o, "\"}\n", 4);
    return (int)(len + add);
}

/* ---- parsing ------------------------------------------------------------------------------- */

static bool printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7F)
            return false;
    return true;
}

static bool valid_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return false;
    return true;
}

static int parse_num(const char **p, int digits, int *out)
{
    int v = 0;
    for (int i = 0; i < digits; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += digits;
    *out = v;
    return 0;
}

/* YYYY-MM-DDTHH:MM:SS[.f{1,9}][Z|+00:00|-00:00] (Python's isoformat, with or without the Z). */
static int parse_time(const char *s, int64_t *us)
{
    struct tm tm = {0};
    int y, mo, d, h, mi, sec;
    const char *p = s;
    if (parse_num(&p, 4, &y) || *p++ != '-' || parse_num(&p, 2, &mo) || *p++ != '-' || parse_num(&p, 2, &d) ||
        (*p != 'T' && *p != ' ') || !*p++ || parse_num(&p, 2, &h) || *p++ != ':' || parse_num(&p, 2, &mi) ||
        *p++ != ':' || parse_num(&p, 2, &sec))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || y < 1970)
        return -1;
    long frac = 0;
    if (*p == '.') {
        p++;
        int n = 0;
        long scale = 100000;
        while (isdigit((unsigned char)*p)) {
            if (n < 6)
                frac += (*p - '0') * scale, scale /= 10;
            p++;
            if (++n > 9)
                return -1;
        }
        if (n == 0)
            return -1;
    }
    if (*p == 'Z')
        p++;
    else if (strcmp(p, "+00:00") == 0 || strcmp(p, "-00:00") == 0)
        p += 6;
    if (*p)
        return -1;
    tm.tm_year = y - 1900, tm.tm_mon = mo - 1, tm.tm_mday = d;
    tm.tm_hour = h, tm.tm_min = mi, tm.tm_sec = sec;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *us = (int64_t)t * 1000000 + frac;
    return 0;
}

#define FAIL(...) do { snprintf(why, whylen, __VA_ARGS__); goto fail; } while (0)

/* A string field: absent/null leaves dst alone; returns -1 when of the wrong type or too long. */
static int get_str(json_t *o, const char *key, char *dst, size_t cap, bool *present)
{
    json_t *v = json_object_get(o, key);
    *present = false;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v) || json_string_length(v) >= cap || strlen(json_string_value(v)) != json_string_length(v))
        return -1;
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    *present = true;
    return 0;
}

static int get_int(json_t *o, const char *key, int64_t min, int64_t max, int64_t *dst)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return -1;
    json_int_t i = json_integer_value(v);
    if (i < min || i > max)
        return -1;
    *dst = i;
    return 0;
}

int bj_wire_parse(const char *obj, size_t len, struct bj_wire_msg *out, char *why, size_t whylen)
{
    bj_wire_msg_init(out, BJ_WIRE_STATUS);
    json_error_t jerr;
    json_t *o = json_loadb(obj, len, JSON_REJECT_DUPLICATES, &jerr);
    bool have;
    char tmp[64];
    int64_t v;
    if (!o)
        FAIL("not JSON: %s", jerr.text);
    if (!json_is_object(o))
        FAIL("not an object");
    if (json_object_size(o) > 64)
        FAIL("too many keys");

    if (get_str(o, "type", tmp, sizeof tmp, &have) || !have)
        FAIL("no type");
    int t = bj_wire_type_parse(tmp);
    if (t < 0)
        FAIL("unknown type");
    out->type = (enum bj_wire_type)t;

    if (get_str(o, "sender_id", out->sender_id, sizeof out->sender_id, &have) || !have || !out->sender_id[0] ||
        !printable(out->sender_id))
        FAIL("bad sender_id");

    if (get_str(o, "timestamp", tmp, 40, &have))
        FAIL("bad timestamp");
    if (have && parse_time(tmp, &out->time_us))
        FAIL("bad timestamp");

    json_t *c = json_object_get(o, "content");
    if (c && !json_is_null(c)) {
        if (!json_is_string(c) || json_string_length(c) > BJ_WIRE_CONTENT_MAX ||
            strlen(json_string_value(c)) != json_string_length(c))
            FAIL("bad content");
        if (!(out->content = strdup(json_string_value(c))))
            FAIL("out of memory");
    } else if (out->type == BJ_WIRE_THOUGHT) {
        FAIL("THOUGHT without content");
    }

    if (get_int(o, "crash_count", 0, 1000000000, &out->crash_count))
        FAIL("bad crash_count");
    if (get_int(o, "sequence", 0, INT64_C(1) << 53, &out->sequence))
        FAIL("bad sequence");
    json_t *mu = json_object_get(o, "memory_usage");
    if (mu && !json_is_null(mu)) {
        if (!json_is_number(mu))
            FAIL("bad memory_usage");
        double d = json_number_value(mu);
        if (!(d >= 0 && d <= 100))
            FAIL("bad memory_usage");
        out->memory_usage = d;
    }
    if (get_str(o, "error", out->error, sizeof out->error, &have) || (have && !printable(out->error)))
        FAIL("bad error");

    if (get_str(o, "brain", out->brain, sizeof out->brain, &have) || (have && !valid_name(out->brain)))
        FAIL("bad brain");
    v = 0;
    if (get_int(o, "thought", 0, 1000000000, &v))
        FAIL("bad thought");
    out->thought = (uint32_t)v;
    int64_t part = 0, parts = 0;
    if (get_int(o, "part", 1, 100000, &part) || get_int(o, "parts", 1, 100000, &parts) || (!part != !parts) ||
        part > parts)
        FAIL("bad part/parts");
    out->part = (uint32_t)part, out->parts = (uint32_t)parts;
    if (get_str(o, "agent", out->agent, sizeof out->agent, &have) || (have && !printable(out->agent)))
        FAIL("bad agent");
    if (get_str(o, "nonce", out->nonce, sizeof out->nonce, &have))
        FAIL("bad nonce");
    if (have) {
        if (strlen(out->nonce) != BJ_WIRE_MAC_HEX)
            FAIL("bad nonce");
        for (int i = 0; i < BJ_WIRE_MAC_HEX; i++)
            if (!isxdigit((unsigned char)out->nonce[i]))
                FAIL("bad nonce");
    }
    json_decref(o);
    return 0;
fail:
    json_decref(o);
    bj_wire_msg_clear(out);
    return -1;
}

/* ---- the splitter -------------------------------------------------------------------------- */

struct bj_wire_splitter {
    char *buf;
    size_t len, cap, max;
    uint64_t depth;  /* 0: between objects */
    bool in_str, esc, discard;
    struct bj_wire_split_stats st;
};

struct bj_wire_splitter *bj_wire_splitter_new(size_t max_object)
{
    struct bj_wire_splitter *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->max = max_object < 64 ? 64 : max_object;
    return s;
}

void bj_wire_splitter_free(struct bj_wire_splitter *s)
{
    if (!s)
        return;
    free(s->buf);
    free(s);
}

static bool put(struct bj_wire_splitter *s, char c)
{
    if (s->discard)
        return true;
    if (s->len == s->max) {
        /* Over the limit: drop what is held and skip to the object's end. */
        s->discard = true;
        s->st.oversized++;
        s->len = 0;
        if (s->cap > 4096) {
            free(s->buf);
            s->buf = NULL, s->cap = 0;
        }
        return true;
    }
    if (s->len == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 1024;
        if (nc > s->max)
            nc = s->max;
        char *b = realloc(s->buf, nc);
        if (!b)
            return false;
        s->buf = b, s->cap = nc;
    }
    s->buf[s->len++] = c;
    return true;
}

int bj_wire_splitter_feed(struct bj_wire_splitter *s, const char *data, size_t len,
                          int (*fn)(void *ud, const char *obj, size_t len), void *ud)
{
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (s->depth == 0) {
            if (c == '{') {
                s->depth = 1;
                s->in_str = s->esc = s->discard = false;
                s->len = 0;
                if (!put(s, c))
                    return -1;
            } else if (c != ' ' && c != '\n' && c != '\r' && c != '\t') {
                s->st.garbage++;
            }
            continue;
        }
        if (!put(s, c))
            return -1;
        if (s->in_str) {
            if (s->esc)
                s->esc = false;
            else if (c == '\\')
                s->esc = true;
            else if (c == '"')
                s->in_str = false;
            continue;
        }
        if (c == '"') {
            s->in_str = true;
        } else if (c == '{' || c == '[') {
            s->depth++;
        } else if ((c == '}' || c == ']') && --s->depth == 0) {
            bool whole = !s->discard;
            size_t n = s->len;
            s->len = 0;
            s->discard = false;
            if (whole) {
                s->st.objects++;
                int rc = fn(ud, s->buf, n);
                if (rc)
                    return rc;
            }
        }
    }
    return 0;
}

struct bj_wire_split_stats bj_wire_splitter_stats(const struct bj_wire_splitter *s) { return s->st; }

size_t bj_wire_splitter_buffered(const struct bj_wire_splitter *s) { return s->len; }
