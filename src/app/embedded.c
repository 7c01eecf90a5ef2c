/* embedded: see embedded.h. The bytes come from embedded_model.S (.incbin at build time). */
#include "embedded.h"

#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

extern const char bj_embedded_model_start[];
extern const char bj_embedded_model_end[];

size_t bj_embedded_model_size(void) { return (size_t)(bj_embedded_model_end - bj_embedded_model_start); }

int bj_embedded_model_path(char *buf, size_t len)
{
    static int fd = -1;
    size_t size = bj_embedded_model_size();
    if (size == 0)
        return -1;
    if (fd < 0) {
        fd = memfd_create("brainjar-default.gguf", MFD_CLOEXEC);
        if (fd < 0)
            return -1;
        for (size_t off = 0; off < size;) {
            ssize_t w = write(fd, bj_embedded_model_start + off, size - off);
            if (w <= 0) {
                close(fd);
                fd = -1;
                return -1;
            }
            off += (size_t)w;
        }
    }
    snprintf(buf, len, "/proc/%d/fd/%d", (int)getpid(), fd);
    return 0;
}
