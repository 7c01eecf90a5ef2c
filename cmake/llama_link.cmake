# libllama for brainjar's targets: find_package(llama), then the target bj_llama with libllama's
# whole link interface.
#
# Where scripts/bootstrap built libllama, the prefix holds brainjar-link.cmake beside
# llama-config.cmake: the link line llama.cpp's own build computed (cmake/llama_link_probe.cmake,
# cmake/llama_link_export.cmake), so whatever the backends need (NCCL, the CUDA runtime, cuBLAS,
# OpenMP, ...) follows without a list here. Elsewhere (a system llama.cpp, a shared libllama) the
# installed package's own targets are used as they are.
find_package(llama REQUIRED)
if(NOT TARGET bj_llama)
  add_library(bj_llama INTERFACE)
  set(_bj_link_file "${llama_DIR}/brainjar-link.cmake")
  if(EXISTS "${_bj_link_file}")
    unset(BJ_LLAMA_LINK_LIBRARIES)
    include("${_bj_link_file}")
    target_include_directories(bj_llama INTERFACE $<TARGET_PROPERTY:llama,INTERFACE_INCLUDE_DIRECTORIES>)
    target_link_libraries(bj_llama INTERFACE ${BJ_LLAMA_LINK_LIBRARIES})
    list(LENGTH BJ_LLAMA_LINK_LIBRARIES _bj_n)
    message(STATUS "libllama: link interface from llama.cpp's build (${_bj_link_file}, ${_bj_n} items)")
  else()
    target_link_libraries(bj_llama INTERFACE llama)
    message(STATUS "libllama: link interface from its installed package (${llama_DIR})")
  endif()
endif()
