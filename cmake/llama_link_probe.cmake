# Injected into llama.cpp's own configure by scripts/bootstrap (-DCMAKE_PROJECT_INCLUDE=this file).
#
# Why: llama.cpp's installed CMake package (llama-config.cmake, ggml-config.cmake) and llama.pc
# describe a static libllama incompletely: the private dependencies of its static backends (NCCL,
# the CUDA runtime and cuBLAS of a non-GGML_STATIC CUDA build, ...) are not in them, so a program
# linking the installed static libraries fails with undefined symbols (ncclAllReduce, ...).
# llama.cpp's own build knows the whole link line: this adds one executable that links `llama`
# (never built: EXCLUDE_FROM_ALL), and CMake's file API reports the link line CMake computed for
# it; cmake/llama_link_export.cmake turns that into the installed prefix's brainjar-link.cmake.
get_property(_bj_probe_done GLOBAL PROPERTY BJ_LLAMA_LINK_PROBE)
if(NOT _bj_probe_done AND CMAKE_CURRENT_SOURCE_DIR STREQUAL CMAKE_SOURCE_DIR)
  set_property(GLOBAL PROPERTY BJ_LLAMA_LINK_PROBE TRUE)
  function(bj_llama_link_probe)
    if(NOT TARGET llama)
      message(WARNING "brainjar: no target 'llama' in ${CMAKE_SOURCE_DIR}: no link probe")
      return()
    endif()
    set(src "${CMAKE_BINARY_DIR}/brainjar-link-probe.c")
    file(WRITE "${src}" "int main(void) { return 0; }\n")
    add_executable(brainjar-link-probe EXCLUDE_FROM_ALL "${src}")
    target_link_libraries(brainjar-link-probe PRIVATE llama)
  endfunction()
  # At the end of the top-level CMakeLists.txt, when every target exists.
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL bj_llama_link_probe)
endif()
