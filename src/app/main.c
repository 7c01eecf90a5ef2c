/* brainjar: keeps language-model brains alive in memory jars. main() only dispatches. */
#include <stdio.h>
#include <string.h>

#include <llama.h>

#include "budget_cli.h"
#include "cli.h"
#include "embedded.h"
#include "config.h"
#include "hive.h"
#include "log.h"
#include "mkmodel.h"

static void usage(FILE *to)
{
    fprintf(to,
            "usage: brainjar COMMAND [options]\n"
            "  run        run the hive (default: matrix mode on the embedded model)\n"
            "  validate   check the hive's memory budget and exit (0 ok, 1 too big)\n"
            "  estimate   estimate the memory a model needs\n"
            "  mkmodel    write a synthetic GGUF model\n"
            "  --version  print versions\n"
            "`brainjar COMMAND --help` explains each command.\n");
}

static void print_version(void)
{
    printf("brainjar %s\nllama.cpp %s (ggml %s)\n", BJ_VERSION, llama_version(), ggml_version());
}

static int run(int argc, char **argv)
{
    static struct bj_config c; /* large (paths): not on the stack */
    int rc = bj_cli_parse_run("run", argc, argv, &c);
    if (rc)
        return rc == 1 ? 0 : rc;
    return bj_hive_run(&c);
}

static int validate(int argc, char **argv)
{
    static struct bj_config c;
    int rc = bj_cli_parse_run("validate", argc, argv, &c);
    if (rc)
        return rc == 1 ? 0 : rc;
    char def[4096] = "";
    bj_embedded_model_path(def, sizeof def);
    return bj_validate_run(&c, def, stdout);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        print_version();
        return 0;
    }
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    bj_log_attach_llama();
    llama_backend_init();
    int rc;
    if (strcmp(cmd, "run") == 0) {
        rc = run(argc - 1, argv + 1);
    } else if (strcmp(cmd, "validate") == 0) {
        rc = validate(argc - 1, argv + 1);
    } else if (strcmp(cmd, "estimate") == 0) {
        rc = bj_estimate_main(argc - 1, argv + 1);
    } else if (strcmp(cmd, "mkmodel") == 0) {
        rc = bj_mkmodel_main(argc - 1, argv + 1);
    } else {
        fprintf(stderr, "brainjar: unknown command '%s'\n", cmd);
        usage(stderr);
        rc = 2;
    }
    llama_backend_free();
    return rc;
}
