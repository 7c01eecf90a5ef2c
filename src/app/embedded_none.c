/* embedded_none: the stage-1 binary (used to make the tiny model) embeds nothing. */
#include "embedded.h"

size_t bj_embedded_model_size(void) { return 0; }

int bj_embedded_model_path(char *buf, size_t len)
{
    (void)buf;
    (void)len;
    return -1;
}
