# Turns prompts/*.txt into a C file: the built-in prompt set (prompts/ at build time).
# Usage: cmake -DSRC_DIR=<prompts> -DOUT=<file.c> -P embed_prompts.cmake
file(GLOB files "${SRC_DIR}/*.txt")
list(SORT files)
set(body "/* Generated from the prompts directory by cmake/embed_prompts.cmake. Do not edit. */\n#include \"prompt.h\"\n\nconst struct bj_prompt_file bj_builtin_prompts[] = {\n")
foreach(f ${files})
  get_filename_component(role ${f} NAME_WE)
  file(READ ${f} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "\\\\x\\1" escaped "${hex}")
  string(APPEND body "    {\"${role}\", \"${escaped}\"},\n")
endforeach()
string(APPEND body "    {0, 0},\n};\n")
file(WRITE ${OUT}.tmp "${body}")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
