/* split: see split.h. */
#include "split.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

/* ---- parsers ----------------------------------------------------------------------------- */

/* HOST:PORT as llama.cpp's RPC client reads it (the host up to the first ':', IPv4 only). */
static int endpoint_check(const char *e, char *err, size_t errlen)
{
    const char *colon = strchr(e, ':');
    long port;
    if (!colon || colon == e || colon[1 + strspn(colon + 1, "0123456789")] || bj_parse_long(colon + 1, 1, 65535, &port)) {
        snprintf(err, errlen, "'%s' is not HOST:PORT (a host name or IPv4 address, a port from 1 to 65535)", e);
        return -1;
    }
    for (const char *p = e; p < colon; p++)
        if (*p <= ' ' || *p == ',' || *p == '/' || *p == '[' || *p == ']' || (unsigned char)*p >= 0x7f) {
            snprintf(err, errlen, "'%s': the host has a character a host name cannot have", e);
            return -1;
        }
    if (colon - e > 255) {
        snprintf(err, errlen, "'%.40s...': the host is longer than 255 characters", e);
        return -1;
    }
    return 0;
}

int bj_rpc_parse(const char *list, char (*out)[BJ_ENDPOINT_MAX], int *n, char *err, size_t errlen)
{
    char scratch[BJ_MAX_RPC][BJ_ENDPOINT_MAX];
    if (!out)
        out = scratch;
    *n = 0;
    if (!list || !*list) {
        snprintf(err, errlen, "no rpc-server given (HOST:PORT[,HOST:PORT...])");
        return -1;
    }
    if (strlen(list) >= BJ_RPC_LIST_MAX) {
        snprintf(err, errlen, "the list is longer than %d characters", BJ_RPC_LIST_MAX - 1);
        return -1;
    }
    for (const char *p = list;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0) {
            snprintf(err, errlen, "'%s' has an empty entry (HOST:PORT[,HOST:PORT...])", list);
            return -1;
        }
        if (len >= BJ_ENDPOINT_MAX) {
            snprintf(err, errlen, "'%.40s...' is too long for HOST:PORT", p);
            return -1;
        }
        if (*n >= BJ_MAX_RPC) {
            snprintf(err, errlen, "more than %d rpc-servers (llama.cpp's limit)", BJ_MAX_RPC);
            return -1;
        }
        char *e = out[*n];
        memcpy(e, p, len);
        e[len] = '\0';
        if (endpoint_check(e, err, errlen) != 0)
            return -1;
        for (int i = 0; i < *n; i++)
            if (strcmp(out[i], e) == 0) {
                snprintf(err, errlen, "'%s' is given twice", e);
                return -1;
            }
        (*n)++;
        if (!comma)
            return 0;
        p = comma + 1;
    }
}

static const char *const k_split_names[] = {"none", "layer", "row"};

int bj_split_parse(const char *s, int *out)
{
    for (int i = 0; i < (int)BJ_ARRAY_LEN(k_split_names); i++)
        if (strcmp(s, k_split_names[i]) == 0) {
            *out = i;
            return 0;
        }
    return -1;
}

const char *bj_split_name(int split)
{
    return split >= 0 && split < (int)BJ_ARRAY_LEN(k_split_names) ? k_split_names[split] : "auto";
}

struct bj_split_settings bj_split_default(void)
{
    return (struct bj_split_settings){.mode = BJ_SPLIT_AUTO, .main_gpu = -1, .n_tensor_split = 0};
}

bool bj_split_given(const struct bj_split_settings *s)
{
    return s->mode != BJ_SPLIT_AUTO || s->main_gpu >= 0 || s->n_tensor_split > 0;
}

int bj_split_check(struct bj_split_settings *s, bool rpc, int n_gpu_layers, char *err, size_t errlen)
{
    if ((rpc || bj_split_given(s)) && n_gpu_layers == 0) {
        snprintf(err, errlen, "--gpu-layers 0 keeps every layer on the CPU: --rpc, --split-mode, --main-gpu and "
                              "--tensor-split would have nothing to place");
        return -1;
    }
    if (s->main_gpu >= 0 && (s->mode == BJ_SPLIT_LAYER || s->mode == BJ_SPLIT_ROW)) {
        snprintf(err, errlen, "--main-gpu picks the one device of --split-mode none; with --split-mode %s every "
                              "device takes layers (--tensor-split weighs them)", bj_split_name(s->mode));
        return -1;
    }
    if (s->main_gpu >= 0)
        s->mode = BJ_SPLIT_NONE;
    if (s->n_tensor_split > 0 && s->mode == BJ_SPLIT_NONE) {
        snprintf(err, errlen, "--tensor-split weighs several devices, but %s uses one",
                 s->main_gpu >= 0 ? "--main-gpu" : "--split-mode none");
        return -1;
    }
    if (rpc && s->mode == BJ_SPLIT_ROW) {
        snprintf(err, errlen, "--split-mode row splits matrices over local GPUs of one backend, which rpc-servers "
                              "cannot join: use --split-mode layer with --rpc");
        return -1;
    }
    return 0;
}

int bj_tensor_split_parse(const char *s, float *out, int *n, char *err, size_t errlen)
{
    *n = 0;
    bool any = false;
    for (const char *p = s;;) {
        size_t len = strcspn(p, ",/");
        char num[64];
        double d;
        if (len == 0 || len >= sizeof num) {
            snprintf(err, errlen, "'%s' is not a list of shares (a,b,...: one number per device)", s);
            return -1;
        }
        memcpy(num, p, len);
        num[len] = '\0';
        if (bj_parse_double(num, 0, 1e9, &d) || !isfinite(d)) {
            snprintf(err, errlen, "'%s': '%s' is not a share (a number from 0)", s, num);
            return -1;
        }
        if (*n >= BJ_MAX_DEVICES) {
            snprintf(err, errlen, "'%s' has more than %d shares (llama.cpp's device limit)", s, BJ_MAX_DEVICES);
            return -1;
        }
        out[(*n)++] = (float)d;
        any = any || d > 0;
        if (!p[len])
            break;
        p += len + 1;
    }
    if (!any) {
        snprintf(err, errlen, "'%s': every share is 0 (leave --tensor-split out to split by free memory)", s);
        return -1;
    }
    return 0;
}

