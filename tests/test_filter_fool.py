#!/usr/bin/python3
"""Behaviour tests of `cnnfx fool` (core/filters/fool.c).

Every adversarial result is checked the way a user would: the written PNG is loaded from
disk (8-bit) and classified by torch with the same preprocessing as cnnfx (bilinear resize
with half-pixel centres, antialiased when shrinking like PIL; luma / mean / std), and, when `cnnfx classify`
works, by cnnfx too.  L-inf is an exact integer check on the 8-bit files.

Models
  * lenet: the shipped Fashion-MNIST LeNet (weights/fashion_lenet.onnx, x = 1 - luma at 28x28), rebuilt
    in torch from the ONNX initializers for the reference classification.
  * resnet: torchvision ResNet-18 with 10 classes and SEEDED RANDOM weights, exported at
    64x64 with a sidecar resnet.ini (input_size=64, ImageNet mean/std, labels file).
  * linear: hand-built ONNX, logits = [sum(x) - S + delta, 0] on an 8x8 RGB input, for the
    8-bit rounding logic (deterministic).

Tests
  1. lenet untargeted I-FGSM (eps 32) on Fashion-MNIST test images and a darknet photo:
     top label changes on the re-loaded PNG, L-inf <= eps, report matches.
  2. lenet targeted least-likely (eps 48): the re-loaded PNG's top label is the target.
  3. resnet 64x64: untargeted PGD (default eps 4) and targeted least-likely / by label.
  4. FGSM eps=0 changes no pixel and says "not fooled"; input files are byte-identical
     after all runs; PGD is reproducible by seed.
  5. rounding: I-FGSM with step 0.3 fools in float but not after rounding; fool must
     re-project (more iterations than asked) and the saved file fools.
  6. honesty: an attack that cannot succeed still writes the image and says "not fooled".
  7. bad --target values fail with a message and write nothing.

Usage: test_filter_fool.py --cnnfx BUILD/batch/cnnfx [--keep]
Prints PASS/FAIL lines and "N passed, M failed"; exit 1 on failure.
"""
import argparse
import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
WEIGHTS = os.path.join(HERE, "..", "weights")
FMNIST = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
PHOTOS = "/usr/share/darknet/data"
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
LUMA = [0.299, 0.587, 0.114]

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'} {name}" + (f" ({detail})" if detail else ""), flush=True)


def load8(path):
    return np.array(Image.open(path).convert("RGB"), dtype=np.int32)


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Ref:
    """Torch classifier with cnnfx's preprocessing: x = (rgb_or_luma * scale - mean) / std."""

    def __init__(self, model, size, gray, scale, mean, std, labels):
        self.model, self.size, self.gray = model.eval(), size, gray
        self.scale, self.mean, self.std, self.labels = scale, mean, std, labels

    def probs(self, path):
        a = torch.from_numpy(load8(path).astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        if a.shape[2:] != (self.size, self.size):
            a = F.interpolate(a, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        if self.gray:
            a = sum(LUMA[c] * a[:, c:c + 1] for c in range(3))
            x = (a * self.scale - self.mean[0]) / self.std[0]
        else:
            x = torch.cat([(a[:, c:c + 1] * self.scale - self.mean[c]) / self.std[c] for c in range(3)], 1)
        with torch.no_grad():
            return torch.softmax(self.model(x).double(), 1)[0].numpy()


def lenet_ref():
    m = onnx.load(os.path.join(WEIGHTS, "fashion_lenet.onnx"))
    w = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}

    class LeNet(nn.Module):
        def forward(self, x):
            x = F.max_pool2d(F.relu(F.conv2d(x, w["conv1.weight"], w["conv1.bias"], padding=2)), 2)
            x = F.max_pool2d(F.relu(F.conv2d(x, w["conv2.weight"], w["conv2.bias"])), 2)
            x = F.relu(F.linear(x.flatten(1), w["fc1.weight"], w["fc1.bias"]))
            x = F.relu(F.linear(x, w["fc2.weight"], w["fc2.bias"]))
            return F.linear(x, w["fc3.weight"], w["fc3.bias"])

    with open(os.path.join(WEIGHTS, "fashion.labels")) as f:
        labels = [l.strip() for l in f.read().strip().split("\n")]
    return Ref(LeNet(), 28, True, -1.0, [-1.0] * 3, [1.0] * 3, labels)


def make_resnet(d):
    torch.manual_seed(0)
    m = torchvision.models.resnet18(num_classes=10).eval()
    with torch.no_grad():
        m.fc.weight *= 20  # decisive scores (a random head gives near-uniform probabilities)
    path = os.path.join(d, "resnet.onnx")
    torch.onnx.export(m, torch.zeros(1, 3, 64, 64), path, input_names=["input"], output_names=["logits"],
                      opset_version=13)
    labels = [f"thing{i}" for i in range(10)]
    with open(os.path.join(d, "resnet.labels"), "w") as f:
        f.write("\n".join(labels) + "\n")
    with open(os.path.join(d, "resnet.ini"), "w") as f:
        f.write("[resnet]\ninput=input\noutput=logits\nlabels=resnet.labels\ninput_size=64\nscale=1\n"
                "mean=0.485;0.456;0.406\nstd=0.229;0.224;0.225\n")
    return path, Ref(m, 64, False, 1.0, MEAN, STD, labels)


def make_linear(d, img, delta, name):
    """logits = [sum(x) - S + delta, 0] over an 8x8 RGB image, S = sum of img/255."""
    S = float(img.astype(np.float64).sum() / 255.0)
    W = np.zeros((192, 2), np.float32)
    W[:, 0] = 1
    B = np.array([-S + delta, 0], np.float32)
    g = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "W", "B"], ["logits"])],
        "linear", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")])
    path = os.path.join(d, name + ".onnx")
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    with open(os.path.join(d, name + ".ini"), "w") as f:
        f.write(f"[{name}]\ninput=input\noutput=logits\nscale=1\nmean=0\nstd=1\ngray=false\ninput_size=8\n")
    return path


REPORT = re.compile(r"^(?P<src>.*?): (?P<before>.*?) \((?P<pb>[\d.]+)%\) -> (?P<after>.*?) \((?P<pa>[\d.]+)%\)"
                    r"(, target (?P<target>.*) \([\d.]+%\))?, L-inf (?P<linf>\d+)/255 after 8-bit save, "
                    r"(?P<iters>\d+) iterations, (?P<fooled>fooled|not fooled)$")


def report(outdir, stem):
    with open(os.path.join(outdir, stem + ".fool.txt")) as f:
        line = f.read().strip()
    m = REPORT.match(line)
    return m, line


class Runner:
    def __init__(self, exe):
        self.exe = exe
        self.classify_ok = None

    def fool(self, inputs, outdir, *args):
        if "--model" not in args:  # the LeNet cases: the Fashion-MNIST LeNet, by name
            args = ("--model", "fashion_lenet") + tuple(args)
        cmd = [self.exe, "fool", "-q", *args, *inputs, "-o", outdir]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    def classify_top(self, path, model_args, d):
        """cnnfx classify's top index, or None when classify is not available."""
        if self.classify_ok is False:
            return None
        o = tempfile.mkdtemp(dir=d)
        model_args = list(model_args) or ["--model", "fashion_lenet"]
        r = subprocess.run([self.exe, "classify", "-q", *model_args, "--format", "json", "--top", "1", "--overlay",
                            "none", path, "-o", o], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            self.classify_ok = False
            print(f"  (cnnfx classify not usable, torch reference only: {r.stderr.strip()[:120]})")
            return None
        self.classify_ok = True
        import json
        js = [f for f in os.listdir(o) if f.endswith(".json")]
        with open(os.path.join(o, js[0])) as f:
            return json.load(f)["top"][0]["index"]


def check_attack(name, run, ref, d, inputs, outdir, eps, model_args, targeted=False, expect_target=None):
    """Run checks on each output: re-loaded PNG classified by torch (and cnnfx classify)."""
    for src in inputs:
        stem = os.path.splitext(os.path.basename(src))[0]
        out = os.path.join(outdir, stem + ".png")
        if not os.path.exists(out):
            check(f"{name} {stem}: output written", False)
            continue
        a, b = load8(src), load8(out)
        linf = int(np.abs(a - b).max()) if a.shape == b.shape else 999
        p0, p1 = ref.probs(src), ref.probs(out)
        y0, y1 = int(p0.argmax()), int(p1.argmax())
        m, line = report(outdir, stem)
        ok_rep = m is not None and m["before"] == ref.labels[y0] and m["after"] == ref.labels[y1] and \
            int(m["linf"]) == linf and m["fooled"] == "fooled"
        if targeted:
            want = expect_target(p0) if expect_target else None
            ok = want is not None and y1 == want and (m is None or m["target"] == ref.labels[want])
            what = f"{ref.labels[y0]} -> {ref.labels[y1]} ({100 * p1[y1]:.1f}%), target {ref.labels[want]}"
        else:
            ok = y1 != y0
            what = f"{ref.labels[y0]} -> {ref.labels[y1]} ({100 * p1[y1]:.1f}%)"
        ct = run.classify_top(out, model_args, d)
        if ct is not None:
            ok = ok and ct == y1
            what += f", cnnfx classify {ref.labels[ct]}"
        check(f"{name} {stem}: {what}, L-inf {linf} <= {eps}", ok and linf <= eps and a.shape == b.shape)
        check(f"{name} {stem}: report line", ok_rep, line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(2)
    d = tempfile.mkdtemp(prefix="cnnfx-fool-")
    run = Runner(os.path.abspath(args.cnnfx))
    try:
        # inputs: Fashion-MNIST test images in the photo convention (dark garment on light
        # background: the offline model negates), and a darknet photo as PNG
        with gzip.open(FMNIST) as f:
            fm = np.frombuffer(f.read()[16:], np.uint8).reshape(-1, 28, 28)
        fms = []
        for i in (0, 1, 2, 4, 7):
            p = os.path.join(d, f"fm{i}.png")
            Image.fromarray(255 - fm[i]).save(p)
            fms.append(p)
        photos = []
        for n in ("dog", "eagle"):
            p = os.path.join(d, n + ".png")
            Image.open(os.path.join(PHOTOS, n + ".jpg")).convert("RGB").save(p)
            photos.append(p)
        ins = fms + photos
        hashes = {p: sha(p) for p in ins}
        lenet = lenet_ref()

        # 1. the Fashion-MNIST LeNet (--model fashion_lenet), untargeted I-FGSM
        o1 = os.path.join(d, "o1")
        r = run.fool(fms + photos[:1], o1, "--method", "ifgsm", "--epsilon", "32", "--step", "2",
                     "--iterations", "30")
        check("lenet ifgsm: exit 0", r.returncode == 0, r.stderr.strip()[-300:])
        check_attack("lenet ifgsm", run, lenet, d, fms + photos[:1], o1, 32, [])

        # 2. targeted least-likely
        o2 = os.path.join(d, "o2")
        tin = [fms[0], fms[2], fms[3], photos[0]]
        r = run.fool(tin, o2, "--method", "pgd", "--epsilon", "48", "--step", "2", "--iterations", "40",
                     "--target", "least-likely")
        check("lenet least-likely: exit 0", r.returncode == 0, r.stderr.strip()[-300:])
        check_attack("lenet least-likely", run, lenet, d, tin, o2, 48, [], targeted=True,
                     expect_target=lambda p: int(p.argmin()))

        # 3. torchvision ResNet-18 at 64x64
        rpath, resnet = make_resnet(d)
        o3 = os.path.join(d, "o3")
        r = run.fool(photos, o3, "--model", rpath)  # defaults: PGD, eps 4, step 1, 20 iterations
        check("resnet pgd: exit 0", r.returncode == 0, r.stderr.strip()[-300:])
        check_attack("resnet pgd eps 4", run, resnet, d, photos, o3, 4, ["--model", rpath])
        o3b = os.path.join(d, "o3b")
        r = run.fool(photos[:1], o3b, "--model", rpath, "--method", "ifgsm", "--epsilon", "16", "--iterations",
                     "20", "--target", "least-likely")
        check("resnet least-likely: exit 0", r.returncode == 0, r.stderr.strip()[-300:])
        check_attack("resnet least-likely", run, resnet, d, photos[:1], o3b, 16, ["--model", rpath], targeted=True,
                     expect_target=lambda p: int(p.argmin()))
        # a target by label (case-insensitive): the eagle's third most likely class, by name
        third = int(np.argsort(-resnet.probs(photos[1]))[2])
        o3c = os.path.join(d, "o3c")
        r = run.fool(photos[1:], o3c, "--model", rpath, "--method", "ifgsm", "--epsilon", "8", "--iterations", "10",
                     "--target", resnet.labels[third].upper())
        check("resnet target by label: exit 0", r.returncode == 0, r.stderr.strip()[-300:])
        check_attack("resnet target by label", run, resnet, d, photos[1:], o3c, 8, ["--model", rpath],
                     targeted=True, expect_target=lambda p: third)

        # 4. eps 0 changes nothing; inputs untouched; seeds
        o4 = os.path.join(d, "o4")
        r = run.fool([fms[0], photos[0]], o4, "--method", "fgsm", "--epsilon", "0")
        same = all(np.array_equal(load8(p), load8(os.path.join(o4, os.path.splitext(os.path.basename(p))[0] +
                                                                ".png"))) for p in (fms[0], photos[0]))
        m, line = report(o4, "fm0") if r.returncode == 0 else (None, r.stderr)
        check("fgsm eps 0: no pixel changes, 'not fooled', L-inf 0",
              r.returncode == 0 and same and m is not None and m["fooled"] == "not fooled" and m["linf"] == "0",
              line)
        noise = np.array(Image.open(os.path.join(o4, "fm0.noise.png")).convert("RGB")) if r.returncode == 0 else None
        check("fgsm eps 0: noise image is flat grey",
              noise is not None and np.all(np.abs(noise.astype(int) - 128) <= 1))
        check("input files byte-identical after all runs", all(sha(p) == h for p, h in hashes.items()))
        outs = []
        for tag, seed in (("a", "5"), ("b", "5"), ("c", "6")):
            o = os.path.join(d, "o4" + tag)
            run.fool(photos[:1], o, "--seed", seed)  # offline LeNet, PGD's random start everywhere
            outs.append(sha(os.path.join(o, "dog.png")))
        check("pgd: same seed same bytes, other seed other bytes", outs[0] == outs[1] and outs[0] != outs[2])
        # noise image is the amplified difference
        a, b = load8(photos[0]), load8(os.path.join(o3, "dog.png"))
        nz = load8(os.path.join(o3, "dog.noise.png"))
        want = np.clip(np.floor(255 * np.clip(0.5 + 20 * (b - a) / 255.0, 0, 1) + 0.5), 0, 255)
        check("noise image = 0.5 + 20 * (adv - orig)", np.abs(nz - want).max() <= 1)

        # 5. rounding: the float attack fools, the 8-bit one would not without re-projection
        rng = np.random.default_rng(3)
        img = rng.integers(60, 200, (8, 8, 3), dtype=np.uint8)
        lp = os.path.join(d, "lin.png")
        Image.fromarray(img).save(lp)
        # one step of 0.3 levels down on all 192 values lowers sum(x) by 0.226: delta 0.1 flips
        # in float; rounding undoes the step; one extra step of 1 level flips for real
        lin = make_linear(d, img, 0.1, "linear")
        o5 = os.path.join(d, "o5")
        r = run.fool([lp], o5, "--model", lin, "--method", "ifgsm", "--epsilon", "2", "--step", "0.3",
                     "--iterations", "1")
        ok = r.returncode == 0
        m, line = report(o5, "lin") if ok else (None, r.stderr)
        if ok:
            b = load8(os.path.join(o5, "lin.png"))
            S = img.astype(np.float64).sum() / 255.0
            logit0 = b.sum() / 255.0 - S + 0.1
            linf = int(np.abs(b - img.astype(np.int32)).max())
            ok = m is not None and logit0 < 0 and linf <= 2 and int(m["iters"]) > 1 and m["fooled"] == "fooled"
            line += f" [saved logit0 {logit0:.3f}, L-inf {linf}]"
        check("rounding: re-projects after 8-bit rounding and the saved file fools", ok, line)

        # 6. honesty: margin too large for eps 1
        lin2 = make_linear(d, img, 5.0, "linear2")
        o6 = os.path.join(d, "o6")
        r = run.fool([lp], o6, "--model", lin2, "--method", "ifgsm", "--epsilon", "1", "--iterations", "5")
        ok = r.returncode == 0 and os.path.exists(os.path.join(o6, "lin.png"))
        m, line = report(o6, "lin") if ok else (None, r.stderr)
        if ok:
            b = load8(os.path.join(o6, "lin.png"))
            ok = m is not None and m["fooled"] == "not fooled" and "not fooled" in r.stdout and \
                int(np.abs(b - img.astype(np.int32)).max()) == 1 and b.sum() < img.astype(np.int64).sum()
        check("honesty: unreachable target says 'not fooled' and writes the best attempt", ok, line)

        # 7. bad targets
        for t in ("no-such-class", "10", "-1"):
            o7 = os.path.join(d, "o7")
            r = run.fool([fms[0]], o7, "--target", t)
            check(f"--target {t!r} fails cleanly", r.returncode not in (0, -6, -11) and "target" in r.stderr
                  and not os.path.exists(os.path.join(o7, "fm0.png")), r.stderr.strip()[-200:])
    finally:
        if args.keep:
            print("kept", d)
        else:
            shutil.rmtree(d, ignore_errors=True)
    n_ok = sum(results)
    print(f"{n_ok} passed, {len(results) - n_ok} failed")
    sys.exit(0 if results and n_ok == len(results) else 1)  # nothing checked is a failure


if __name__ == "__main__":
    main()
