/* cli: see cli.h. Options are collected first and applied after the mode or hive file has
 * decided which brains exist, so that per-brain flags can be checked against them. */
#include "cli.h"

#include <getopt.h>
#include <strings.h>
#include <string.h>

#include "log.h"
#include "modelinfo.h"
#include "util.h"

enum tier { T_SUBJECT, T_OBSERVER, T_GOD, T_ALL, T_COUNT };
static const char *const k_tier_ids[] = {"SUBJECT", "OBSERVER", "GOD"};

struct raw {
    const char *mode, *hive, *brains;
    const char *model[T_COUNT];
    double ram_gb[T_COUNT];
    long jar_tokens[T_COUNT];
    struct bj_sampling s;   /* -1 / NaN style "unset" markers below */
    bool set_temp, set_top_k, set_top_p, set_min_p, set_max_tokens, set_seed;
    /* links */
    const char *peer_ip, *target_ip, *listen_host, *node_id, *key;
    long peer_port, target_port, port, rate; /* 0: unset (port: -1 unset) */
    bool no_listen, allow_legacy;
    struct bj_peer_dial dial[BJ_PEER_MAX_DIAL];
    int n_dial;
    /* devices: applied over the hive file's [hive] settings */
    const char *rpc;
    int split_mode;         /* BJ_SPLIT_AUTO - 1: not given */
    long main_gpu;          /* -1: not given */
    float tensor_split[BJ_MAX_DEVICES];
    int n_tensor_split;     /* -1: not given */
};

void bj_cli_usage_run(const char *cmd, FILE *to)
{
    fprintf(to,
            "usage: brainjar %s [options]\n"
            "Hive:\n"
            "  --mode single|matrix|peer|observer|observed   preset hive (default matrix: SUBJECT, OBSERVER, GOD)\n"
            "                              (isolated = single; peer/observer/observed: one brain linked to other nodes)\n"
            "  --hive FILE                 a hive file (INI) instead of a mode\n"
            "  --brains N[:gods=G,observers=O]  N brains on one model in the matrix pattern: G GODs watch\n"
            "                              everyone, O OBSERVERs watch the SUBJECTs in round robin, the rest are\n"
            "                              SUBJECTs (SUBJECT-1, ...). Defaults: 1 GOD from 3 brains, 1 OBSERVER\n"
            "                              per 8 brains. Per-role flags (--jar-tokens-subject ...) apply to each.\n"
            "  --model FILE                GGUF for every brain (default: the embedded voice, models/brainjar-voice.gguf)\n"
            "  --model-subject|-observer|-god FILE   per-brain models\n"
            "  --ram-limit-subject|-observer|-god GB jar sizes (defaults 8, 10, 12); --ram-limit GB for all\n"
            "  --jar-tokens-subject|-observer|-god N jar sizes in tokens; --jar-tokens N for all\n"
            "Engine:\n"
            "  --schedule batched|parallel|auto  one batched context, or one context per brain in threads\n"
            "  --threads N (default: all cores but one on a CPU, all with a GPU; llama.cpp at most 2 with every layer there)\n"
            "  --gpu-layers N (-1 all)\n"
            "  --kv-type f16|q8_0|q4_0  --flash-attn on|off|auto\n"
            "  --prefill-chunk N (64)  --share-openings on|off (on: brains copy the common start of their prompts)\n"
            "  --mmap | --no-mmap (default: read where weights are repacked)  --chat-template\n"
            "  --backend-sampling on|off|auto  sample inside the decode graph (auto: off, brainjar's CPU sampler)\n"
            "Devices (docs/OPERATIONS.md):\n"
            "  --rpc HOST:PORT[,HOST:PORT...]  also run layers on llama.cpp rpc-servers (other hosts)\n"
            "  --split-mode none|layer|row  how a model is split over the devices (default layer: layers\n"
            "                              in proportion to each device's free memory or --tensor-split)\n"
            "  --main-gpu N                the one device of --split-mode none (given alone, it implies none)\n"
            "  --tensor-split A,B,...      each device's share of the layers, in the order validate lists them\n"
            "Lives and sampling (all brains; hive files set them per brain):\n"
            "  --pace TOK_S  tokens a brain thinks per second at most (default: 5 on the embedded voice,\n"
            "                unpaced on any other model; 0: as fast as the machine allows)\n"
            "  --pause SECONDS (3)  --temp T  --top-k K  --top-p P  --min-p P  --max-tokens N  --seed N\n"
            "Output and files:\n"
            "  --tui on|off  the full-screen view (default: on when stdout is a terminal and --events is not given)\n"
            "  --events text|jsonl|none  --focus BRAIN  --data-dir DIR  --prompts DIR\n"
            "  --duration SECONDS  --steps N  --dump-context DIR  --log-level debug|info|warn|error\n"
            "  --profile                   at the end, where each engine's steps spent their time (batch,\n"
            "                              decode, sampling, token-to-text, publishing) and its fairness figures\n"
            "Neural links (docs/PEERS.md):\n"
            "  --port PORT (8888; 0: any)  listen for peers (on in peer/observed modes)   --no-listen\n"
            "  --listen-host HOST (127.0.0.1)   --peer HOST:PORT (repeatable)   --node-id NAME\n"
            "  --peer-ip IP --peer-port PORT  --target-ip IP --target-port PORT   the original's flags\n"
            "  --peer-key FILE  HMAC-SHA256 between brainjar nodes   --allow-unauthenticated  old nodes too\n"
            "  --peer-rate N  messages/s a peer may send (2000)\n"
            "Web (dashboard, API, /metrics):\n"
            "  --web-host HOST (127.0.0.1)  --web-port PORT (8095)  --no-web\n"
            "  --web-auth on|off (off only on loopback)  --web-allow-origin ORIGIN  --web-trusted-proxy ADDR\n"
            "  --metrics-public (/metrics without a token; loopback only)\n"
            "  --web-host-name NAME (repeatable) a Host the server may be called by, beside its address and localhost\n"
            "  --web-cookie-secure (the session cookie only over https)\n"
            "  --web-tls-cert FILE --web-tls-key FILE  serve https itself (PEM)\n"
            "Memory budget:\n"
            "  --reserve PCT (15)  --brain-share PCT (50)  --headroom GB (2)  --force (start despite a failed check)\n"
            "Testing:\n"
            "  --inject-decode-error BRAIN:N   fail BRAIN's Nth decode\n"
            "  --inject-stall BRAIN:N:MS   stall the engine of BRAIN for MS ms at its Nth step (tests the supervisor)\n"
            "  --stall-timeout SEC (60)   an engine silent this long is rebuilt and its brains die (WATCHDOG)\n",
            cmd);
    bj_ops_usage(to);
}

static int bad(const char *cmd, const char *flag, const char *val, const char *want)
{
    fprintf(stderr, "brainjar %s: %s: '%s' is not %s\n", cmd, flag, val, want);
    return 2;
}

enum {
    O_MODE = 256, O_HIVE, O_MODEL, O_MODEL_S, O_MODEL_O, O_MODEL_G, O_RAM, O_RAM_S, O_RAM_O, O_RAM_G,
    O_JAR, O_JAR_S, O_JAR_O, O_JAR_G, O_WEB_HOST, O_WEB_PORT, O_DATA, O_PROMPTS, O_SCHED, O_THREADS,
    O_GPU, O_KV, O_FA, O_CHUNK, O_OPENINGS, O_NO_MMAP, O_MMAP, O_CHAT, O_PAUSE, O_PACE, O_TEMP, O_TOPK, O_TOPP, O_MINP, O_MAXTOK,
    O_SEED, O_EVENTS, O_FOCUS, O_DURATION, O_STEPS, O_DUMP, O_LOG, O_RESERVE, O_SHARE, O_HEADROOM,
    O_FORCE, O_INJECT, O_STALL, O_STALL_TIMEOUT, O_BSAMPLE, O_BRAINS, O_PROFILE, O_PORT, O_LISTEN_HOST, O_NO_LISTEN, O_PEER,
    O_PEER_IP, O_PEER_PORT, O_TARGET_IP, O_TARGET_PORT, O_NODE_ID, O_PEER_KEY, O_ALLOW_UNAUTH, O_PEER_RATE,
    O_NO_WEB, O_WEB_AUTH, O_WEB_ORIGIN, O_WEB_PROXY, O_METRICS_PUBLIC, /* web */
    O_WEB_HOST_NAME, O_WEB_COOKIE_SECURE, O_WEB_TLS_CERT, O_WEB_TLS_KEY,
    O_RPC, O_SPLIT, O_MAIN_GPU, O_TSPLIT, O_TUI,
};

static const struct option k_opts[] = {
    {"mode", required_argument, 0, O_MODE}, {"hive", required_argument, 0, O_HIVE},
    {"model", required_argument, 0, O_MODEL}, {"model-subject", required_argument, 0, O_MODEL_S},
    {"model-observer", required_argument, 0, O_MODEL_O}, {"model-god", required_argument, 0, O_MODEL_G},
    {"ram-limit", required_argument, 0, O_RAM}, {"ram-limit-subject", required_argument, 0, O_RAM_S},
    {"ram-limit-observer", required_argument, 0, O_RAM_O}, {"ram-limit-god", required_argument, 0, O_RAM_G},
    {"jar-tokens", required_argument, 0, O_JAR}, {"jar-tokens-subject", required_argument, 0, O_JAR_S},
    {"jar-tokens-observer", required_argument, 0, O_JAR_O}, {"jar-tokens-god", required_argument, 0, O_JAR_G},
    {"web-host", required_argument, 0, O_WEB_HOST}, {"web-port", required_argument, 0, O_WEB_PORT},
    {"data-dir", required_argument, 0, O_DATA}, {"prompts", required_argument, 0, O_PROMPTS},
    {"schedule", required_argument, 0, O_SCHED}, {"threads", required_argument, 0, O_THREADS},
    {"gpu-layers", required_argument, 0, O_GPU}, {"kv-type", required_argument, 0, O_KV},
    {"flash-attn", required_argument, 0, O_FA}, {"prefill-chunk", required_argument, 0, O_CHUNK},
    {"share-openings", required_argument, 0, O_OPENINGS},
    {"no-mmap", no_argument, 0, O_NO_MMAP}, {"mmap", no_argument, 0, O_MMAP}, {"chat-template", no_argument, 0, O_CHAT},
    {"pause", required_argument, 0, O_PAUSE}, {"pace", required_argument, 0, O_PACE},
    {"temp", required_argument, 0, O_TEMP},
    {"top-k", required_argument, 0, O_TOPK}, {"top-p", required_argument, 0, O_TOPP},
    {"min-p", required_argument, 0, O_MINP}, {"max-tokens", required_argument, 0, O_MAXTOK},
    {"seed", required_argument, 0, O_SEED}, {"events", required_argument, 0, O_EVENTS},
    {"tui", required_argument, 0, O_TUI},
    {"focus", required_argument, 0, O_FOCUS}, {"duration", required_argument, 0, O_DURATION},
    {"steps", required_argument, 0, O_STEPS}, {"dump-context", required_argument, 0, O_DUMP},
    {"log-level", required_argument, 0, O_LOG}, {"reserve", required_argument, 0, O_RESERVE},
    {"brain-share", required_argument, 0, O_SHARE}, {"headroom", required_argument, 0, O_HEADROOM},
    {"force", no_argument, 0, O_FORCE}, {"inject-decode-error", required_argument, 0, O_INJECT},
    {"inject-stall", required_argument, 0, O_STALL}, {"stall-timeout", required_argument, 0, O_STALL_TIMEOUT},
    {"backend-sampling", required_argument, 0, O_BSAMPLE}, {"brains", required_argument, 0, O_BRAINS},
    {"profile", no_argument, 0, O_PROFILE},
    {"rpc", required_argument, 0, O_RPC}, {"split-mode", required_argument, 0, O_SPLIT},
    {"main-gpu", required_argument, 0, O_MAIN_GPU}, {"tensor-split", required_argument, 0, O_TSPLIT},
    BJ_OPS_OPTIONS,
    {"port", required_argument, 0, O_PORT}, {"listen-host", required_argument, 0, O_LISTEN_HOST},
    {"no-listen", no_argument, 0, O_NO_LISTEN}, {"peer", required_argument, 0, O_PEER},
    {"peer-ip", required_argument, 0, O_PEER_IP}, {"peer-port", required_argument, 0, O_PEER_PORT},
    {"target-ip", required_argument, 0, O_TARGET_IP}, {"target-port", required_argument, 0, O_TARGET_PORT},
    {"node-id", required_argument, 0, O_NODE_ID}, {"peer-key", required_argument, 0, O_PEER_KEY},
    {"allow-unauthenticated", no_argument, 0, O_ALLOW_UNAUTH}, {"peer-rate", required_argument, 0, O_PEER_RATE},
    {"no-web", no_argument, 0, O_NO_WEB}, {"web-auth", required_argument, 0, O_WEB_AUTH},
    {"web-allow-origin", required_argument, 0, O_WEB_ORIGIN}, {"web-trusted-proxy", required_argument, 0, O_WEB_PROXY},
    {"metrics-public", no_argument, 0, O_METRICS_PUBLIC}, {"web-host-name", required_argument, 0, O_WEB_HOST_NAME},
    {"web-cookie-secure", no_argument, 0, O_WEB_COOKIE_SECURE}, {"web-tls-cert", required_argument, 0, O_WEB_TLS_CERT},
    {"web-tls-key", required_argument, 0, O_WEB_TLS_KEY},
    {"help", no_argument, 0, 'h'}, {0, 0, 0, 0},
};

/* Applies per-tier model and jar flags to the brains they name. */
static int apply_tiers(const char *cmd, struct bj_config *c, const struct raw *r)
{
    for (int t = 0; t < T_ALL; t++) {
        bool any = r->model[t] || r->ram_gb[t] > 0 || r->jar_tokens[t] > 0;
        if (!any)
            continue;
        if (r->ram_gb[t] > 0 && r->jar_tokens[t] > 0) {
            fprintf(stderr, "brainjar %s: both --ram-limit-%c... and --jar-tokens-%c... given for %s; pick one\n",
                    cmd, "sog"[t], "sog"[t], k_tier_ids[t]);
            return 2;
        }
        /* The brain of that name; in matrix mode (--brains too) every brain of that role. */
        int hits = 0;
        for (int i = 0; i < c->spec.n_brains; i++) {
            struct bj_brain_cfg *b = &c->spec.brains[i];
            bool role = c->mode == BJ_MODE_MATRIX && strcasecmp(b->role, k_tier_ids[t]) == 0;
            if (strcmp(b->id, k_tier_ids[t]) != 0 && !role)
                continue;
            hits++;
            if (r->model[t])
                bj_strlcpy(b->model, r->model[t], sizeof b->model);
            if (r->ram_gb[t] > 0) {
                b->jar_gb = r->ram_gb[t];
                b->jar_tokens = 0;
            }
            if (r->jar_tokens[t] > 0)
                b->jar_tokens = r->jar_tokens[t];
        }
        if (hits == 0) {
            fprintf(stderr, "brainjar %s: a flag names %s, but %s has no such brain%s\n", cmd, k_tier_ids[t],
                    c->mode == BJ_MODE_HIVE ? "the hive file" : "this mode",
                    c->mode == BJ_MODE_SINGLE ? " (single mode has only SUBJECT)" : "");
            return 2;
        }
    }
    return 0;
}

/* Link flags, over what the mode or the hive file set. The original's --peer-ip/--target-ip take
 * their ports from --peer-port/--target-port (8888 by default). */
static int apply_links(const char *cmd, struct bj_config *c, const struct raw *r)
{
    struct bj_peer_params *p = &c->peer;
    if ((r->peer_port && !r->peer_ip) || (r->target_port && !r->target_ip)) {
        fprintf(stderr, "brainjar %s: --%s-port needs --%s-ip\n", cmd, r->peer_port && !r->peer_ip ? "peer" : "target",
                r->peer_port && !r->peer_ip ? "peer" : "target");
        return 2;
    }
    struct bj_peer_dial extra[BJ_PEER_MAX_DIAL + 2];
    int n = 0;
    for (int i = 0; i < r->n_dial; i++)
        extra[n++] = r->dial[i];
    const char *ips[2] = {r->peer_ip, r->target_ip};
    long ports[2] = {r->peer_port, r->target_port};
    for (int k = 0; k < 2; k++) {
        if (!ips[k])
            continue;
        memset(&extra[n], 0, sizeof extra[n]);
        if (strlen(ips[k]) >= sizeof extra[n].host)
            return bad(cmd, k ? "--target-ip" : "--peer-ip", ips[k], "a host");
        bj_strlcpy(extra[n].host, ips[k], sizeof extra[n].host);
        extra[n].port = ports[k] ? (int)ports[k] : 8888;
        n++;
    }
    if (p->n_dial + n > BJ_PEER_MAX_DIAL) {
        fprintf(stderr, "brainjar %s: too many peers (at most %d)\n", cmd, BJ_PEER_MAX_DIAL);
        return 2;
    }
    for (int i = 0; i < n; i++)
        p->dial[p->n_dial++] = extra[i];
    if (n)
        c->links = true;
    if (r->port >= 0) {
        c->links = true;
        p->listen = true;
        p->port = (int)r->port;
    }
    if (r->no_listen) {
        if (r->port >= 0) {
            fprintf(stderr, "brainjar %s: --port and --no-listen contradict each other\n", cmd);
            return 2;
        }
        p->listen = false;
    }
    if (r->listen_host)
        bj_strlcpy(p->listen_host, r->listen_host, sizeof p->listen_host);
    if (r->node_id)
        bj_strlcpy(p->node_id, r->node_id, sizeof p->node_id);
    if (r->key)
        bj_strlcpy(p->key_file, r->key, sizeof p->key_file);
    if (r->allow_legacy)
        p->allow_legacy = true;
    if (r->rate)
        p->rate_msgs = (int)r->rate;
    return 0;
}

static void apply_all(struct bj_config *c, const struct raw *r)
{
    for (int i = 0; i < c->spec.n_brains; i++) {
        struct bj_brain_cfg *b = &c->spec.brains[i];
        if (r->ram_gb[T_ALL] > 0) {
            b->jar_gb = r->ram_gb[T_ALL];
            b->jar_tokens = 0;
        }
        if (r->jar_tokens[T_ALL] > 0)
            b->jar_tokens = r->jar_tokens[T_ALL];
        if (r->set_temp) b->sampling.temp = r->s.temp;
        if (r->set_top_k) b->sampling.top_k = r->s.top_k;
        if (r->set_top_p) b->sampling.top_p = r->s.top_p;
        if (r->set_min_p) b->sampling.min_p = r->s.min_p;
        if (r->set_max_tokens) b->sampling.max_tokens = r->s.max_tokens;
        if (r->set_seed) b->sampling.seed = r->s.seed + 7919u * (uint32_t)i;
    }
}

/* Device flags, over what the hive file set. */
static void apply_devices(struct bj_config *c, const struct raw *r)
{
    struct bj_hive_spec *s = &c->spec;
    if (r->rpc)
        bj_strlcpy(s->rpc, r->rpc, sizeof s->rpc);
    if (r->split_mode >= BJ_SPLIT_AUTO)
        s->split.mode = r->split_mode;
    if (r->main_gpu >= 0)
        s->split.main_gpu = (int)r->main_gpu;
    if (r->n_tensor_split >= 0) {
        s->split.n_tensor_split = r->n_tensor_split;
        memcpy(s->split.tensor_split, r->tensor_split, sizeof s->split.tensor_split);
    }
}

/* --brains N[:gods=G,observers=O] */
static int apply_brains(const char *cmd, struct bj_config *c, const char *spec)
{
    char buf[128], err[200];
    if (bj_strlcpy(buf, spec, sizeof buf) >= sizeof buf)
        return bad(cmd, "--brains", spec, "N[:gods=G,observers=O]");
    char *opts = strchr(buf, ':');
    if (opts)
        *opts++ = '\0';
    long n, gods = -1, observers = -1, v;
    if (bj_parse_long(buf, 1, BJ_MAX_BRAINS, &n))
        return bad(cmd, "--brains", spec, "a brain count (1 to 256) with optional :gods=G,observers=O");
    for (char *save = NULL, *kv = opts ? strtok_r(opts, ",", &save) : NULL; kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq || bj_parse_long(eq + 1, 0, BJ_MAX_BRAINS, &v))
            return bad(cmd, "--brains", spec, "N[:gods=G,observers=O]");
        *eq = '\0';
        if (strcmp(kv, "gods") == 0 || strcmp(kv, "god") == 0)
            gods = v;
        else if (strcmp(kv, "observers") == 0 || strcmp(kv, "observer") == 0)
            observers = v;
        else
            return bad(cmd, "--brains", spec, "N[:gods=G,observers=O] (unknown key)");
    }
    if (bj_config_apply_brains(c, (int)n, (int)gods, (int)observers, err, sizeof err)) {
        fprintf(stderr, "brainjar %s: %s\n", cmd, err);
        return 2;
    }
    return 0;
}

/* What the options said, put together: the mode or hive file or brain count, then per-role
 * settings, devices, tiers and links; then the final checks. 0, or 2 after saying why. */
static int apply_run(const char *cmd, struct bj_config *c, const struct raw *r)
{
    char err[600];
    if (r->hive && r->mode) {
        fprintf(stderr, "brainjar %s: --hive and --mode contradict each other; a hive file defines its brains\n", cmd);
        return 2;
    }
    if (r->mode) {
        if (strcmp(r->mode, "single") == 0 || strcmp(r->mode, "isolated") == 0)
            c->mode = BJ_MODE_SINGLE;
        else if (strcmp(r->mode, "matrix") == 0)
            c->mode = BJ_MODE_MATRIX;
        else if (strcmp(r->mode, "peer") == 0)
            c->mode = BJ_MODE_PEER;
        else if (strcmp(r->mode, "observer") == 0)
            c->mode = BJ_MODE_OBSERVER;
        else if (strcmp(r->mode, "observed") == 0)
            c->mode = BJ_MODE_OBSERVED;
        else {
            fprintf(stderr, "brainjar %s: unknown mode '%s' (single, matrix, peer, observer or observed, or --hive FILE)\n",
                    cmd, r->mode);
            return 2;
        }
        bj_config_apply_mode(c);
    }
    if (r->brains) {
        if (r->hive || r->mode) {
            fprintf(stderr, "brainjar %s: --brains contradicts --%s; it defines the brains itself\n", cmd,
                    r->hive ? "hive" : "mode");
            return 2;
        }
        int rc = apply_brains(cmd, c, r->brains);
        if (rc)
            return rc;
    }
    if (r->hive && bj_config_load_hive(c, r->hive, err, sizeof err)) {
        fprintf(stderr, "brainjar %s: %s\n", cmd, err);
        return 2;
    }
    if (r->ram_gb[T_ALL] > 0 && r->jar_tokens[T_ALL] > 0) {
        fprintf(stderr, "brainjar %s: both --ram-limit and --jar-tokens given; pick one\n", cmd);
        return 2;
    }
    apply_all(c, r);
    apply_devices(c, r);
    int rc = apply_tiers(cmd, c, r);
    if (rc)
        return rc;
    if ((rc = apply_links(cmd, c, r)))
        return rc;
    if (bj_config_finish(c, err, sizeof err)) {
        fprintf(stderr, "brainjar %s: %s\n", cmd, err);
        return 2;
    }
    return 0;
}


/* One option being parsed, for the groups below. */
struct optctx {
    const char *cmd, *flag, *a; /* the command, the flag as written, its value */
    int opt;
    struct bj_config *c;
    struct raw *r;
    char **argv;
};

/* Options of the brains: mode, hive file, count, models, jars, where data and prompts live. 0: applied; 2: a bad value, said why; -1: not one of them. */
static int opt_brains(const struct optctx *o)
{
    const char *cmd = o->cmd, *a = o->a, *flag = o->flag;
    struct bj_config *c = o->c;
    struct raw *r = o->r;
    int opt = o->opt;
    double d;
    long l;
    switch (o->opt) {
    case O_MODE: r->mode = a; break;
    case O_HIVE: r->hive = a; break;
    case O_BRAINS: r->brains = a; break;
    case O_PROFILE: c->spec.profile = true; break;
    case O_MODEL: bj_strlcpy(c->spec.model, a, sizeof c->spec.model); break;
    case O_MODEL_S: case O_MODEL_O: case O_MODEL_G: r->model[opt - O_MODEL_S] = a; break;
    case O_RAM: case O_RAM_S: case O_RAM_O: case O_RAM_G:
        if (bj_parse_double(a, 1e-9, 1e6, &d))
            return bad(cmd, flag, a, "a positive number of GB");
        r->ram_gb[opt == O_RAM ? T_ALL : opt - O_RAM_S] = d;
        break;
    case O_JAR: case O_JAR_S: case O_JAR_O: case O_JAR_G:
        if (bj_parse_long(a, 1, 1L << 30, &l))
            return bad(cmd, flag, a, "a positive number of tokens");
        r->jar_tokens[opt == O_JAR ? T_ALL : opt - O_JAR_S] = l;
        break;
    case O_DATA: /* refused before anything is written (an empty one would mean the current directory) */
        if (!*a || strlen(a) >= sizeof c->spec.data_dir)
            return bad(cmd, "--data-dir", a, "a directory (the data directory is empty or too long)");
        bj_strlcpy(c->spec.data_dir, a, sizeof c->spec.data_dir);
        break;
    case O_PROMPTS: bj_strlcpy(c->spec.prompts_dir, a, sizeof c->spec.prompts_dir); break;
    case O_SCHED:
        if (bj_schedule_parse(a, &c->spec.schedule))
            return bad(cmd, "--schedule", a, "batched, parallel or auto");
        break;
    default:
        return -1;
    }
    return 0;
}

/* Options of the web server. 0: applied; 2: a bad value, said why; -1: not one of them. */
static int opt_web(const struct optctx *o)
{
    const char *cmd = o->cmd, *a = o->a;
    struct bj_config *c = o->c;
    int opt = o->opt;
    long l;
    switch (o->opt) {
    case O_WEB_HOST: bj_strlcpy(c->web_host, a, sizeof c->web_host); break;
    case O_WEB_PORT:
        if (bj_parse_long(a, 1, 65535, &l))
            return bad(cmd, "--web-port", a, "a port (1-65535)");
        c->web_port = (int)l;
        break;
    case O_NO_WEB: c->no_web = true; break;
    case O_WEB_AUTH:
        if (strcmp(a, "on") == 0) c->web_auth = true;
        else if (strcmp(a, "off") == 0) c->web_auth = false;
        else return bad(cmd, "--web-auth", a, "on or off");
        break;
    case O_WEB_ORIGIN:
        if (strlen(a) >= sizeof c->web_allow_origin || (strncmp(a, "http://", 7) && strncmp(a, "https://", 8)) ||
            strchr(a + 8, '/'))
            return bad(cmd, "--web-allow-origin", a, "an origin (http[s]://host[:port])");
        bj_strlcpy(c->web_allow_origin, a, sizeof c->web_allow_origin);
        break;
    case O_WEB_PROXY:
        if (strlen(a) >= sizeof c->web_trusted_proxy)
            return bad(cmd, "--web-trusted-proxy", a, "an IP address");
        bj_strlcpy(c->web_trusted_proxy, a, sizeof c->web_trusted_proxy);
        break;
    case O_METRICS_PUBLIC: c->metrics_public = true; break;
    case O_WEB_HOST_NAME:
        if (c->n_web_host_names >= BJ_WEB_HOST_NAMES || !bj_web_host_name_valid(a))
            return bad(cmd, "--web-host-name", a, "a host name (letters, digits, '.', '-'; at most 16 of them)");
        bj_strlcpy(c->web_host_names[c->n_web_host_names++], a, sizeof c->web_host_names[0]);
        break;
    case O_WEB_COOKIE_SECURE: c->web_cookie_secure = true; break;
    case O_WEB_TLS_CERT:
    case O_WEB_TLS_KEY: {
        char *dst = opt == O_WEB_TLS_CERT ? c->web_tls_cert : c->web_tls_key;
        if (!a[0] || strlen(a) >= sizeof c->web_tls_cert)
            return bad(cmd, opt == O_WEB_TLS_CERT ? "--web-tls-cert" : "--web-tls-key", a, "a PEM file");
        bj_strlcpy(dst, a, sizeof c->web_tls_cert);
        break;
    }
    default:
        return -1;
    }
    return 0;
}

/* Options of how the engines run: schedule, threads, devices, memory layout. 0: applied; 2: a bad value, said why; -1: not one of them. */
static int opt_engine(const struct optctx *o)
{
    const char *cmd = o->cmd, *a = o->a;
    struct bj_config *c = o->c;
    struct raw *r = o->r;
    long l;
    char why[400];
    int n_servers;
    switch (o->opt) {
    case O_THREADS: {
        long max = bj_max_threads();
        if (bj_parse_long(a, 1, max, &l)) {
            fprintf(stderr, "brainjar %s: --threads: '%s' is not a thread count from 1 to %ld (4 per core)\n",
                    cmd, a, max);
            return 2;
        }
        c->spec.n_threads = (int)l;
        break;
    }
    case O_GPU:
        if (bj_parse_long(a, -1, 100000, &l))
            return bad(cmd, "--gpu-layers", a, "a layer count (-1 for all)");
        c->spec.n_gpu_layers = (int)l;
        break;
    case O_KV:
        if (bj_kv_type_parse(a, &c->spec.kv_type))
            return bad(cmd, "--kv-type", a, "one of f16, f32, bf16, q8_0, q4_0, q4_1, q5_0, q5_1");
        break;
    case O_FA:
        if (strcmp(a, "auto") == 0) c->spec.flash_attn = -1;
        else if (strcmp(a, "on") == 0) c->spec.flash_attn = 1;
        else if (strcmp(a, "off") == 0) c->spec.flash_attn = 0;
        else return bad(cmd, "--flash-attn", a, "on, off or auto");
        break;
    case O_CHUNK:
        if (bj_parse_long(a, 1, 8192, &l))
            return bad(cmd, "--prefill-chunk", a, "a token count (1-8192)");
        c->spec.prefill_chunk = (int)l;
        break;
    case O_OPENINGS:
        if (strcmp(a, "on") == 0) c->spec.own_openings = false;
        else if (strcmp(a, "off") == 0) c->spec.own_openings = true;
        else return bad(cmd, "--share-openings", a, "on or off");
        break;
    case O_NO_MMAP: c->spec.use_mmap = 0; break;
    case O_MMAP: c->spec.use_mmap = 1; break;
    case O_BSAMPLE:
        if (strcmp(a, "auto") == 0) c->spec.backend_sampling = -1;
        else if (strcmp(a, "on") == 0) c->spec.backend_sampling = 1;
        else if (strcmp(a, "off") == 0) c->spec.backend_sampling = 0;
        else return bad(cmd, "--backend-sampling", a, "on, off or auto");
        break;
    case O_CHAT: c->spec.chat_template = true; break;
    case O_RPC:
        if (bj_rpc_parse(a, NULL, &n_servers, why, sizeof why)) {
            fprintf(stderr, "brainjar %s: --rpc '%s': %s\n", cmd, a, why);
            return 2;
        }
        r->rpc = a;
        break;
    case O_SPLIT:
        if (bj_split_parse(a, &r->split_mode))
            return bad(cmd, "--split-mode", a, "none, layer or row");
        break;
    case O_MAIN_GPU:
        if (bj_parse_long(a, 0, BJ_MAX_DEVICES - 1, &l))
            return bad(cmd, "--main-gpu", a, "a device index (0-15)");
        r->main_gpu = l;
        break;
    case O_TSPLIT:
        if (bj_tensor_split_parse(a, r->tensor_split, &r->n_tensor_split, why, sizeof why)) {
            fprintf(stderr, "brainjar %s: --tensor-split: %s\n", cmd, why);
            return 2;
        }
        break;
    default:
        return -1;
    }
    return 0;
}

/* Options of lives and sampling. 0: applied; 2: a bad value, said why; -1: not one of them. */
static int opt_lives(const struct optctx *o)
{
    const char *cmd = o->cmd, *a = o->a, *flag = o->flag;
    struct bj_config *c = o->c;
    struct raw *r = o->r;
    int opt = o->opt;
    double d;
    long l;
    switch (o->opt) {
    case O_PAUSE:
        if (bj_parse_double(a, 0, 86400, &d))
            return bad(cmd, "--pause", a, "seconds (0-86400)");
        c->spec.pause_ms = (int)(d * 1000.0 + 0.5);
        break;
    case O_PACE:
        if (bj_parse_double(a, 0, 100000, &d))
            return bad(cmd, "--pace", a, "tokens per second (0-100000; 0: unpaced)");
        c->spec.pace = d;
        break;
    case O_TEMP:
        if (bj_parse_double(a, 0, 10, &d))
            return bad(cmd, "--temp", a, "a temperature (0-10)");
        r->s.temp = (float)d, r->set_temp = true;
        break;
    case O_TOPK:
        if (bj_parse_long(a, 0, 1000000, &l))
            return bad(cmd, "--top-k", a, "a non-negative integer");
        r->s.top_k = (int)l, r->set_top_k = true;
        break;
    case O_TOPP: case O_MINP:
        if (bj_parse_double(a, 0, 1, &d))
            return bad(cmd, flag, a, "a probability (0-1)");
        if (opt == O_TOPP) r->s.top_p = (float)d, r->set_top_p = true;
        else r->s.min_p = (float)d, r->set_min_p = true;
        break;
    case O_MAXTOK:
        if (bj_parse_long(a, 1, 1 << 20, &l))
            return bad(cmd, "--max-tokens", a, "a positive token count");
        r->s.max_tokens = (int)l, r->set_max_tokens = true;
        break;
    case O_SEED:
        if (bj_parse_long(a, 0, 0xffffffffL, &l))
            return bad(cmd, "--seed", a, "a seed (0-4294967295)");
        r->s.seed = (uint32_t)l, r->set_seed = true;
        break;
    default:
        return -1;
    }
    return 0;
}

/* Options of the run itself: output, duration, the budget, fault injection. 0: applied; 2: a bad value, said why; -1: not one of them. */
static int opt_run(const struct optctx *o)
{
    const char *cmd = o->cmd, *a = o->a, *flag = o->flag;
    struct bj_config *c = o->c;
    int opt = o->opt;
    double d;
    long l;
    switch (o->opt) {
    case O_EVENTS:
        if (strcmp(a, "text") == 0) c->events = BJ_OUT_TEXT;
        else if (strcmp(a, "jsonl") == 0) c->events = BJ_OUT_JSONL;
        else if (strcmp(a, "none") == 0) c->events = BJ_OUT_NONE;
        else return bad(cmd, "--events", a, "text, jsonl or none");
        c->events_set = true;
        break;
    case O_TUI:
        if (strcmp(a, "on") == 0) c->tui = BJ_TUI_ON;
        else if (strcmp(a, "off") == 0) c->tui = BJ_TUI_OFF;
        else if (strcmp(a, "auto") == 0) c->tui = BJ_TUI_AUTO;
        else return bad(cmd, "--tui", a, "on, off or auto");
        break;
    case O_FOCUS: bj_strlcpy(c->focus, a, sizeof c->focus); break;
    case O_DURATION:
        if (bj_parse_double(a, 0, 1e9, &d))
            return bad(cmd, "--duration", a, "seconds");
        c->duration_s = d;
        break;
    case O_STEPS:
        if (bj_parse_long(a, 1, 1L << 40, &l))
            return bad(cmd, "--steps", a, "a positive step count");
        c->spec.max_steps = l;
        break;
    case O_DUMP: bj_strlcpy(c->spec.dump_context, a, sizeof c->spec.dump_context); break;
    case O_LOG: {
        int lv = bj_log_level_parse(a);
        if (lv < 0)
            return bad(cmd, "--log-level", a, "debug, info, warn or error");
        c->log_level = lv; /* applied by main: parsing has no global side effects */
        break;
    }
    case O_RESERVE: case O_SHARE:
        if (bj_parse_double(a, 0, 100, &d) || (opt == O_SHARE && d <= 0))
            return bad(cmd, flag, a, "a percentage (0-100)");
        *(opt == O_RESERVE ? &c->spec.reserve_pct : &c->spec.brain_share_pct) = d;
        break;
    case O_HEADROOM:
        if (bj_parse_double(a, 0, 1e6, &d))
            return bad(cmd, "--headroom", a, "a non-negative number of GB");
        c->spec.headroom_gb = d;
        break;
    case O_FORCE: c->spec.force = true; break;
    case O_INJECT: {
        const char *colon = strrchr(a, ':');
        if (!colon || colon == a || (size_t)(colon - a) >= sizeof c->spec.inject_brain ||
            bj_parse_long(colon + 1, 1, 1L << 40, &l))
            return bad(cmd, "--inject-decode-error", a, "BRAIN:N");
        snprintf(c->spec.inject_brain, sizeof c->spec.inject_brain, "%.*s", (int)(colon - a), a);
        c->spec.inject_step = l;
        break;
    }
    case O_STALL: {
        char name[BJ_NAME_MAX];
        long step, ms;
        int n = 0;
        if (sscanf(a, "%31[A-Za-z0-9_-]:%ld:%ld%n", name, &step, &ms, &n) != 3 || a[n] || step < 1 ||
            ms < 1 || ms > 3600000)
            return bad(cmd, "--inject-stall", a, "BRAIN:N:MS");
        bj_strlcpy(c->spec.stall_brain, name, sizeof c->spec.stall_brain);
        c->spec.stall_step = step;
        c->spec.stall_ms = (int)ms;
        break;
    }
    case O_STALL_TIMEOUT:
        if (bj_parse_double(a, 0.1, 86400, &d))
            return bad(cmd, "--stall-timeout", a, "seconds (0.1 to 86400)");
        c->spec.stall_timeout_ms = (int)(d * 1000);
        break;

    default:
        return -1;
    }
    return 0;
}

/* Options of neural links to other nodes. 0: applied; 2: a bad value, said why; -1: not one of them. */
static int opt_peer(const struct optctx *o)
{
    const char *cmd = o->cmd, *a = o->a;
    struct bj_config *c = o->c;
    struct raw *r = o->r;
    int opt = o->opt;
    long l;
    switch (o->opt) {
    case O_PORT: case O_PEER_PORT: case O_TARGET_PORT:
        if (bj_parse_long(a, opt == O_PORT ? 0 : 1, 65535, &l))
            return bad(cmd, o->argv[optind - 2], a, "a port (1-65535)");
        *(opt == O_PORT ? &r->port : opt == O_PEER_PORT ? &r->peer_port : &r->target_port) = l;
        break;
    case O_LISTEN_HOST: r->listen_host = a; break;
    case O_NO_LISTEN: r->no_listen = true; break;
    case O_PEER:
        if (r->n_dial >= BJ_PEER_MAX_DIAL)
            return bad(cmd, "--peer", a, "allowed: too many peers");
        if (bj_peer_parse_addr(a, &r->dial[r->n_dial]))
            return bad(cmd, "--peer", a, "HOST:PORT");
        r->n_dial++;
        break;
    case O_PEER_IP: r->peer_ip = a; break;
    case O_TARGET_IP: r->target_ip = a; break;
    case O_NODE_ID:
        if (!*a || strlen(a) >= sizeof c->peer.node_id)
            return bad(cmd, "--node-id", a, "a name of 1 to 47 characters");
        r->node_id = a;
        break;
    case O_PEER_KEY: r->key = a; break;
    case O_ALLOW_UNAUTH: r->allow_legacy = true; break;
    case O_PEER_RATE:
        if (bj_parse_long(a, 1, 1000000, &l))
            return bad(cmd, "--peer-rate", a, "messages per second (1-1000000)");
        r->rate = l;
        break;
    default:
        return -1;
    }
    return 0;
}

/* Options of the store and the watchdog (ops.c). */
static int opt_ops(const struct optctx *o) { return bj_ops_parse_option(o->cmd, o->opt, o->a, &o->c->ops); }

static int (*const k_groups[])(const struct optctx *) = {opt_brains, opt_web, opt_engine, opt_lives, opt_run, opt_peer,
                                                        opt_ops};

int bj_cli_parse_run(const char *cmd, int argc, char **argv, struct bj_config *c)
{
    bj_config_defaults(c);
    struct raw r = {0};
    r.port = -1;
    r.split_mode = BJ_SPLIT_AUTO - 1;
    r.main_gpu = -1;
    r.n_tensor_split = -1;
    int opt;
    optind = 1;
    opterr = 0;
    /* '+': stop at the first non-option, so that argv[at] is always the element being parsed
     * (GNU getopt otherwise permutes argv, and a short-option cluster keeps optind in place). */
    int at = optind, li = -1;
    char flag[64];
    while ((opt = getopt_long(argc, argv, "+:h", k_opts, &li)) != -1) {
        const char *a = optarg;
        /* The flag as the user should read it: "--ram-limit" also for "--ram-limit=abc". */
        if (li >= 0)
            snprintf(flag, sizeof flag, "--%s", k_opts[li].name);
        else
            snprintf(flag, sizeof flag, "-%c", opt);
        const char *arg_at = at < argc ? argv[at] : "";
        at = optind;
        li = -1;
        const struct optctx o = {.cmd = cmd, .flag = flag, .a = a, .opt = opt, .c = c, .r = &r, .argv = argv};
        int rc = -1;
        for (size_t g = 0; rc < 0 && g < BJ_ARRAY_LEN(k_groups); g++)
            rc = k_groups[g](&o);
        if (rc > 0)
            return rc;
        if (rc == 0)
            continue;
        switch (opt) {
        case 'h': bj_cli_usage_run(cmd, stdout); return 1;
        case ':':
            fprintf(stderr, "brainjar %s: %s needs a value\n", cmd, arg_at);
            return 2;
        default: {
            if (optopt >= O_MODE) { /* a flag without a value given one ("--force=1") */
                const char *eq = strchr(arg_at, '=');
                fprintf(stderr, "brainjar %s: %.*s takes no value\n", cmd, eq ? (int)(eq - arg_at) : 64, arg_at);
            } else {
                fprintf(stderr, "brainjar %s: unknown option '%s' (%ssee brainjar %s --help)\n", cmd, arg_at,
                        strncmp(arg_at, "--", 2) == 0 ? "or an ambiguous abbreviation; " : "", cmd);
            }
            return 2;
        }
        }
    }
    if (bj_cli_no_more_args(cmd, optind, argc, argv))
        return 2;
    return apply_run(cmd, c, &r);
}

int bj_cli_option_error(const char *cmd, int opt, char **argv)
{
    if (opt == ':')
        fprintf(stderr, "brainjar %s: %s needs a value\n", cmd, argv[optind - 1]);
    else
        fprintf(stderr, "brainjar %s: bad option '%s' (see brainjar %s --help)\n", cmd, argv[optind - 1], cmd);
    return 2;
}

int bj_cli_no_more_args(const char *cmd, int first, int argc, char **argv)
{
    if (first >= argc)
        return 0;
    fprintf(stderr, "brainjar %s: unexpected argument '%s'\n", cmd, argv[first]);
    return 2;
}
