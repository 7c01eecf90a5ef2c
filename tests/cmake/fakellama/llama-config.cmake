# The fake llama's installed package: as incomplete as llama.cpp's for a static CUDA ggml.
get_filename_component(_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
if(NOT TARGET llama)
  add_library(llama STATIC IMPORTED)
  set_target_properties(llama PROPERTIES
    IMPORTED_LOCATION "${_prefix}/lib/libllama.a"
    INTERFACE_INCLUDE_DIRECTORIES "${_prefix}/include"
    INTERFACE_LINK_LIBRARIES "${_prefix}/lib/libggml-fake.a")
endif()
set(llama_FOUND TRUE)
