#!/bin/sh
# The main job, end to end on Debian's photos with the offline default models:
# every filter on real pictures, then the core's own checks on a real network.
# Usage: sh tests/demo.sh [BUILD_DIR] [OUT_DIR]
set -eu
B=${1:-build}
OUT=${2:-demo-out}
C="$B/batch/cnnfx"
P=/usr/share/darknet/data
mkdir -p "$OUT"
echo "== style: dog.jpg in the style of Munch's The Scream (offline random-feature network)"
$C style --overwrite --style $P/scream.jpg --size 384 --iterations 60 $P/dog.jpg -o "$OUT/style"
echo "== dream: eagle.jpg"
$C dream --overwrite $P/eagle.jpg -o "$OUT/dream"
echo "== classify: all darknet photos, Grad-CAM heat maps + label images"
$C classify --overwrite $P/dog.jpg $P/horses.jpg $P/person.jpg -o "$OUT/classify"
echo "== fool: adversarial noise against the classifier"
$C fool --overwrite --epsilon 8 $P/kite.jpg -o "$OUT/fool"
echo "== visualize: first-layer filters"
$C visualize --overwrite --mode filters $P/dog.jpg -o "$OUT/visualize"
echo "== core: ONNX conformance tests of Conv, pooling, BatchNorm, LRN"
$C check-onnx /usr/share/libonnx-testdata/data/node/test_conv_with_strides_padding \
  /usr/share/libonnx-testdata/data/node/test_maxpool_2d_ceil /usr/share/libonnx-testdata/data/node/test_lrn \
  /usr/share/libonnx-testdata/data/node/test_batchnorm_example
echo "== core: analytic gradients (Conv, LRN, MaxPool) against central finite differences"
N=/usr/share/libonnx-testdata/data/node
for t in test_conv_with_strides_padding test_lrn test_maxpool_2d_ceil; do $C check-grad $N/$t/model.onnx; done
echo "== core: the shipped CIFAR-10 classifier (the offline default), every tensor with its shape"
$C info weights/cifar10.onnx --shape 1,3,32,32 | head -8
echo "outputs in $OUT/"
