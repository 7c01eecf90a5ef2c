/* config: see config.h. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *const k_modes[] = {"single", "matrix", "hive", "peer", "observer", "observed"};

const char *bj_mode_name(enum bj_mode m) { return k_modes[m]; }

/* min-p 0.05 at temperature 0.8, no top-k or top-p: a good guard against the vocabulary's tail
 * that costs little inside the decode graph (measured on an H100 with 3 brains: 0.96 of
 * llama-batched-bench, vs 0.93 with top-k 40 + top-p 0.95 + min-p; docs/BENCHMARKS.md). */
static struct bj_sampling default_sampling(void)
{
    return (struct bj_sampling){.temp = 0.8f, .top_p = 1.0f, .min_p = 0.05f, .top_k = 0,
                                .max_tokens = 96, .seed = 0};
}

void bj_config_defaults(struct bj_config *c)
{
    memset(c, 0, sizeof *c);
    c->mode = BJ_MODE_MATRIX;
    c->log_level = -1;
    bj_strlcpy(c->web_host, "127.0.0.1", sizeof c->web_host);
    c->web_port = 8095;
    c->web_auth = true;
    const char *xdg = getenv("XDG_DATA_HOME"), *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(c->spec.data_dir, sizeof c->spec.data_dir, "%s/brainjar", xdg);
    else
        snprintf(c->spec.data_dir, sizeof c->spec.data_dir, "%s/.local/share/brainjar", home && *home ? home : ".");
    c->spec.schedule = BJ_SCHED_AUTO;
    c->spec.n_gpu_layers = -1;
    c->spec.kv_type = GGML_TYPE_F16;
    c->spec.flash_attn = -1;
    c->spec.prefill_chunk = 64;
    c->spec.use_mmap = -1;
    c->spec.backend_sampling = -1;
    c->spec.split = bj_split_default();
    c->spec.pause_ms = 3000;
    c->spec.pace = BJ_PACE_DEFAULT;
    c->events = BJ_OUT_TEXT;
    c->spec.reserve_pct = 15.0;
    c->spec.brain_share_pct = 50.0;
    c->spec.headroom_gb = 2.0;
    c->spec.inject_step = 0;
    c->peer = bj_peer_params_default();
    c->spec.stall_timeout_ms = 60000;
    bj_ops_config_defaults(&c->ops);
    bj_config_apply_mode(c);
}

static struct bj_brain_cfg *add_brain(struct bj_config *c, const char *id, const char *role, double jar_gb)
{
    struct bj_brain_cfg *b = &c->spec.brains[c->spec.n_brains++];
    memset(b, 0, sizeof *b);
    bj_strlcpy(b->id, id, sizeof b->id);
    bj_strlcpy(b->role, role, sizeof b->role);
    b->jar_gb = jar_gb;
    b->sampling = default_sampling();
    b->remembers_deaths = b->knows_watched = b->others_exist = -1;
    return b;
}

void bj_config_apply_mode(struct bj_config *c)
{
    c->spec.n_brains = 0;
    if (c->mode == BJ_MODE_SINGLE) {
        add_brain(c, "SUBJECT", "single", 8.0);
        return;
    }
    if (c->mode == BJ_MODE_PEER || c->mode == BJ_MODE_OBSERVER || c->mode == BJ_MODE_OBSERVED) {
        /* One mind per node, as in the original; it watches every remote brain (peer, observer). */
        c->links = true;
        c->peer.listen = c->mode != BJ_MODE_OBSERVER;
        c->peer.exports = c->mode != BJ_MODE_OBSERVER; /* the watched node is told nothing */
        struct bj_brain_cfg *b = c->mode == BJ_MODE_PEER       ? add_brain(c, "SUBJECT", "peer", 8.0)
                                 : c->mode == BJ_MODE_OBSERVER ? add_brain(c, "OBSERVER", "observer", 10.0)
                                                               : add_brain(c, "SUBJECT", "subject", 8.0);
        if (c->mode != BJ_MODE_OBSERVED)
            b->watches_all = b->sees_lifecycle = true;
        return;
    }
    if (c->mode != BJ_MODE_MATRIX)
        return;
    /* The original's defaults: 8, 10 and 12 GB. */
    add_brain(c, "SUBJECT", "subject", 8.0);
    struct bj_brain_cfg *o = add_brain(c, "OBSERVER", "observer", 10.0);
    bj_strlcpy(o->watches[o->n_watches++], "SUBJECT", BJ_NAME_MAX);
    struct bj_brain_cfg *g = add_brain(c, "GOD", "god", 12.0);
    g->watches_all = true;
    g->sees_lifecycle = true;
}

/* The number of subjects one observer watches at most is BJ_MAX_WATCHES; the default pattern
 * gives one observer per 8 brains, so each watches about 7. */
int bj_config_apply_brains(struct bj_config *c, int n, int gods, int observers, char *err, size_t errlen)
{
    if (n < 1 || n > BJ_MAX_BRAINS) {
        snprintf(err, errlen, "--brains %d: between 1 and %d brains (llama.cpp's sequences per context)", n,
                 BJ_MAX_BRAINS);
        return -1;
    }
    if (gods < 0)
        gods = n >= 3 ? 1 : 0;
    if (observers < 0)
        observers = n >= 2 ? (n / 8 > 1 ? n / 8 : 1) : 0;
    int subjects = n - gods - observers;
    if (subjects < 1) {
        snprintf(err, errlen, "--brains %d: %d gods and %d observers leave no SUBJECT", n, gods, observers);
        return -1;
    }
    if (observers > 0 && (subjects + observers - 1) / observers > BJ_MAX_WATCHES) {
        snprintf(err, errlen, "--brains %d: %d subjects need at least %d observers (each watches at most %d)", n,
                 subjects, (subjects + BJ_MAX_WATCHES - 1) / BJ_MAX_WATCHES, BJ_MAX_WATCHES);
        return -1;
    }
    c->mode = BJ_MODE_MATRIX;
    c->spec.n_brains = 0;
    char id[BJ_NAME_MAX];
    for (int k = 0; k < subjects; k++) {
        if (subjects == 1)
            snprintf(id, sizeof id, "SUBJECT");
        else
            snprintf(id, sizeof id, "SUBJECT-%d", k + 1);
        add_brain(c, id, "subject", 8.0);
    }
    for (int k = 0; k < observers; k++) {
        if (observers == 1)
            snprintf(id, sizeof id, "OBSERVER");
        else
            snprintf(id, sizeof id, "OBSERVER-%d", k + 1);
        struct bj_brain_cfg *o = add_brain(c, id, "observer", 10.0);
        for (int s = k; s < subjects; s += observers) /* round robin */
            bj_strlcpy(o->watches[o->n_watches++], c->spec.brains[s].id, BJ_NAME_MAX);
    }
    for (int k = 0; k < gods; k++) {
        if (gods == 1)
            snprintf(id, sizeof id, "GOD");
        else
            snprintf(id, sizeof id, "GOD-%d", k + 1);
        struct bj_brain_cfg *g = add_brain(c, id, "god", 12.0);
        g->watches_all = true;
        g->sees_lifecycle = true;
    }
    return 0;
}

static bool valid_name(const char *s);

/* BRAIN@NODE: a brain on a peer node (peer.h names remote brains so). */
bool bj_config_remote_name(const char *s)
{
    const char *at = strchr(s, '@');
    if (!at || at == s || strlen(s) >= BJ_NAME_MAX || strlen(at + 1) >= BJ_PEER_NAME_MAX + 5)
        return false;
    char brain[BJ_NAME_MAX];
    snprintf(brain, sizeof brain, "%.*s", (int)(at - s), s);
    return valid_name(brain) && valid_name(at + 1);
}

static bool valid_name(const char *s)
{
    if (!*s || strlen(s) >= BJ_NAME_MAX)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return false;
    return true;
}

/* ---- hive files ---------------------------------------------------------------------------
 * [hive]
 * model = path            (default model; relative paths are relative to the hive file)
 * rpc = HOST:PORT, ...    (llama.cpp rpc-servers: --rpc)
 * split_mode = none|layer|row, main_gpu = N, tensor_split = a,b,...   (--split-mode, ...)
 * [brain NAME]
 * role = subject          (prompt file prompts/<role>.txt)
 * model = path
 * jar_gb = 6.0 | jar_tokens = 4096
 * watches = SUBJECT, OBSERVER | *
 * sees_deaths = true
 * temperature, top_k, top_p, min_p, max_tokens, seed */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static void resolve_path(char *dst, size_t len, const char *base_file, const char *path)
{
    if (path[0] == '/' || !strrchr(base_file, '/')) {
        bj_strlcpy(dst, path, len);
        return;
    }
    int dir_len = (int)(strrchr(base_file, '/') - base_file);
    snprintf(dst, len, "%.*s/%s", dir_len, base_file, path);
}

static int parse_watches(struct bj_brain_cfg *b, char *val, char *err, size_t errlen)
{
    b->n_watches = 0;
    b->watches_all = false;
    for (char *save = NULL, *tok = strtok_r(val, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        tok = trim(tok);
        if (strcmp(tok, "*") == 0) {
            b->watches_all = true;
            continue;
        }
        if (!valid_name(tok) && !bj_config_remote_name(tok)) {
            snprintf(err, errlen, "brain %s: bad name '%s' in watches (NAME, or NAME@PEER for a remote brain)", b->id, tok);
            return -1;
        }
        if (b->n_watches >= BJ_MAX_WATCHES) {
            snprintf(err, errlen, "brain %s: watches too many brains", b->id);
            return -1;
        }
        bj_strlcpy(b->watches[b->n_watches++], tok, BJ_NAME_MAX);
    }
    return 0;
}

static int brain_key(struct bj_config *c, const char *file, struct bj_brain_cfg *b, const char *key, char *val,
                     char *err, size_t errlen)
{
    double d;
    long l;
    bool yes;
    if (strcmp(key, "role") == 0) {
        if (!valid_name(val))
            goto bad;
        bj_strlcpy(b->role, val, sizeof b->role);
    } else if (strcmp(key, "model") == 0) {
        resolve_path(b->model, sizeof b->model, file, val);
    } else if (strcmp(key, "jar_gb") == 0) {
        if (bj_parse_double(val, 1e-9, 1e6, &d))
            goto bad;
        b->jar_gb = d;
        b->jar_tokens = 0;
    } else if (strcmp(key, "jar_tokens") == 0) {
        if (bj_parse_long(val, 1, 1L << 30, &l))
            goto bad;
        b->jar_tokens = l;
    } else if (strcmp(key, "watches") == 0) {
        return parse_watches(b, val, err, errlen);
    } else if (strcmp(key, "sees_deaths") == 0) {
        if (bj_parse_bool(val, &yes))
            goto bad;
        b->sees_lifecycle = yes;
    } else if (strcmp(key, "temperature") == 0) {
        if (bj_parse_double(val, 0, 10, &d))
            goto bad;
        b->sampling.temp = (float)d;
    } else if (strcmp(key, "top_p") == 0 || strcmp(key, "min_p") == 0) {
        if (bj_parse_double(val, 0, 1, &d))
            goto bad;
        *(key[0] == 't' ? &b->sampling.top_p : &b->sampling.min_p) = (float)d;
    } else if (strcmp(key, "top_k") == 0) {
        if (bj_parse_long(val, 0, 1000000, &l))
            goto bad;
        b->sampling.top_k = (int)l;
    } else if (strcmp(key, "max_tokens") == 0) {
        if (bj_parse_long(val, 1, 1 << 20, &l))
            goto bad;
        b->sampling.max_tokens = (int)l;
    } else if (strcmp(key, "seed") == 0) {
        if (bj_parse_long(val, 0, 0xffffffffL, &l))
            goto bad;
        b->sampling.seed = (uint32_t)l;
    } else if ((l = bj_lab_frame_key(key, val, &b->remembers_deaths, &b->knows_watched, &b->others_exist)) != -1) {
        if (l == -2)
            goto bad;
    } else {
        snprintf(err, errlen, "brain %s: unknown key '%s'", b->id, key);
        return -1;
    }
    (void)c;
    return 0;
bad:
    snprintf(err, errlen, "brain %s: bad value '%s' for %s", b->id, val, key);
    return -1;
}

/* [hive]: the default model and the devices (flags given too win over these). */
static int hive_key(struct bj_config *c, const char *file, const char *key, char *val, char *err, size_t errlen)
{
    struct bj_hive_spec *s = &c->spec;
    char why[400];
    long l;
    int n;
    if (strcmp(key, "model") == 0) {
        resolve_path(s->model, sizeof s->model, file, val);
    } else if (strcmp(key, "rpc") == 0) {
        char list[BJ_RPC_LIST_MAX];
        size_t k = 0; /* "a:1, b:2" is fine here: spaces after commas are dropped */
        for (const char *p = val; *p && k < sizeof list - 1; p++)
            if (*p != ' ' && *p != '\t')
                list[k++] = *p;
        list[k] = '\0';
        if (bj_rpc_parse(list, NULL, &n, why, sizeof why)) {
            snprintf(err, errlen, "[hive] rpc: %s", why);
            return -1;
        }
        bj_strlcpy(s->rpc, list, sizeof s->rpc);
    } else if (strcmp(key, "split_mode") == 0) {
        if (bj_split_parse(val, &s->split.mode)) {
            snprintf(err, errlen, "[hive] split_mode: '%s' is not none, layer or row", val);
            return -1;
        }
    } else if (strcmp(key, "main_gpu") == 0) {
        if (bj_parse_long(val, 0, BJ_MAX_DEVICES - 1, &l)) {
            snprintf(err, errlen, "[hive] main_gpu: '%s' is not a device index (0-%d)", val, BJ_MAX_DEVICES - 1);
            return -1;
        }
        s->split.main_gpu = (int)l;
    } else if (strcmp(key, "tensor_split") == 0) {
        if (bj_tensor_split_parse(val, s->split.tensor_split, &s->split.n_tensor_split, why, sizeof why)) {
            snprintf(err, errlen, "[hive] tensor_split: %s", why);
            return -1;
        }
    } else if (strcmp(key, "pace") == 0) {
        double d;
        if (bj_parse_double(val, 0, 100000, &d)) {
            snprintf(err, errlen, "[hive] pace: '%s' is not tokens per second (0-100000; 0: unpaced)", val);
            return -1;
        }
        s->pace = d;
    } else {
        snprintf(err, errlen, "unknown key '%s' in [hive] (model, rpc, split_mode, main_gpu, tensor_split, pace)",
                 key);
        return -1;
    }
    return 0;
}

/* [links]: listen = HOST:PORT | off, node_id, exports, key_file, allow_unauthenticated, rate.
 * [peer NAME]: address = HOST:PORT. */
static int links_key(struct bj_config *c, struct bj_peer_dial *peer, const char *file, const char *key, char *val,
                     char *err, size_t errlen)
{
    struct bj_peer_params *p = &c->peer;
    bool yes;
    long l;
    if (peer) {
        if (strcmp(key, "address") != 0) {
            snprintf(err, errlen, "peer %s: unknown key '%s' (address = HOST:PORT)", peer->name, key);
            return -1;
        }
        char name[BJ_PEER_NAME_MAX];
        bj_strlcpy(name, peer->name, sizeof name);
        if (bj_peer_parse_addr(val, peer)) {
            snprintf(err, errlen, "peer %s: bad address '%s' (HOST:PORT)", name, val);
            return -1;
        }
        bj_strlcpy(peer->name, name, sizeof peer->name);
        return 0;
    }
    if (strcmp(key, "listen") == 0) {
        if (strcmp(val, "off") == 0 || strcmp(val, "no") == 0) {
            p->listen = false;
            return 0;
        }
        struct bj_peer_dial d;
        if (bj_peer_parse_addr(val, &d)) {
            snprintf(err, errlen, "[links] listen: '%s' is not HOST:PORT (* for every address) or off", val);
            return -1;
        }
        p->listen = true;
        bj_strlcpy(p->listen_host, strcmp(d.host, "*") == 0 ? "0.0.0.0" : d.host, sizeof p->listen_host);
        p->port = d.port;
    } else if (strcmp(key, "node_id") == 0) {
        if (!*val || strlen(val) >= sizeof p->node_id) {
            snprintf(err, errlen, "[links] node_id: 1 to %zu characters", sizeof p->node_id - 1);
            return -1;
        }
        bj_strlcpy(p->node_id, val, sizeof p->node_id);
    } else if (strcmp(key, "exports") == 0) {
        if (bj_parse_bool(val, &yes))
            goto bad;
        p->exports = yes;
    } else if (strcmp(key, "key_file") == 0) {
        resolve_path(p->key_file, sizeof p->key_file, file, val);
    } else if (strcmp(key, "allow_unauthenticated") == 0) {
        if (bj_parse_bool(val, &yes))
            goto bad;
        p->allow_legacy = yes;
    } else if (strcmp(key, "rate") == 0) {
        if (bj_parse_long(val, 1, 1000000, &l))
            goto bad;
        p->rate_msgs = (int)l;
    } else {
        snprintf(err, errlen, "[links]: unknown key '%s'", key);
        return -1;
    }
    return 0;
bad:
    snprintf(err, errlen, "[links]: bad value '%s' for %s", val, key);
    return -1;
}

/* Hive files are a few KB; anything near this is a mistake (or a device behind a symlink). */
#define HIVE_MAX_BYTES (1u << 20)

int bj_config_load_hive(struct bj_config *c, const char *path, char *err, size_t errlen)
{
    char *text;
    size_t len;
    int rc = bj_read_file_max(path, HIVE_MAX_BYTES, NULL, &text, &len);
    if (rc == -EFBIG) {
        snprintf(err, errlen, "hive file %s: larger than %u KB (is it a hive file?)", path, HIVE_MAX_BYTES >> 10);
        return -1;
    }
    if (rc) {
        snprintf(err, errlen, "hive file %s: cannot read it: %s", path, bj_file_strerror(rc));
        return -1;
    }
    rc = bj_config_parse_hive(c, path, text, len, err, errlen);
    free(text);
    return rc;
}

static bool is_template_brain(void *ud, const char *name)
{
    return bj_spec_find_brain(ud, name) >= 0;
}

/* [peer NAME] (name already past "peer"): a new dial target. NULL with msg when it cannot be. */
static struct bj_peer_dial *peer_section(struct bj_config *c, const char *name, char *msg, size_t msglen)
{
    if (!valid_name(name) || strlen(name) >= BJ_PEER_NAME_MAX) {
        snprintf(msg, msglen, "bad peer name '%s' (letters, digits, _ and -, < %d chars)", name,
                 BJ_PEER_NAME_MAX);
        return NULL;
    }
    for (int i = 0; i < c->peer.n_dial; i++)
        if (strcmp(c->peer.dial[i].name, name) == 0) {
            snprintf(msg, msglen, "peer %s defined twice", name);
            return NULL;
        }
    if (c->peer.n_dial >= BJ_PEER_MAX_DIAL) {
        snprintf(msg, msglen, "too many peers (at most %d)", BJ_PEER_MAX_DIAL);
        return NULL;
    }
    struct bj_peer_dial *cur_peer = &c->peer.dial[c->peer.n_dial++];
    memset(cur_peer, 0, sizeof *cur_peer);
    bj_strlcpy(cur_peer->name, name, sizeof cur_peer->name);
    c->links = true;
    return cur_peer;
}

/* [brain NAME] (name already past "brain"): a new brain. NULL with msg when it cannot be. */
static struct bj_brain_cfg *brain_section(struct bj_config *c, const char *name, char *msg, size_t msglen)
{
    if (!valid_name(name)) {
        snprintf(msg, msglen, "bad brain name '%s' (letters, digits, _ and -, < %d chars)", name, BJ_NAME_MAX);
        return NULL;
    }
    if (bj_spec_find_brain(&c->spec, name) >= 0) {
        snprintf(msg, msglen, "brain %s defined twice", name);
        return NULL;
    }
    if (c->spec.n_brains >= BJ_MAX_BRAINS) {
        snprintf(msg, msglen, "too many brains (at most %d)", BJ_MAX_BRAINS);
        return NULL;
    }
    char role[BJ_NAME_MAX];
    bj_strlcpy(role, name, sizeof role);
    for (char *p = role; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return add_brain(c, name, role, 8.0);
}

/* What a whole hive file must have: brains, peers with addresses, a consistent experiment. */
static int hive_file_complete(struct bj_config *c, const char *path, char *err, size_t errlen)
{
    char msg[400];
    if (c->spec.n_brains == 0) {
        snprintf(err, errlen, "hive file %s: no [brain NAME] section", path);
        return -1;
    }
    for (int i = 0; i < c->peer.n_dial; i++)
        if (!c->peer.dial[i].host[0]) {
            snprintf(err, errlen, "hive file %s: [peer %s] has no address = HOST:PORT", path, c->peer.dial[i].name);
            return -1;
        }
    if (bj_lab_check(&c->spec.lab, is_template_brain, &c->spec, msg, sizeof msg) ||
        (c->spec.lab.on && bj_lab_expand(&c->spec, msg, sizeof msg))) {
        snprintf(err, errlen, "hive file %s, %s", path, msg);
        return -1;
    }
    if (c->spec.lab.on && c->spec.lab.duration_s > 0 && c->duration_s <= 0) /* --duration wins */
        c->duration_s = c->spec.lab.duration_s;
    return 0;
}

int bj_config_parse_hive(struct bj_config *c, const char *path, char *text, size_t len, char *err, size_t errlen)
{
    bj_strlcpy(c->hive_file, path, sizeof c->hive_file);
    c->mode = BJ_MODE_HIVE;
    c->spec.n_brains = 0;
    struct bj_brain_cfg *cur = NULL;
    struct bj_peer_dial *cur_peer = NULL;
    bool in_hive = false, in_links = false, in_lab = false;
    enum bj_lab_section lab_sec = BJ_LAB_SEC_EXPERIMENT;
    bj_lab_spec_default(&c->spec.lab);
    int line_no = 0;
    char msg[400];
    /* A UTF-8 byte order mark (editors on some systems write one) is not part of line 1. */
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;
        len -= 3;
    }
    /* Every line counts, blank and comment lines included, so that errors name the line an
     * editor shows. */
    char *end = text + len;
    for (char *line = text; line < end;) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        char *stop = nl ? nl : end;
        line_no++;
        char *nul = memchr(line, '\0', (size_t)(stop - line));
        if (nul) {
            snprintf(msg, sizeof msg, "contains a NUL byte (column %d); a hive file is text", (int)(nul - line) + 1);
            goto fail;
        }
        *stop = '\0'; /* end is text[len], the reader's terminator */
        char *next = nl ? nl + 1 : end;
        char *s = trim(line);
        line = next;
        if (!*s || *s == '#' || *s == ';')
            continue;
        if (*s == '[') {
            char *close = strchr(s, ']');
            if (!close || close[1]) {
                snprintf(msg, sizeof msg, "malformed section header");
                goto fail;
            }
            *close = '\0';
            char *name = trim(s + 1);
            cur = NULL;
            cur_peer = NULL;
            int lab = bj_lab_section(&c->spec.lab, name, line_no, &lab_sec, msg, sizeof msg);
            if (lab < 0)
                goto fail;
            in_lab = lab == 1;
            if (in_lab)
                continue;
            in_hive = strcmp(name, "hive") == 0;
            in_links = strcmp(name, "links") == 0;
            if (in_hive)
                continue;
            if (in_links) {
                c->links = true;
                continue;
            }
            if (strncmp(name, "peer", 4) == 0 && isspace((unsigned char)name[4])) {
                if (!(cur_peer = peer_section(c, trim(name + 4), msg, sizeof msg)))
                    goto fail;
                continue;
            }
            if (strncmp(name, "brain", 5) != 0 || !isspace((unsigned char)name[5])) {
                snprintf(msg, sizeof msg, "unknown section [%s] (expected [hive], [brain NAME], [links], [peer NAME], [experiment], "
                         "[condition NAME], [intervention NAME] or [questions])", name);
                goto fail;
            }
            if (!(cur = brain_section(c, trim(name + 5), msg, sizeof msg)))
                goto fail;
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(msg, sizeof msg, "expected key = value");
            goto fail;
        }
        *eq = '\0';
        char *key = trim(s), *val = trim(eq + 1);
        if (in_hive) {
            if (hive_key(c, path, key, val, msg, sizeof msg))
                goto fail;
            continue;
        }
        if (in_lab) {
            if (bj_lab_key(&c->spec.lab, lab_sec, key, val, msg, sizeof msg))
                goto fail;
            continue;
        }
        if (in_links || cur_peer) {
            if (links_key(c, cur_peer, path, key, val, msg, sizeof msg))
                goto fail;
            continue;
        }
        if (!cur) {
            snprintf(msg, sizeof msg, "key '%s' outside a section", key);
            goto fail;
        }
        if (brain_key(c, path, cur, key, val, msg, sizeof msg))
            goto fail;
    }
    return hive_file_complete(c, path, err, errlen);
fail:
    snprintf(err, errlen, "hive file %s, line %d: %s", path, line_no, msg);
    return -1;
}

int bj_config_finish(struct bj_config *c, char *err, size_t errlen)
{
    if (c->spec.n_brains == 0) {
        snprintf(err, errlen, "no brains to run");
        return -1;
    }
    for (int i = 0; i < c->spec.n_brains; i++) {
        struct bj_brain_cfg *b = &c->spec.brains[i];
        for (int w = 0; w < b->n_watches; w++) {
            if (strchr(b->watches[w], '@')) {
                if (!c->links) {
                    snprintf(err, errlen, "brain %s watches %s, a remote brain, but no peer links are configured "
                             "([peer NAME] or --peer HOST:PORT)", b->id, b->watches[w]);
                    return -1;
                }
                continue;
            }
            if (bj_spec_find_brain(&c->spec, b->watches[w]) < 0) {
                snprintf(err, errlen, "brain %s watches %s, which is not in the hive", b->id, b->watches[w]);
                return -1;
            }
            if (strcmp(b->watches[w], b->id) == 0) {
                snprintf(err, errlen, "brain %s cannot watch itself", b->id);
                return -1;
            }
        }
        if (b->jar_tokens <= 0 && !(b->jar_gb > 0)) {
            snprintf(err, errlen, "brain %s: jar must be positive", b->id);
            return -1;
        }
        /* Distinct default seeds per brain keep brains apart yet runs reproducible. */
        if (b->sampling.seed == 0)
            b->sampling.seed = 1234u + 7919u * (uint32_t)i;
    }
    if (c->spec.kv_type != GGML_TYPE_F16 && c->spec.kv_type != GGML_TYPE_F32 && c->spec.kv_type != GGML_TYPE_BF16 && c->spec.flash_attn == 0) {
        snprintf(err, errlen, "a quantized KV cache (--kv-type) needs flash attention; drop --flash-attn off");
        return -1;
    }
    if (bj_split_check(&c->spec.split, c->spec.rpc[0] != '\0', c->spec.n_gpu_layers, err, errlen))
        return -1;
    if (c->mode == BJ_MODE_OBSERVER && c->peer.n_dial == 0) {
        snprintf(err, errlen, "--mode observer watches a remote brain: give --target-ip (and --target-port) or --peer HOST:PORT");
        return -1;
    }
    if (c->links && !c->peer.listen && c->peer.n_dial == 0) {
        snprintf(err, errlen, "peer links neither listen nor dial anyone: give --port or --peer HOST:PORT");
        return -1;
    }
    if (c->peer.allow_legacy && !c->peer.key_file[0]) {
        snprintf(err, errlen, "--allow-unauthenticated only means something with --peer-key FILE");
        return -1;
    }
    if (c->focus[0] && bj_spec_find_brain(&c->spec, c->focus) < 0) {
        snprintf(err, errlen, "--focus %s: no such brain", c->focus);
        return -1;
    }
    if (c->spec.stall_brain[0] && bj_spec_find_brain(&c->spec, c->spec.stall_brain) < 0) {
        snprintf(err, errlen, "--inject-stall %s: no such brain", c->spec.stall_brain);
        return -1;
    }
    if (c->spec.inject_brain[0] && bj_spec_find_brain(&c->spec, c->spec.inject_brain) < 0) {
        snprintf(err, errlen, "--inject-decode-error %s: no such brain", c->spec.inject_brain);
        return -1;
    }
    return 0;
}
