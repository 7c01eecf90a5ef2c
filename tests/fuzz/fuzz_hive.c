/* libFuzzer target: the hive-file parser (config.c) on arbitrary bytes, then the final checks.
 * Whatever the bytes, it must return 0 or -1 with a message; never crash, hang or leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct bj_config g_c; /* large: not on the stack */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > (1u << 20)) /* the reader's limit: larger files never reach the parser */
        return 0;
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    char err[1024];
    bj_config_defaults(&g_c);
    err[0] = '\0';
    if (bj_config_parse_hive(&g_c, "fuzz/t.hive", text, size, err, sizeof err) == 0)
        bj_config_finish(&g_c, err, sizeof err);
    else if (!err[0] || strchr(err, '\n'))
        abort(); /* every refusal says why, on one line */
    free(text);
    return 0;
}
