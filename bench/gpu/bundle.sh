#!/bin/sh
# Pack the shared libraries that cnnfx and test_backend_ops need besides glibc and CUDA into
# BUILD/gpu-libs.tar.xz, for a GPU machine that may lack them (OpenBLAS, libpng, libjpeg, libcurl...).
# Run on the machine that built BUILD, before carrying BUILD to the GPU machine; bench/gpu/check.sh
# unpacks it there and uses only the libraries that machine is missing.
#   sh bench/gpu/bundle.sh [BUILD_DIR]      (default: build)
set -eu
build=${1:-build}
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
for f in "$build/batch/cnnfx" "$build/tests/test_backend_ops"; do
  ldd "$f" | awk '/=> \// {print $1, $3}'
done | sort -u | while read -r soname path; do
  case "$soname" in libc.so*|libm.so*|ld-linux*|libpthread.so*|libdl.so*|librt.so*|libresolv.so*) continue ;; esac
  cp -L "$path" "$stage/$soname"
done
tar -C "$stage" -cJf "$build/gpu-libs.tar.xz" .
ls -l "$build/gpu-libs.tar.xz"
