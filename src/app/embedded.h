/* embedded: the default model (models/brainjar-voice.gguf) compiled into the brainjar binary.
 *
 * llama.cpp loads models from paths, so the bytes are exposed as an anonymous in-memory file
 * (memfd) whose /proc/self/fd path can be opened and mmap'd like any GGUF. */
#ifndef BJ_EMBEDDED_H
#define BJ_EMBEDDED_H

#include <stddef.h>

/* Size of the embedded model in bytes; 0 in the stage-1 binary that has none. */
size_t bj_embedded_model_size(void);

/* Writes a path to the embedded model into buf (once per process; later calls return the same
 * path). Returns 0, or -1 when there is no embedded model or the memfd cannot be made. Main
 * thread, before the engines start. */
int bj_embedded_model_path(char *buf, size_t len);

#endif
