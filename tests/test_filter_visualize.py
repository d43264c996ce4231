#!/usr/bin/python3
"""Behaviour tests of `cnnfx visualize` (core/filters/visualize.c).

Every result is the PNG the CLI writes, read back and checked against torch references.

Models
  * lenet: the shipped Fashion-MNIST LeNet (weights/fashion_lenet.onnx: 28x28 grey, x = 1 - luma), rebuilt in
    torch from the ONNX initializers.
  * rgb: a small conv net with SEEDED RANDOM weights made here in torch,
    Conv(3,8,3)-ReLU-MaxPool-Conv(8,16,3)-ReLU-GlobalAveragePool-Flatten-Gemm(6), exported
    (a) with a dynamic input size and a final Softmax (sidecar: output_is_prob=true, so class
        scores are the Softmax input), ImageNet-style labels with comma-separated synonyms;
    (b) with a static 32x32 input, logits output;
    (c) = (b) with bgr=true in its sidecar (filter tiles must turn BGR weights into RGB);
    (d) = (a) with a sidecar that does not say output_is_prob.

Tests
  1. class mode (Simonyan et al. 2014), offline LeNet: the default class is the input's top class;
     on the result (the 28x28 working image read back from the exact 8x8 nearest-neighbour
     blocks of the 224 px PNG) that class is top with p > 0.99 and its logit is >= 10 above the
     mean image's (the start) and above the real input's; grey output; --class by label in any
     case and by index give the same bytes; same --seed same bytes, other seed other bytes;
     --size; cnnfx classify agrees on the result.
  2. class mode, rgb (a): class by a synonym ("TABBY CAT"), optimised at --size: the chosen
     class's LOGIT (pre-softmax) is top and far above its start value; rgb (b) fixed 32x32:
     default class = the input's top class, result at 96 px = exact 3x3 blocks of the 32 px
     working image, chosen class top there; (d) gives the same bytes as (a): the Softmax input
     is the score either way.
  3. filters mode: tiles equal the min-max normalised weights read from the ONNX file with
     python onnx (LeNet conv1 grey, conv2 via --layer relu2 as rows x input channels,
     --max-channels; rgb conv1 as RGB tiles; BGR model: channels reversed); grid geometry and
     separator colour as documented.
  4. activations mode: tiles equal torch's activations normalised per channel (LeNet default
     layer relu1; rgb (a) default = the ReLU after the first conv on a non-square image;
     --layer Conv#2 with --max-channels).
  5. errors: bad class / layer / layer of the wrong kind fail with exit 1 and a message naming
     it, nothing written; bad mode / size are usage errors (exit 2); a bad input among good ones
     gives exit 1 and the good one is still written; inputs never modified; SIGINT cancels a long
     run (exit 130, no output file).

Usage: test_filter_visualize.py --cnnfx BUILD/batch/cnnfx [--keep]
Prints PASS/FAIL lines and "N passed, M failed"; exit 1 on failure.
"""
import argparse
import gzip
import hashlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS = os.path.join(HERE, "..", "weights")
FMNIST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
PHOTOS = "/usr/share/darknet/data"
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
LUMA = [0.299, 0.587, 0.114]
SEP = np.array([0.35, 0.45, 0.75]) * 255  # separator colour (visualize.c)
RGB_LABELS = ["tench, Tinca tinca", "goldfish", "tabby, tabby cat", "Egyptian cat", "balloon", "pizza, pizza pie"]

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'} {name}" + (f" ({detail})" if detail else ""), flush=True)


def load8(path):
    return np.array(Image.open(path).convert("RGB"), dtype=np.int32)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---- models --------------------------------------------------------------------------------

def lenet():
    m = onnx.load(os.path.join(WEIGHTS, "fashion_lenet.onnx"))
    w = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}

    def feats(x):
        r1 = F.relu(F.conv2d(x, w["conv1.weight"], w["conv1.bias"], padding=2))
        return r1

    def logits(x):
        x = F.max_pool2d(feats(x), 2)
        x = F.max_pool2d(F.relu(F.conv2d(x, w["conv2.weight"], w["conv2.bias"])), 2)
        x = F.relu(F.linear(x.flatten(1), w["fc1.weight"], w["fc1.bias"]))
        x = F.relu(F.linear(x, w["fc2.weight"], w["fc2.bias"]))
        return F.linear(x, w["fc3.weight"], w["fc3.bias"])

    with open(os.path.join(WEIGHTS, "fashion.labels")) as f:
        labels = [l.strip() for l in f.read().strip().split("\n")]
    return logits, feats, w, labels


def lenet_x(rgb8):
    """28x28 RGB 0..255 -> LeNet input x = 1 - luma, [1,1,28,28]."""
    a = rgb8.astype(np.float32) / 255.0
    luma = sum(LUMA[c] * a[..., c] for c in range(3))
    return torch.from_numpy((1.0 - luma).astype(np.float32))[None, None]


def make_rgb_net(d):
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Linear(16, 6)).eval()
    with torch.no_grad():  # He-initialised convolutions and a strong head: decisive random features
        for layer in (m[0], m[3]):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        m[7].weight *= 10
    with open(os.path.join(d, "rgb.labels"), "w") as f:
        f.write("\n".join(RGB_LABELS) + "\n")
    paths = {}
    common = "input=input\nlabels=rgb.labels\nscale=1\nmean=0.485;0.456;0.406\nstd=0.229;0.224;0.225\n"
    # (a) dynamic size, Softmax output
    p = os.path.join(d, "rgbdyn.onnx")
    torch.onnx.export(nn.Sequential(m, nn.Softmax(1)).eval(), torch.zeros(1, 3, 32, 32), p, input_names=["input"],
                      output_names=["probs"], opset_version=13, dynamic_axes={"input": {2: "h", 3: "w"}})
    with open(p[:-5] + ".ini", "w") as f:
        f.write("[rgbdyn]\n" + common + "output=probs\noutput_is_prob=true\n")
    paths["dyn"] = p
    # the same network with a sidecar that does not flag the probability output
    shutil.copy(p, os.path.join(d, "rgbsm.onnx"))
    with open(os.path.join(d, "rgbsm.ini"), "w") as f:
        f.write("[rgbsm]\n" + common + "output=probs\n")
    paths["sm"] = os.path.join(d, "rgbsm.onnx")
    # (b) static 32x32, logits; (c) the same file read as BGR
    for name, extra in (("rgb32", ""), ("rgbbgr", "bgr=true\n")):
        p = os.path.join(d, name + ".onnx")
        torch.onnx.export(m, torch.zeros(1, 3, 32, 32), p, input_names=["input"], output_names=["logits"],
                          opset_version=13)
        with open(p[:-5] + ".ini", "w") as f:
            f.write(f"[{name}]\n" + common + "output=logits\ninput_size=32\n" + extra)
        paths[name] = p
    return m, paths


def rgb_x(rgb8):
    a = rgb8.astype(np.float32) / 255.0
    x = np.stack([(a[..., c] - MEAN[c]) / STD[c] for c in range(3)])
    return torch.from_numpy(x.astype(np.float32))[None]


# ---- the CLI ---------------------------------------------------------------------------------

def viz(exe, inputs, outdir, *args, timeout=300):
    if "--model" not in args:  # the LeNet cases: the Fashion-MNIST LeNet, by name
        args = ("--model", "fashion_lenet") + tuple(args)
    cmd = [exe, "visualize", "-q", "--overwrite", *map(str, args), *inputs, "-o", outdir]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def out_of(outdir, src):
    return os.path.join(outdir, os.path.basename(src))


# ---- grids (the documented layout) -----------------------------------------------------------

def grid_layout(n, th, tw, cols, size):
    rows = (n + cols - 1) // cols
    f = min((size - (cols + 1)) / (cols * tw), (size - (rows + 1)) / (rows * th))
    assert f >= 1, "tests use grids that need no reduction"
    z = int(math.floor(f))
    return rows, z, rows * (th * z + 1) + 1, cols * (tw * z + 1) + 1


def tile(img, i, cols, th, tw, z):
    y0 = 1 + (i // cols) * (th * z + 1)
    x0 = 1 + (i % cols) * (tw * z + 1)
    return img[y0:y0 + th * z, x0:x0 + tw * z]


def minmax(a, flat):
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.full_like(a, flat)


def check_grid(name, path, tiles, cols, size, tol=1.0):
    """tiles: list of [h,w] (grey) or [3,h,w] (RGB) arrays in 0..1, in grid order."""
    if not os.path.exists(path):
        check(f"{name}: written", False)
        return
    img = load8(path).astype(np.float64)
    t0 = np.asarray(tiles[0])
    th, tw = t0.shape[-2:]
    rows, z, gh, gw = grid_layout(len(tiles), th, tw, cols, size)
    ok_shape = img.shape[:2] == (gh, gw)
    check(f"{name}: grid {cols}x{rows} of {th}x{tw} tiles x{z} is {gw}x{gh} px", ok_shape, f"got {img.shape[1]}x"
          f"{img.shape[0]}")
    if not ok_shape:
        return
    worst = 0.0
    for i, t in enumerate(tiles):
        t = np.asarray(t, np.float64)
        want = t[None].repeat(3, 0) if t.ndim == 2 else t
        want = np.kron(want, np.ones((1, z, z))).transpose(1, 2, 0) * 255
        worst = max(worst, np.abs(tile(img, i, cols, th, tw, z) - want).max())
    check(f"{name}: every tile = the reference, enlarged x{z} nearest-neighbour", worst <= tol,
          f"max |diff| {worst:.2f}/255")
    mask = np.ones((gh, gw), bool)
    for i in range(len(tiles)):
        y0, x0 = 1 + (i // cols) * (th * z + 1), 1 + (i % cols) * (tw * z + 1)
        mask[y0:y0 + th * z, x0:x0 + tw * z] = False
    sep = img[mask]
    check(f"{name}: separators are the separator colour", np.abs(sep - SEP).max() <= 1.0)


# ---- tests -----------------------------------------------------------------------------------

def test_class_lenet(exe, d, fms, photo):
    logits, _, _, labels = lenet()
    src = fms[0]
    x_in = lenet_x(load8(src))
    with torch.no_grad():
        z_in = logits(x_in)[0].numpy()
        z_mean = logits(torch.zeros(1, 1, 28, 28))[0].numpy()  # x = 0: the white mean image
    c = int(z_in.argmax())
    o = os.path.join(d, "c1")
    t = time.time()
    r = viz(exe, [src], o, "--seed", 3)
    check("lenet class: exit 0", r.returncode == 0, r.stderr.strip()[-300:] + f" {time.time() - t:.1f} s")
    if r.returncode != 0:
        return
    img = load8(out_of(o, src))
    blocks = img.reshape(28, 8, 28, 8, 3)
    exact_blocks = bool((blocks == blocks[:, :1, :, :1]).all())
    check("lenet class: 224x224, grey, exact 8x8 nearest-neighbour blocks of the 28x28 working image",
          img.shape == (224, 224, 3) and exact_blocks and (img[..., 0] == img[..., 1]).all()
          and (img[..., 1] == img[..., 2]).all())
    work = img[4::8, 4::8]
    with torch.no_grad():
        z = logits(lenet_x(work))[0].numpy()
    p = np.exp(z - z.max())
    p /= p.sum()
    check(f"lenet class: default class = the input's top class ({labels[c]}), top on the result with p > 0.99",
          int(z.argmax()) == c and p[c] > 0.99, f"top {labels[int(z.argmax())]} p={p.max():.4f}")
    check("lenet class: logit far above the start (mean image) and above the real input",
          z[c] >= z_mean[c] + 10 and z[c] > z_in[c],
          f"logit {z[c]:.2f}, mean image {z_mean[c]:.2f}, input {z_in[c]:.2f}")
    # cnnfx classify agrees (at the working size: no resize)
    o28 = os.path.join(d, "c1-28")
    r = viz(exe, [src], o28, "--seed", 3, "--size", 28)
    a28 = load8(out_of(o28, src)) if r.returncode == 0 else None
    ok = a28 is not None and np.array_equal(a28, work)
    check("lenet class: --size 28 gives the working image itself", ok, r.stderr.strip()[-200:])
    if ok:
        oc = os.path.join(d, "c1-cls")
        rc = subprocess.run([exe, "classify", "-q", "--model", "fashion_lenet", "--overlay", "none", "--labels-image",
                             "no", "--top", "1", out_of(o28, src), "-o", oc], capture_output=True, text=True)
        check("lenet class: cnnfx classify reports the class on the result", rc.returncode == 0 and
              labels[c] in rc.stdout, rc.stdout.strip() + rc.stderr.strip()[-200:])
    # class by label (any case) and index; seeds
    shas = {}
    for tag, args in (("label", ["--class", "Trouser"]), ("lower", ["--class", "tROUSER"]), ("index", ["--class", 1]),
                      ("seed4", ["--class", 1, "--seed", 4])):
        oo = os.path.join(d, "c1-" + tag)
        r = viz(exe, [photo], oo, *args)
        shas[tag] = sha(out_of(oo, photo)) if r.returncode == 0 else tag
    check("lenet class: --class Trouser == tROUSER == 1 (same bytes)", shas["label"] == shas["lower"] == shas["index"])
    check("lenet class: another --seed gives another image", shas["seed4"] != shas["index"])
    oo = os.path.join(d, "c1-again")
    viz(exe, [photo], oo, "--class", "Trouser")
    check("lenet class: same seed, same bytes", os.path.exists(out_of(oo, photo)) and
          sha(out_of(oo, photo)) == shas["label"])
    if os.path.exists(out_of(oo, photo)):
        work = load8(out_of(oo, photo))[4::8, 4::8]
        with torch.no_grad():
            z = logits(lenet_x(work))[0].numpy()
        check("lenet class: Trouser is top on the Trouser visualisation", int(z.argmax()) == 1,
              f"top {labels[int(z.argmax())]}")
    o = os.path.join(d, "c1-size")
    r = viz(exe, [src], o, "--size", 100, "--iterations", 20)
    check("lenet class: --size 100 gives 100x100", r.returncode == 0 and load8(out_of(o, src)).shape == (100, 100, 3))


def test_class_rgb(exe, d, m, paths):
    # (a) dynamic size, Softmax output: scores are the logits
    rng = np.random.default_rng(5)
    src = os.path.join(d, "noise40.png")
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(src)
    with torch.no_grad():
        z_mean = m(torch.zeros(1, 3, 64, 64))[0].numpy()
    for spec, c in (("TABBY CAT", 2), ("Pizza Pie", 5)):  # synonyms of "tabby, tabby cat", "pizza, pizza pie"
        o = os.path.join(d, "c2-" + str(c))
        t = time.time()
        r = viz(exe, [src], o, "--model", paths["dyn"], "--class", spec, "--size", 64, "--seed", 1)
        check(f"rgb class {spec!r} (dynamic size, softmax output): exit 0", r.returncode == 0,
              r.stderr.strip()[-300:] + f" {time.time() - t:.1f} s")
        if r.returncode != 0:
            continue
        img = load8(out_of(o, src))
        with torch.no_grad():
            z = m(rgb_x(img))[0].numpy()
        runner = np.sort(z)[-2]
        check(f"rgb class {spec!r}: 64x64 colour image", img.shape == (64, 64, 3) and
              np.abs(img[..., 0] - img[..., 1]).mean() > 2)
        gain, spread = z[c] - z_mean[c], z_mean.max() - z_mean.min()
        check(f"rgb class {spec!r} (synonym, any case): top LOGIT on the result, far above its start value",
              int(z.argmax()) == c and gain >= 3 * spread,
              f"logit {z[c]:.2f} vs {z_mean[c]:.2f} at the mean image (logit spread there {spread:.2f}), "
              f"runner-up {runner:.2f}")
    # (b) static 32x32: default class = the input's top class; 96 px result = 3x3 blocks
    src32 = os.path.join(d, "noise32.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(src32)
    with torch.no_grad():
        zi = m(rgb_x(load8(src32)))[0].numpy()
    ci = int(zi.argmax())
    o = os.path.join(d, "c3")
    r = viz(exe, [src32], o, "--model", paths["rgb32"], "--size", 96, "--seed", 2)
    ok = r.returncode == 0
    check("rgb class (static 32x32): exit 0", ok, r.stderr.strip()[-300:])
    if ok:
        img = load8(out_of(o, src32))
        b = img.reshape(32, 3, 32, 3, 3)
        check("rgb class 32x32: 96 px result of exact 3x3 blocks", img.shape == (96, 96, 3) and
              bool((b == b[:, :1, :, :1]).all()))
        with torch.no_grad():
            z = m(rgb_x(img[1::3, 1::3]))[0].numpy()
        check(f"rgb class 32x32: default class = input's top ({RGB_LABELS[ci]}), top on the result",
              int(z.argmax()) == ci and z[ci] > zi[ci], f"logits {np.round(z, 2)}, input {np.round(zi, 2)}")
    o1, o2 = os.path.join(d, "c4a"), os.path.join(d, "c4b")
    viz(exe, [src], o1, "--model", paths["dyn"], "--class", 4, "--size", 48, "--iterations", 30, "--seed", 9)
    viz(exe, [src], o2, "--model", paths["dyn"], "--class", 4, "--size", 48, "--iterations", 30, "--seed", 9)
    check("rgb class: reproducible by seed", os.path.exists(out_of(o1, src)) and
          sha(out_of(o1, src)) == sha(out_of(o2, src)))
    o3 = os.path.join(d, "c4c")
    viz(exe, [src], o3, "--model", paths["sm"], "--class", 4, "--size", 48, "--iterations", 30, "--seed", 9)
    check("rgb class: a Softmax output is differentiated at its input even without output_is_prob",
          os.path.exists(out_of(o3, src)) and sha(out_of(o3, src)) == sha(out_of(o1, src)))


def test_filters(exe, d, fms, m, paths):
    _, _, w, _ = lenet()
    src = fms[1]
    w1 = w["conv1.weight"].numpy().astype(np.float64)  # [6,1,5,5]
    o = os.path.join(d, "f1")
    r = viz(exe, [src], o, "--mode", "filters")
    check("filters lenet: exit 0", r.returncode == 0, r.stderr.strip()[-300:])
    check_grid("filters lenet conv1 (default: first conv)", out_of(o, src), [minmax(f[0], 0.5) for f in w1], 3, 224)
    w2 = w["conv2.weight"].numpy().astype(np.float64)  # [16,6,5,5]
    o = os.path.join(d, "f2")
    r = viz(exe, [src], o, "--mode", "filters", "--layer", "relu2")
    check("filters lenet --layer relu2: exit 0", r.returncode == 0, r.stderr.strip()[-300:])
    check_grid("filters lenet conv2 via relu2: one row per filter, a tile per input channel", out_of(o, src),
               [t for f in w2 for t in minmax(f, 0.5)], 6, 224)
    o = os.path.join(d, "f3")
    r = viz(exe, [src], o, "--mode", "filters", "--layer", "Conv#2", "--max-channels", 4, "--size", 300)
    check_grid("filters lenet Conv#2 --max-channels 4 --size 300", out_of(o, src),
               [t for f in w2[:4] for t in minmax(f, 0.5)[:4]], 4, 300)
    # rgb net: read the weights from the exported ONNX file
    om = onnx.load(paths["rgb32"])
    conv = [n for n in om.graph.node if n.op_type == "Conv"][0]
    inits = {i.name: numpy_helper.to_array(i) for i in om.graph.initializer}
    wr = inits[conv.input[1]].astype(np.float64)  # [8,3,3,3]
    rgb_tiles = [minmax(f, 0.5) for f in wr]
    o = os.path.join(d, "f4")
    r = viz(exe, [src], o, "--mode", "filters", "--model", paths["rgb32"])
    check("filters rgb: exit 0", r.returncode == 0, r.stderr.strip()[-300:])
    check_grid("filters rgb conv1: RGB tiles", out_of(o, src), rgb_tiles, 3, 224)
    o = os.path.join(d, "f5")
    r = viz(exe, [src], o, "--mode", "filters", "--model", paths["rgbbgr"])
    check_grid("filters BGR model: tiles shown as RGB (weight channels reversed)", out_of(o, src),
               [t[::-1] for t in rgb_tiles], 3, 224)


def test_activations(exe, d, fms, m, paths):
    _, feats, _, _ = lenet()
    src = fms[2]
    with torch.no_grad():
        a = feats(lenet_x(load8(src)))[0].numpy().astype(np.float64)  # relu1 [6,28,28]
    o = os.path.join(d, "a1")
    r = viz(exe, [src], o, "--mode", "activations")
    check("activations lenet: exit 0", r.returncode == 0, r.stderr.strip()[-300:])
    check_grid("activations lenet (default: relu1) = torch, per-map normalised", out_of(o, src),
               [minmax(t, 0.0) for t in a], 3, 224, tol=1.5)
    o = os.path.join(d, "a1b")
    r = viz(exe, [src], o, "--mode", "activations", "--layer", "relu1", "--max-channels", 4)
    check_grid("activations lenet --layer relu1 --max-channels 4", out_of(o, src),
               [minmax(t, 0.0) for t in a[:4]], 2, 224, tol=1.5)
    rng = np.random.default_rng(8)
    src2 = os.path.join(d, "act40x48.png")
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(src2)
    x = rgb_x(load8(src2))
    with torch.no_grad():
        r1 = m[1](m[0](x))[0].numpy().astype(np.float64)  # ReLU after the first conv, [8,40,48]
        c2 = m[3](m[2](m[1](m[0](x))))[0].numpy().astype(np.float64)  # second conv output, [16,20,24]
    o = os.path.join(d, "a2")
    r = viz(exe, [src2], o, "--mode", "activations", "--model", paths["dyn"])
    check("activations rgb: exit 0", r.returncode == 0, r.stderr.strip()[-300:])
    check_grid("activations rgb 40x48 (default: the ReLU after the first conv) = torch", out_of(o, src2),
               [minmax(t, 0.0) for t in r1], 3, 224, tol=1.5)
    o = os.path.join(d, "a3")
    r = viz(exe, [src2], o, "--mode", "activations", "--model", paths["dyn"], "--layer", "Conv#2", "--max-channels", 5)
    check_grid("activations rgb --layer Conv#2 --max-channels 5 = torch", out_of(o, src2),
               [minmax(t, 0.0) for t in c2[:5]], 3, 224, tol=1.5)


def test_errors(exe, d, fms, paths):
    src = fms[0]
    cases = [
        ("--class giraffe", ["--class", "giraffe"], "giraffe"),
        ("--class 10", ["--class", "10"], "0..9"),
        ("activations --layer nope", ["--mode", "activations", "--layer", "nope"], "nope"),
        ("filters --layer nope", ["--mode", "filters", "--layer", "nope"], "nope"),
        ("filters --layer flat (not a convolution)", ["--mode", "filters", "--layer", "flat"], "convolution"),
        ("activations --layer logits (not a feature map)", ["--mode", "activations", "--layer", "logits"],
         "feature map"),
    ]
    for name, args, word in cases:
        o = os.path.join(d, "e-" + str(abs(hash(name))))
        r = viz(exe, [src], o, *args)
        check(f"{name}: exit 1, message names it, nothing written", r.returncode == 1 and word in r.stderr and
              not os.path.exists(out_of(o, src)), r.stderr.strip()[-200:])
    for name, args in (("--mode bogus", ["--mode", "bogus"]), ("--size 8", ["--size", "8"]),
                       ("--blur-every 0", ["--blur-every", "0"])):
        o = os.path.join(d, "u-" + name[2:6])
        r = viz(exe, [src], o, *args)
        check(f"{name}: usage error, exit 2", r.returncode == 2 and not os.path.exists(out_of(o, src)),
              r.stderr.strip()[-200:])
    bad = os.path.join(d, "zz-not-an-image.png")
    with open(bad, "w") as f:
        f.write("not a png\n")
    o = os.path.join(d, "e-mixed")
    r = viz(exe, [src, bad], o, "--iterations", 10)
    check("a bad input among good ones: exit 1, the good one written", r.returncode == 1 and
          os.path.exists(out_of(o, src)) and bad in r.stderr, r.stderr.strip()[-200:])
    # cancellation: SIGINT during a long run
    o = os.path.join(d, "e-cancel")
    cmd = [exe, "visualize", "-q", "--model", paths["dyn"], "--class", "1", "--size", 256, "--iterations", 5000,
           src, "-o", o]
    p = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    t = time.time()
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    left = os.listdir(o) if os.path.isdir(o) else []
    check("SIGINT cancels a long class visualisation: exit 130, no file left", p.returncode == 130 and not left,
          f"rc {p.returncode} after {time.time() - t:.2f} s, left {left}, {err.strip()[-150:]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(2)
    exe = os.path.abspath(a.cnnfx)
    d = tempfile.mkdtemp(prefix="cnnfx-visualize-")
    t0 = time.time()
    try:
        with gzip.open(FMNIST) as f:
            fm = np.frombuffer(f.read()[16:], np.uint8).reshape(-1, 28, 28)
        fms = []
        for i in (0, 2, 4):  # ankle boot, trouser, shirt; photo convention (dark garment on light)
            p = os.path.join(d, f"fm{i}.png")
            Image.fromarray(255 - fm[i]).convert("RGB").save(p)
            fms.append(p)
        photo = os.path.join(d, "dog.png")
        Image.open(os.path.join(PHOTOS, "dog.jpg")).convert("RGB").resize((160, 120)).save(photo)
        ins = fms + [photo]
        hashes = {p: sha(p) for p in ins}
        m, paths = make_rgb_net(d)

        test_class_lenet(exe, d, fms, photo)
        test_class_rgb(exe, d, m, paths)
        test_filters(exe, d, fms, m, paths)
        test_activations(exe, d, fms, m, paths)
        test_errors(exe, d, fms, paths)
        check("input files byte-identical after all runs", all(sha(p) == h for p, h in hashes.items()))
    finally:
        if a.keep:
            print("kept", d)
        else:
            shutil.rmtree(d, ignore_errors=True)
    n_ok = sum(results)
    print(f"time {time.time() - t0:.1f} s")
    print(f"{n_ok} passed, {len(results) - n_ok} failed")
    sys.exit(0 if results and n_ok == len(results) else 1)


if __name__ == "__main__":
    main()
