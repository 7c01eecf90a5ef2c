/* libFuzzer target: the GGUF gate (modelinfo.c, with gguf's own header parser underneath) on
 * arbitrary bytes given as a file. It must accept or refuse with a one-line reason; never crash
 * or hang. Accepted headers must be sane: what the gate promises the rest of brainjar. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "modelinfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static struct bj_modelinfo g_mi;

static void quiet(enum ggml_log_level level, const char *text, void *ud)
{
    (void)level, (void)text, (void)ud; /* gguf explains every refusal: millions of lines */
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    ggml_log_set(quiet, NULL);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz.gguf", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64], err[512] = "";
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    if (bj_modelinfo_read(path, &g_mi, err, sizeof err) == 0) {
        if (g_mi.n_layer == 0 || g_mi.n_head == 0 || g_mi.n_head_kv == 0 || g_mi.n_head % g_mi.n_head_kv ||
            g_mi.head_dim_k == 0 || g_mi.head_dim_v == 0 || g_mi.n_layer > BJ_MAX_LAYERS)
            abort();
        (void)bj_modelinfo_kv_bytes(&g_mi, GGML_TYPE_F16, GGML_TYPE_F16, 4096);
    } else if (!err[0] || strchr(err, '\n')) {
        abort();
    }
    close(fd);
    return 0;
}
