#!/usr/bin/env bash
# The build logic that links libllama (cmake/llama_link*.cmake, scripts/bootstrap's use of them) on
# a fake llama.cpp whose static backend privately needs a library that its installed package does
# not name (as a CUDA ggml needs NCCL): built and installed the way bootstrap does it, then a
# consumer linked through cmake/llama_link.cmake must link and run; without the written link
# interface (the installed package alone) the same consumer must fail to link, which shows that
# the test sees the problem.
# usage: test_llama_link.sh SOURCE_DIR WORK_DIR
set -euo pipefail
src=$1 work=$2
here=$src/tests/cmake
rm -rf "$work" && mkdir -p "$work/nccl"
fail() { echo "FAIL: $*" >&2; exit 1; }
cc=${CC:-cc}
"$cc" -c "$here/fakenccl.c" -o "$work/nccl/fakenccl.o"
ar rcs "$work/nccl/libfakenccl.a" "$work/nccl/fakenccl.o"

# As scripts/bootstrap's build_llama: the probe and the file-API query, build, install, export.
build=$work/llama.build prefix=$work/prefix
mkdir -p "$build/.cmake/api/v1/query" && touch "$build/.cmake/api/v1/query/codemodel-v2"
cmake -S "$here/fakellama" -B "$build" -DCMAKE_PREFIX_PATH="$work/nccl" \
      -DCMAKE_PROJECT_INCLUDE="$src/cmake/llama_link_probe.cmake" >"$work/llama.log" 2>&1 ||
    { cat "$work/llama.log"; fail "configuring the fake llama.cpp"; }
cmake --build "$build" >>"$work/llama.log" 2>&1 || { cat "$work/llama.log"; fail "building the fake llama.cpp"; }
cmake --install "$build" --prefix "$prefix" >>"$work/llama.log" 2>&1 || fail "installing the fake llama.cpp"
cmake -DBUILD="$build" -DPREFIX="$prefix" -P "$src/cmake/llama_link_export.cmake" ||
    fail "llama_link_export.cmake"
link=$prefix/lib/cmake/llama/brainjar-link.cmake
[ -f "$link" ] || fail "no $link"
cat "$link"
grep -q 'libfakenccl.a' "$link" || fail "the link interface does not name the backend's private library"
grep -q 'CMAKE_CURRENT_LIST_DIR.*libllama.a' "$link" || fail "libllama is not named relative to the package"

# The prefix moves (bootstrap installs into PREFIX.tmp and renames it): paths must follow.
mv "$prefix" "$prefix.moved" && prefix=$prefix.moved

consumer() {  # consumer BUILD_DIR: configure and build; prints the link log on failure
    cmake -S "$here/consumer" -B "$1" -DBJ_SOURCE_DIR="$src" -Dllama_DIR="$prefix/lib/cmake/llama" \
          >"$1.log" 2>&1 && cmake --build "$1" >>"$1.log" 2>&1
}
consumer "$work/with" || { cat "$work/with.log"; fail "the consumer did not link with the written interface"; }
grep -q "link interface from llama.cpp's build" "$work/with.log" || fail "cmake/llama_link.cmake did not use the written interface"
"$work/with/consumer" || fail "the consumer ran wrong"

rm "$prefix/lib/cmake/llama/brainjar-link.cmake"
if consumer "$work/without"; then
    fail "the consumer linked without the written interface: this test no longer shows the problem"
fi
grep -q "fake_nccl_all_reduce" "$work/without.log" || { cat "$work/without.log"; fail "failed, but not for the missing library"; }
echo "PASS: the backend's private library follows into the link; without it: undefined fake_nccl_all_reduce"
