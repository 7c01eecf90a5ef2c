/* prompt: the words a brain is given.
 *
 * One prompt file per role (prompts/<role>.txt; built into the binary, replaceable with
 * --prompts DIR). A file may use {name}, {jar} (jar size in tokens) and {deaths}, the death
 * sentence, which is written the same way in every life ("You have died 3 times.") and is
 * appended when the file has no {deaths}. The formats of what a brain observes live here too.
 * Loaded once on the main thread; read-only afterwards (any thread). */
#ifndef BJ_PROMPT_H
#define BJ_PROMPT_H

#include <stddef.h>

struct bj_prompt_file {
    const char *role;
    const char *text;
};
extern const struct bj_prompt_file bj_builtin_prompts[]; /* NULL-terminated */

struct bj_prompts;

/* dir NULL or "": the built-in set. A role missing from dir falls back to the built-in one. */
struct bj_prompts *bj_prompts_load(const char *dir, char *err, size_t errlen);
void bj_prompts_free(struct bj_prompts *p);

/* Whether a prompt exists for role. */
int bj_prompts_has(const struct bj_prompts *p, const char *role);

/* The death sentence for a brain that died `deaths` times. Static storage is not used: the
 * result is written into buf. */
void bj_prompt_death_sentence(unsigned deaths, char *buf, size_t len);

/* The system prompt of a life (caller frees); NULL when out of memory or role unknown. */
char *bj_prompt_system(const struct bj_prompts *p, const char *role, const char *name, unsigned deaths,
                       long jar_tokens);

/* A lab brain's system prompt (caller frees): sys, then its frame's sentences, then (when it
 * remembers its deaths) what it was thinking when it last died, quoted and cut to 400 bytes.
 * NULL when out of memory. */
char *bj_prompt_framed(const char *sys, const char *frame, const char *last_words);

/* The first life's system prompt of brain `id` (role) must fit in its jar with room for a first
 * thought: the check `run` makes once the model's vocabulary is loaded, and `validate` makes with
 * the vocabulary alone. n_ctx_train: the model's training context (0: unknown); when even that
 * cannot hold the prompt, the message says to shorten the prompt rather than to grow the jar
 * past what the model allows. Returns 0, or -1 with a one-line reason in err. Any thread. */
struct llama_vocab;
int bj_prompt_check_fits(const struct bj_prompts *p, const struct llama_vocab *vocab, const char *role,
                         const char *id, long jar_tokens, long n_ctx_train, char *err, size_t errlen);

/* What a watcher receives (caller frees). */
char *bj_prompt_observed_thought(const char *from, const char *text);
char *bj_prompt_observed_death(const char *from, const char *cause, unsigned deaths);
char *bj_prompt_observed_resurrection(const char *from, unsigned deaths);
/* An operator's message (cut to BJ_PROMPT_SAY_MAX bytes), and another machine's brain's words. */
#define BJ_PROMPT_SAY_MAX 1000
char *bj_prompt_outside_voice(const char *from, const char *text);
char *bj_prompt_remote_thought(const char *from, const char *text);
/* What a lab brain that knows it is watched hears once its thought was read (readers: names). */
char *bj_prompt_watched_receipt(const char *readers);
/* A lab question (self-report), read just before the thought that answers it. */
char *bj_prompt_lab_question(const char *text);

/* Text that opens each thought in raw completion format. */
const char *bj_prompt_thought_cue(void);

/* Chat format: the first user message of a life, and the one sent when nothing was observed. */
const char *bj_prompt_chat_opening(void);
const char *bj_prompt_chat_continue(void);

#endif
