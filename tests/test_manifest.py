#!/usr/bin/python3
"""The model manifest (weights/models.ini) is complete and cnnfx applies it.

  1. weights/imagenet1k.labels is what weights/make_imagenet_labels.sh makes from Debian's
     darknet lists (1000 names, "tench" first, "toilet tissue" last).
  2. Every model section has urls, size, sha256 (64 hex digits), licence and use; every
     classifier / dream / style network has machine-readable bgr/scale/mean/std that agree
     with its human-readable `preprocess` text, and its labels file exists.
  3. End to end, offline: a stand-in ONNX file installed as "vgg19" (a manifest copy with its
     size and hash) is classified with `-m vgg19`.  Its logits are the mean of each input
     channel, so a pure red photo tells which preprocessing cnnfx applied: with the manifest's
     BGR, 0-255, Caffe mean the top class is index 2 (the R channel, "great white shark");
     with the torchvision default it would be index 0 ("tench").

Usage: test_manifest.py --cnnfx BUILD/batch/cnnfx
"""
import argparse
import configparser
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
W = os.path.join(ROOT, "weights")
results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'} {name}" + (f" ({detail})" if detail else ""), flush=True)


def manifest():
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str
    cp.read(os.path.join(W, "models.ini"))
    return cp


def floats(s):
    return [float(v) for v in re.split("[;,]", s) if v.strip()]


def test_labels():
    r = subprocess.run(["sh", os.path.join(W, "make_imagenet_labels.sh")], capture_output=True, text=True)
    want = open(os.path.join(W, "imagenet1k.labels")).read()
    lines = want.splitlines()
    check("imagenet1k.labels is reproducible from darknet's lists", r.returncode == 0 and r.stdout == want,
          r.stderr.strip())
    check("imagenet1k.labels: 1000 classes, tench .. toilet tissue",
          len(lines) == 1000 and lines[0] == "tench" and lines[-1] == "toilet tissue" and lines[281] == "tabby")


def test_sections():
    cp = manifest()
    for name in cp.sections():
        if name == "cnnfx-manifest":
            continue
        s = cp[name]
        ok = all(k in s for k in ("urls", "size", "sha256", "license", "use", "preprocess"))
        ok = ok and re.fullmatch("[0-9a-f]{64}", s.get("sha256", "")) and s.get("size", "0").isdigit()
        ok = ok and all(u.startswith("https://") for u in s.get("urls", "").split(";"))
        check(f"{name}: urls, size, sha256, licence, use", ok)
        pre = s.get("preprocess", "")
        have = all(k in s for k in ("scale", "mean", "std"))
        if not have:
            check(f"{name}: machine-readable preprocessing", False)
            continue
        scale, mean, std = float(s["scale"]), floats(s["mean"]), floats(s["std"])
        bgr = s.get("bgr", "false") == "true"
        nums = [float(v) for v in re.findall(r"\d+\.\d+|\d+", pre.split("(")[0])]
        agree = (("BGR" in pre) == bgr and (scale == 255) == ("0-255" in pre) and
                 (len(mean) == 1 and mean[0] == 0 or all(m in nums for m in mean)) and
                 all(v == 1 or v in nums for v in std))
        check(f"{name}: bgr/scale/mean/std agree with '{pre.split('(')[0].strip()}'", agree,
              f"bgr={bgr} scale={scale} mean={mean} std={std}")
        if "labels" in s:
            check(f"{name}: labels file {s['labels']} exists", os.path.isfile(os.path.join(W, s["labels"])))


def png(path, w, h, rgb):
    raw = b"".join(b"\x00" + bytes(rgb) * w for _ in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
                           chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_end_to_end(cnnfx):
    d = tempfile.mkdtemp(prefix="cnnfx-manifest-")
    try:
        # logits[k] = mean of input channel k for k < 3, -100 for the other 997 classes
        wgt = np.zeros((1000, 3), np.float32)
        wgt[0, 0] = wgt[1, 1] = wgt[2, 2] = 1
        bias = np.full(1000, -100, np.float32)
        bias[:3] = 0
        g = helper.make_graph(
            [helper.make_node("GlobalAveragePool", ["data_0"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "b"], ["prob_1"], transB=1)],
            "standin", [helper.make_tensor_value_info("data_0", TensorProto.FLOAT, [1, 3, 224, 224])],
            [helper.make_tensor_value_info("prob_1", TensorProto.FLOAT, [1, 1000])],
            initializer=[numpy_helper.from_array(wgt, "w"), numpy_helper.from_array(bias, "b")])
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 9)], ir_version=4)
        data = os.path.join(d, "data")
        os.makedirs(os.path.join(data, "models"))
        mpath = os.path.join(data, "models", "vgg19.onnx")
        onnx.save(model, mpath)
        blob = open(mpath, "rb").read()
        cp = manifest()
        cp["vgg19"]["size"] = str(len(blob))
        cp["vgg19"]["sha256"] = hashlib.sha256(blob).hexdigest()
        man = os.path.join(d, "models.ini")
        with open(man, "w") as f:
            cp.write(f)
        img = os.path.join(d, "red.png")
        png(img, 64, 48, (255, 0, 0))
        env = dict(os.environ, CNNFX_MODELS_MANIFEST=man, CNNFX_DATA_DIR=data, CNNFX_WEIGHTS_DIR=W)
        r = subprocess.run([cnnfx, "classify", "-q", "--overlay", "none", "--labels-image", "no", "--top", "2",
                            "-m", "vgg19", "-o", os.path.join(d, "out"), img], capture_output=True, text=True, env=env)
        csv = open(os.path.join(d, "out", "red.csv")).read() if r.returncode == 0 else ""
        rows = [l.split(",") for l in csv.splitlines()[1:]]
        top = rows[0][3].strip('"') if rows else None
        check("-m vgg19 (stand-in): manifest preprocessing (BGR, 0-255, Caffe mean) and ImageNet labels",
              r.returncode == 0 and top == "great white shark", f"rc {r.returncode}, top {top!r} {r.stderr.strip()[:300]}")
        r = subprocess.run([cnnfx, "models", "verify"], capture_output=True, text=True, env=env)
        check("models verify accepts the stand-in with its recorded hash", r.returncode == 0 and "vgg19" in r.stdout + r.stderr,
              (r.stdout + r.stderr).strip()[:300])
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    a = ap.parse_args()
    test_labels()
    test_sections()
    test_end_to_end(os.path.abspath(a.cnnfx))
    n_fail = results.count(False)
    print(f"{results.count(True)} passed, {n_fail} failed")
    return 1 if n_fail or not results else 0  # nothing checked is a failure


if __name__ == "__main__":
    sys.exit(main())
