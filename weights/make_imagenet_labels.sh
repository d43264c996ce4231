#!/bin/sh
# Write the 1000 ImageNet (ILSVRC-2012) class names in class-index order, one per line, from
# Debian's darknet package: the first 1000 lines of imagenet.labels.list (WordNet ids) and of
# imagenet.shortnames.list (names) are those classes in another order; the ONNX zoo's
# classifiers number them in sorted WordNet-id order (n01440764 "tench" = 0).
#   sh weights/make_imagenet_labels.sh [DARKNET_DATA_DIR] > weights/imagenet1k.labels
set -eu
d=${1:-/usr/share/darknet/data}
head -n 1000 "$d/imagenet.labels.list" > "${TMPDIR:-/tmp}/cnnfx-wnid.$$"
head -n 1000 "$d/imagenet.shortnames.list" | paste "${TMPDIR:-/tmp}/cnnfx-wnid.$$" - | LC_ALL=C sort -k1,1 | cut -f2
rm -f "${TMPDIR:-/tmp}/cnnfx-wnid.$$"
