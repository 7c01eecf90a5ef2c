# CMake toolchain file: cross-compile for arm64 (Raspberry Pi 5, Jetson Orin) with Debian's cross
# toolchain (gcc-aarch64-linux-gnu, g++-aarch64-linux-gnu) against the multiarch :arm64 dev
# packages; programs built here (the tests, the build-time model maker) run under qemu-user.
# scripts/cross-arm64 drives it; BJ_ARM64_EXTRA is a prefix with the -dev files that cannot be
# co-installed with their amd64 twins (libwebsockets-dev: its lws_config.h differs per arch).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_ASM_COMPILER aarch64-linux-gnu-gcc)
# The programs run on the multiarch arm64 runtime (libc6:arm64 and its ld.so under /lib), qemu's
# default prefix, not the cross sysroot /usr/aarch64-linux-gnu: that one's ld.so is another glibc
# build than the libc.so.6 the host's ld.so.cache then finds, and their mix hangs in the first
# pthread_create (every unit test that starts a thread timed out).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64)

# Libraries and headers: the arm64 ones only (multiarch dirs under /usr, the cross sysroot); the
# programs CMake runs at build time (cmake itself, python3, pkg-config): the host's.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
if(DEFINED ENV{BJ_ARM64_EXTRA})
  set(ENV{PKG_CONFIG_LIBDIR} "$ENV{BJ_ARM64_EXTRA}/lib/pkgconfig:$ENV{PKG_CONFIG_LIBDIR}")
endif()
