#!/bin/sh
# Install everything cnnfx needs to build and test on Debian 12 (run as root).
set -eu
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends \
  build-essential meson ninja-build pkg-config ca-certificates debootstrap gettext \
  libglib2.0-dev libopenblas-dev libpng-dev libjpeg-dev libcurl4-openssl-dev \
  clang libclang-rt-14-dev \
  python3 python3-numpy python3-pil python3-torch python3-torchvision python3-onnx \
  libonnx-testdata dataset-fashion-mnist darknet \
  munge parallel slurm-wlm python3-yaml yamllint
