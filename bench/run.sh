#!/bin/sh
# Benchmark cnnfx against PyTorch on the CPU and print a markdown table.
#
#   bench/run.sh [BUILD_DIR] [RUNS]        (defaults: build, 5)
#
# Exports VGG19 (to relu5_1) and GoogLeNet (to inception_4c) with seeded random weights, times
# `cnnfx bench MODEL --shape ... --grad` (forward + gradient of 0.5*||y||^2 to the input) and the
# same work in PyTorch (2 threads), measures the OpenBLAS sgemm peak, and reports the convolution
# GFLOP/s (2*K*C*kh*kw*OH*OW per conv, x2 for forward + input gradient).  Also runs the Winograd
# vs im2col micro-benchmark on the VGG19 layer shapes.  Needs /usr/bin/python3 with torch,
# torchvision and onnx, gcc and OpenBLAS.  Timings are only meaningful on an otherwise idle machine:
# the load average is printed before and after.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${1:-build}
runs=${2:-5}
case "$build" in /*) ;; *) build="$root/$build" ;; esac
py=/usr/bin/python3
cnnfx=$(find "$build" -name cnnfx -type f -perm -u+x 2>/dev/null | head -n 1)
if [ -z "$cnnfx" ]; then
  echo "run.sh: no cnnfx executable under $build (build it first: meson setup $build && ninja -C $build)" >&2
  exit 2
fi
work="$build/bench"
mkdir -p "$work"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-2}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
# CPU, SIMD level of cnnfx's own kernels, OpenBLAS and the core (kernel set) it runs.  cnnfx restarts
# itself with OPENBLAS_CORETYPE when OpenBLAS runs generic kernels on this CPU; do the same for
# sgemm_peak and PyTorch so that all three use the same BLAS kernels.
"$cnnfx" info --system | sed 's/^/  /'
if [ -z "${OPENBLAS_CORETYPE:-}" ]; then
  fix=$("$cnnfx" info --system | sed -n 's/^blas-coretype-env: //p')
  [ -n "$fix" ] && export OPENBLAS_CORETYPE="$fix" && echo "  (OPENBLAS_CORETYPE=$fix for the whole benchmark)"
fi

# 1. models
[ -f "$work/vgg19_relu5_1.onnx" ] && [ -f "$work/googlenet_inception4c.onnx" ] ||
  "$py" "$here/export_bench_models.py" "$work" >/dev/null

# 2. helper programs
glib_flags=$(pkg-config --cflags --libs glib-2.0 gmodule-2.0)
blas_flags=$(pkg-config --cflags --libs openblas 2>/dev/null || echo -lopenblas)
gcc -O2 "$here/sgemm_peak.c" -o "$work/sgemm_peak" $blas_flags
gcc -std=c11 -D_GNU_SOURCE -O2 -fopenmp -I"$root/core" "$here/bench_winograd.c" \
  -o "$work/bench_winograd" "$build/core/libcnnfx.a" $glib_flags $blas_flags -lm

# 3. sgemm peak
peak_line=$("$work/sgemm_peak" 4096 5)
echo "$peak_line"
peak=$(echo "$peak_line" | sed 's/.*= \([0-9.]*\) GFLOP.*/\1/')

# 4. Winograd vs im2col per VGG19 layer
echo
echo "Winograd F(4x4,3x3) vs im2col+sgemm, VGG19 3x3 layers at 512x512 input (forward, median of $runs):"
echo
"$work/bench_winograd" --runs "$runs"

# 5. networks
rows=""
for spec in vgg19_relu5_1:1,3,512,512 googlenet_inception4c:1,3,768,1024; do
  name=${spec%%:*}
  shape=${spec#*:}
  model="$work/$name.onnx"
  flops=$("$py" "$here/conv_flops.py" "$model" "$shape")
  gf=$(echo "$flops" | sed 's/.*conv_gflop_fwd_bwd=\([0-9.]*\).*/\1/')
  c_ms=$("$cnnfx" bench "$model" --shape "$shape" --grad --runs "$runs" | tail -n 1 |
    sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p')
  t_ms=$("$py" "$here/bench_torch.py" --model "$name" --runs "$runs" --threads 2 |
    sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p')
  rows="$rows$(awk -v n="$name" -v s="$shape" -v c="${c_ms:-nan}" -v t="${t_ms:-nan}" -v g="$gf" -v p="$peak" 'BEGIN {
    printf "| %s | %s | %.1f | %.0f | %.0f | %.2fx | %.0f | %.0f%% |\\n", n, s, g, c, t, t / c, g / (c / 1e3), 100 * g / (c / 1e3) / p }')"
done
echo
echo "Forward + input gradient of 0.5*||y||^2, median of $runs runs, 2 threads; conv GFLOP counted as direct convolution (fwd + input grad):"
echo
echo "| model | input | conv GFLOP | cnnfx ms | PyTorch ms | cnnfx speed-up | cnnfx conv GFLOP/s | of sgemm peak ($peak GFLOP/s) |"
echo "|---|---|---|---|---|---|---|---|"
printf "%b" "$rows"
echo
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
