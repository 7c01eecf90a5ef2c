/* peer_conf: the peer links' settings and address parsing (peer.h), kept apart from the links
 * themselves so that the configuration layer (and its fuzzer) needs no sockets or crypto. */
#include <string.h>

#include "peer.h"
#include "util.h"
#include "wire.h"

struct bj_peer_params bj_peer_params_default(void)
{
    struct bj_peer_params p;
    memset(&p, 0, sizeof p);
    bj_strlcpy(p.listen_host, "127.0.0.1", sizeof p.listen_host);
    p.port = 8888;
    p.exports = true;
    p.max_links = 256;
    p.queue_bytes = 64u << 10;
    p.queue_total = 4u << 20;
    p.max_silent = 32;
    p.max_object = BJ_WIRE_RECV_MAX_DEFAULT;
    p.rate_msgs = 2000;
    p.keepalive_ms = 2000;
    p.dead_ms = 10000;
    p.backoff_min_ms = 250;
    p.backoff_max_ms = 30000;
    p.legacy_gap_ms = 20;
    p.observe_max = 1000;
    return p;
}

int bj_peer_parse_addr(const char *s, struct bj_peer_dial *d)
{
    memset(d, 0, sizeof *d);
    const char *colon;
    size_t hl;
    const char *h = s;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(end - h);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - s);
    }
    long port;
    if (hl == 0 || hl >= sizeof d->host || bj_parse_long(colon + 1, 1, 65535, &port))
        return -1;
    memcpy(d->host, h, hl);
    d->host[hl] = '\0';
    d->port = (int)port;
    return 0;
}
