#!/bin/sh
# One-shot GPU check for issue #15 (CUDA backend), for ONE call on the lent GPU machine (H200),
# under 8 minutes.  Builds nothing: it takes a build directory made elsewhere (carried with the
# device tool's `carry`, e.g. carry=["build"]) that has build/core/cuda/libcnnfx-cuda.so, after
# `sh bench/gpu/bundle.sh build` there (it packs the non-CUDA libraries cnnfx needs into
# build/gpu-libs.tar.xz, for a GPU machine that lacks them).
#
#   sh bench/gpu/check.sh [BUILD_DIR] [RUNS]          (defaults: build, 10)
#
# 1. nvidia-smi, driver/runtime/cuDNN/cuBLAS versions (the backend prints them), PyTorch's versions;
#    missing shared libraries of the module or of cnnfx are named (CUDA libraries are looked up in
#    /usr/local/cuda and in PyTorch's nvidia-* wheels);
# 2. test_backend_ops -b cpu -b cuda:exact (FP32, no TF32): every op, forward and input gradient, rtol 1e-3;
# 3. the five filters on cpu and on cuda (same seed, dog.jpg or any photo found): PSNR of each image;
# 4. the rows of issue #15 against PyTorch on the same GPU (FP32, TF32, FP16+channels_last+CUDA graph):
#    a markdown table with the ratios.
# Exit status: 0 when every step ran and passed, 1 otherwise (the table is printed either way).
# UNVERIFIED: written and compiled on a machine without a GPU.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
runs=${2:-10}
case "$build" in /*) ;; *) build="$root/$build" ;; esac
# a Python with torch (full path: test_backend_ops spawns it without a PATH search)
py=""
pygen=""  # the case generator of test_backend_ops needs onnx
for cand in ${PYTHON:-} python3 /usr/bin/python3; do
  cand=$(command -v "$cand" 2>/dev/null) || continue
  [ -n "$pygen" ] || ! "$cand" -c "import onnx" 2>/dev/null || pygen=$cand
  [ -n "$py" ] || ! "$cand" -c "import torch" 2>/dev/null || py=$cand
done
[ -n "$py" ] || py=$(command -v python3 || echo /usr/bin/python3)
[ -n "$pygen" ] || pygen=$py
cnnfx="$build/batch/cnnfx"
tbo="$build/tests/test_backend_ops"
module="$build/core/cuda/libcnnfx-cuda.so"
work=${TMPDIR:-/tmp}/cnnfx-gpu-check
mkdir -p "$work"
status=0
t0=$(date +%s)
step() { echo; echo "== $1 ($(( $(date +%s) - t0 )) s)"; }
# timeout for the next command: at most $1 s, and the whole script stays under 460 s
tmo() { l=$((460 - ($(date +%s) - t0))); if [ "$l" -lt "$1" ]; then echo $((l > 3 ? l : 3)); else echo "$1"; fi; }

# paths compiled into the carried build point at the machine that built it
export CNNFX_CUDA_MODULE="$module" CNNFX_WEIGHTS_DIR="$root/weights" CNNFX_OFFLINE=1

step "machine"
nvidia-smi || echo "nvidia-smi failed"
$py -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), torch.cuda.get_device_name(0))' || echo "PyTorch with CUDA not usable"
for f in "$module" "$cnnfx" "$tbo"; do
  [ -e "$f" ] || { echo "missing $f: carry a build made with meson setup $build (CUDA found) && ninja -C $build"; exit 1; }
done
# Libraries for cnnfx and test_backend_ops only (not for PyTorch): CUDA from /usr/local/cuda or from
# PyTorch's nvidia-* wheels, and from BUILD/gpu-libs.tar.xz (bench/gpu/bundle.sh) whatever this
# machine lacks (OpenBLAS, libpng...), linked one by one into $work/libs.
extra=$($py -c 'import glob, os, site
dirs = set()
for sp in site.getsitepackages() + [site.getusersitepackages()]:
    for d in glob.glob(os.path.join(sp, "nvidia", "*", "lib")): dirs.add(d)
print(":".join(sorted(dirs)))' 2>/dev/null)
rm -rf "$work/libs" "$work/libs-all"
mkdir -p "$work/libs"
clib="$work/libs:/usr/local/cuda/lib64${extra:+:$extra}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
missing() { for f in "$module" "$cnnfx" "$tbo"; do LD_LIBRARY_PATH="$clib" ldd "$f" | awk '/not found/ {print $1}'; done | sort -u; }
if [ -n "$(missing)" ] && [ -f "$build/gpu-libs.tar.xz" ]; then
  mkdir -p "$work/libs-all" && tar -C "$work/libs-all" -xJf "$build/gpu-libs.tar.xz"
  for round in 1 2 3 4; do
    for so in $(missing); do [ -f "$work/libs-all/$so" ] && ln -sf "$work/libs-all/$so" "$work/libs/$so"; done
  done
  echo "bundled libraries used: $(ls "$work/libs" | tr '\n' ' ')"
fi
c() { LD_LIBRARY_PATH="$clib" "$@"; }
if [ -n "$(missing)" ]; then
  echo "cannot run: missing libraries: $(missing | tr '\n' ' ')"
  echo "(the module needs the CUDA major version it was built with: $(ldd "$module" | awk '/cudart|cublas\.|cudnn\./ {print $1}' | tr '\n' ' '))"
  exit 1
fi

step "test_backend_ops cpu vs cuda"
c timeout "$(tmo 150)" "$tbo" -b cpu -b cuda:exact --quiet --python "$pygen" --generator "$root/tests/backend_ops/gen.py" \
  --workdir "$work/backend_ops" > "$work/tbo.log" 2>&1
rc=$?
grep -m 1 "^cnnfx: cuda" "$work/tbo.log"  # device and versions, printed by the backend at start
tail -n 40 "$work/tbo.log" | grep -v "^cnnfx: cuda"
case $rc in 0) echo "test_backend_ops: PASS" ;; 77) echo "test_backend_ops: SKIPPED (no CUDA backend?)"; status=1 ;;
  *) echo "test_backend_ops: FAIL (exit $rc)"; status=1 ;; esac

step "filters cpu vs cuda"
photo=/usr/share/darknet/data/dog.jpg
[ -f "$photo" ] || photo=$(find /usr/share -name '*.jpg' -size +20k 2>/dev/null | head -n 1)
style=/usr/share/darknet/data/scream.jpg
[ -f "$style" ] || style="$photo"
if [ -z "$photo" ]; then
  echo "no photo found: filters skipped"; status=1
else
  for spec in "dream|--octaves 1 --iterations 5" "style|--style $style --iterations 5 --scales 1 --size 256" \
              "classify|--overlay gradcam" "fool|--iterations 5" "visualize|--iterations 5 --size 128"; do
    f=${spec%%|*}
    args=${spec#*|}
    for dev in cpu cuda; do
      rm -rf "$work/f-$f-$dev"
      # shellcheck disable=SC2086
      c timeout "$(tmo 60)" "$cnnfx" "$f" -q --seed 3 --device "$dev" -o "$work/f-$f-$dev" $args "$photo" \
        > "$work/f-$f-$dev.log" 2>&1 || { echo "$f on $dev failed: $(tail -n 3 "$work/f-$f-$dev.log")"; status=1; }
    done
    $py - "$work/f-$f-cpu" "$work/f-$f-cuda" "$f" <<'PY' || status=1
import os, sys
import numpy as np
from PIL import Image
a, b, f = sys.argv[1:4]
bad = 0
names = sorted(n for n in os.listdir(a) if n.lower().endswith((".png", ".jpg", ".jpeg"))) if os.path.isdir(a) else []
if not names or not os.path.isdir(b):
    print(f"{f}: no images to compare"); sys.exit(1)
for n in names:
    if not os.path.exists(os.path.join(b, n)):
        print(f"{f}: {n} missing on cuda"); bad += 1; continue
    x = np.asarray(Image.open(os.path.join(a, n)).convert("RGB"), dtype=np.float64)
    y = np.asarray(Image.open(os.path.join(b, n)).convert("RGB"), dtype=np.float64)
    if x.shape != y.shape:
        print(f"{f}: {n} shapes differ {x.shape} {y.shape}"); bad += 1; continue
    mse = ((x - y) ** 2).mean()
    psnr = float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)
    ok = psnr >= 35
    print(f"{f}: {n} PSNR cpu vs cuda = {psnr:.1f} dB {'OK' if ok else 'LOW (< 35 dB)'}")
    bad += not ok
sys.exit(1 if bad else 0)
PY
    for t in "$work/f-$f-cpu"/*.csv; do [ -f "$t" ] && echo "  cpu:  $(head -n 2 "$t" | tail -n 1)" && \
      echo "  cuda: $(head -n 2 "$work/f-$f-cuda/$(basename "$t")" 2>/dev/null | tail -n 1)"; done
  done
fi

step "benchmark: cnnfx on cuda (runs=$runs)"
timeout "$(tmo 120)" "$py" "$here/torch_gpu.py" --export "$work/models" || status=1
specs="vgg19_relu5_1:1,3,512,512:--grad googlenet_inception4c:1,3,768,1024:--grad vgg16:1,3,224,224: squeezenet1_1:1,3,224,224:"
ms() { sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p' | tail -n 1; }
for spec in $specs; do
  name=${spec%%:*}; rest=${spec#*:}; shape=${rest%%:*}; grad=${rest#*:}
  model="$work/models/$name.onnx"
  # shellcheck disable=SC2086
  c timeout "$(tmo 60)" "$cnnfx" bench "$model" --shape "$shape" $grad --device cuda --exact --runs "$runs" \
    > "$work/b-$name-fp32.txt" 2> "$work/b-$name.err"
  # shellcheck disable=SC2086
  c timeout "$(tmo 60)" "$cnnfx" bench "$model" --shape "$shape" $grad --device cuda --runs "$runs" \
    > "$work/b-$name-tf32.txt" 2>> "$work/b-$name.err"
  echo "$name: FP32 $(ms < "$work/b-$name-fp32.txt") ms, TF32 $(ms < "$work/b-$name-tf32.txt") ms"
  grep -h "^plan:" "$work/b-$name-tf32.txt" | sed "s/^/  /"
  [ -n "$(ms < "$work/b-$name-fp32.txt")" ] && [ -n "$(ms < "$work/b-$name-tf32.txt")" ] ||
    { echo "cnnfx bench $name failed: $(tail -n 3 "$work/b-$name.err")"; status=1; }
done

step "benchmark: PyTorch on the same GPU"
timeout "$(tmo 150)" "$py" "$here/torch_gpu.py" --time --runs "$runs" > "$work/torch.txt" 2>&1 || status=1
cat "$work/torch.txt"
rows=""
for spec in $specs; do
  name=${spec%%:*}; rest=${spec#*:}; shape=${rest%%:*}; grad=${rest#*:}
  rows="$rows$(awk -v n="$name" -v s="$shape" -v g="${grad:+fwd+grad}" -v a="$(ms < "$work/b-$name-fp32.txt")" \
    -v b="$(ms < "$work/b-$name-tf32.txt")" -v c="$(grep "torch $name fp32 " "$work/torch.txt" | ms)" \
    -v d="$(grep "torch $name tf32 " "$work/torch.txt" | ms)" \
    -v e="$(grep "torch $name fp16+cl+graph " "$work/torch.txt" | ms)" '
    function v(x) { return x == "" ? "-" : sprintf("%.2f", x) }
    function r(t, m) { return (t == "" || m == "" || m + 0 <= 0) ? "-" : sprintf("%.2fx", t / m) }
    BEGIN { printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", n, s, (g == "" ? "fwd" : g),
      v(a), v(b), v(c), v(d), v(e), r(c, a), r(d, b), r(e, b) }')\n"
done
echo
echo "cnnfx CUDA vs PyTorch on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1), median of $runs, batch 1 (ratio > 1: cnnfx faster):"
echo
echo "| model | input | work | cnnfx FP32 ms | cnnfx TF32 ms | torch FP32 ms | torch TF32 ms | torch FP16+CL+graph ms | FP32 ratio | TF32 ratio | cnnfx TF32 vs torch best |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf "%b" "$rows"
echo
echo "command: sh bench/gpu/check.sh ${1:-build} $runs; total $(( $(date +%s) - t0 )) s; status $status"
exit $status
