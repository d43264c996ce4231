#!/usr/bin/python3
"""Behaviour tests of `cnnfx dream` (core/filters/dream.c).

Models are built here with torch and exported to ONNX (seeded, no downloads):
  * gnet: torchvision GoogLeNet up to inception_4c with SEEDED RANDOM weights (the ImageNet
    weights are not available offline).  Gradient ascent raises the chosen layer's activation
    whatever the weights are, which is what test 1 checks; the patterns themselves are only
    meaningful with the real ImageNet GoogLeNet (`cnnfx models fetch googlenet`).
  * small: three stride-2 3x3 convolutions with ReLU (16/32/32 channels, seeded), cheap
    enough for a 6000x4000 photo on two cores.

Tests
  1. activation: dream raises 0.5*mean(a^2) of the chosen layer, measured by running the same
     torch model on the input and on the written output; --channel raises that channel more
     than the others; a guide image raises the best-match guide objective.
  2. tiling: --tile 128 (many tiles) against one tile on a 384x256 photo: close results, and
     no seam: the change image's pixel-to-pixel differences along the tile boundaries are no
     larger than elsewhere.
  3. big image: a 6000x4000 JPEG dreams with --max-memory 24 (MiB of network tensors);
     peak RSS of the child (os.wait4) stays under a stated bound.
  4. cancel: SIGINT during a long dream gives exit code 130 and leaves no file in OUTDIR.
  5. seed: the same seed gives identical output bytes, another seed different ones.

Usage: test_filter_dream.py --cnnfx BUILD/batch/cnnfx [--keep] [--only N,N]
Prints PASS/FAIL lines and "N passed, M failed"; exit 1 on failure.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torchvision
from PIL import Image

PHOTOS = "/usr/share/darknet/data"
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
# Whole-image float buffers for a 6000x4000 photo: the CLI's decoded image (12 B/px), the image
# tensor (12 B/px) and the gradient (12 B/px) = 864 MB; network tensors <= --max-memory (24 MiB);
# libraries, tile buffers and JPEG codec rows: ~100 MB.
BIG_RSS_BOUND_MB = 1050

results = []


def check(name, ok, detail=""):
    results.append(ok)
    print(f"{'PASS' if ok else 'FAIL'} {name}" + (f" ({detail})" if detail else ""), flush=True)


class GNet4c(nn.Module):
    """torchvision GoogLeNet (seeded random weights) up to inception_4c."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        g = torchvision.models.googlenet(aux_logits=False, init_weights=True, transform_input=False).eval()
        # He initialisation keeps the activations at scale through the 4c depth (torchvision's own
        # init shrinks them to ~1e-8); BatchNorm keeps its default statistics (identity).
        for m in g.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        self.body = nn.Sequential(g.conv1, g.maxpool1, g.conv2, g.conv3, g.maxpool2, g.inception3a, g.inception3b,
                                  g.maxpool3, g.inception4a, g.inception4b, g.inception4c)
        self.eval()  # torch.onnx.export restores this mode afterwards: BN must stay in eval

    def forward(self, x):
        return self.body(x)


def small_net():
    torch.manual_seed(1)
    m = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                      nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU())
    for c in m:
        if isinstance(c, nn.Conv2d):
            nn.init.kaiming_normal_(c.weight, mode="fan_in", nonlinearity="relu")
    return m.eval()


def export(model, path, section):
    x = torch.rand(1, 3, 128, 128)
    torch.onnx.export(model, x, path, input_names=["input"], output_names=["feat"], opset_version=13,
                      dynamic_axes={"input": {2: "h", 3: "w"}, "feat": {2: "fh", 3: "fw"}})
    # sidecar: default preprocessing (torchvision mean/std, 0..1) and the dream layer
    with open(path[:-5] + ".ini", "w") as f:
        f.write(f"[{section}]\ndream_layers=feat\n")


def load(path):
    return np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0


def photo(name, w, h, path):
    Image.open(os.path.join(PHOTOS, name)).convert("RGB").resize((w, h), Image.LANCZOS).save(path)
    return path


def features(model, img):
    x = torch.from_numpy(((img - MEAN) / STD).transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        return model(x)[0].numpy()


def dream(cnnfx, model, inp, outdir, *opts, check_rc=True):
    cmd = [cnnfx, "dream", "-q", "--overwrite", "-m", model, "-o", outdir, inp, *map(str, opts)]
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check_rc and r.returncode != 0:
        print("  command:", " ".join(cmd), "\n  stderr:", r.stderr.strip()[-2000:], flush=True)
    return r.returncode, os.path.join(outdir, os.path.basename(inp)), time.time() - t


def test_activation(a, d, gnet, gpath):
    inp = photo("dog.jpg", 320, 240, os.path.join(d, "dog320.png"))
    rc, out, t = dream(a.cnnfx, gpath, inp, os.path.join(d, "o1"), "--octaves", 2, "--iterations", 5, "--seed", 3)
    if rc != 0:
        return check("activation: dream runs", False, f"rc {rc}")
    x, y = load(inp), load(out)
    fa, fb = features(gnet, x), features(gnet, y)
    ea, eb = 0.5 * np.mean(fa ** 2), 0.5 * np.mean(fb ** 2)
    change = np.abs(y - x).mean() * 255
    check("activation: 0.5*mean(a^2) of inception_4c rises", eb > 1.3 * ea,
          f"{ea:.4g} -> {eb:.4g} (x{eb / ea:.2f}), {t:.1f}s")
    check("activation: change visible but bounded", 2 < change < 40, f"mean |out-in| = {change:.1f}/255")
    # channel selection: channel 7 rises relatively more than the average channel.  Without jitter:
    # random weights make a single channel alias badly under sub-stride shifts (measured in torch:
    # with --jitter 32 channel 7's objective wanders, with 0 it rises 10x in 5 steps).
    rc, out, t = dream(a.cnnfx, gpath, inp, os.path.join(d, "o1c"), "--octaves", 1, "--iterations", 5,
                       "--channel", 7, "--jitter", 0, "--seed", 3)
    if rc != 0:
        return check("activation: --channel runs", False, f"rc {rc}")
    fc = features(gnet, load(out))
    e = lambda f: np.mean(f ** 2, axis=(1, 2))
    r_sel = e(fc)[7] / e(fa)[7]
    r_all = np.median(e(fc) / np.maximum(e(fa), 1e-12))
    check("activation: --channel 7 amplifies channel 7 most", r_sel > 1.5 * r_all and r_sel > 1.3,
          f"channel 7 x{r_sel:.2f}, median channel x{r_all:.2f}")
    # guide: the best-match objective sum_p max_j <a_p, y_j> rises more than without a guide
    gimg = photo("scream.jpg", 256, 320, os.path.join(d, "scream.png"))
    common = ["--octaves", 1, "--iterations", 5, "--jitter", 0, "--seed", 3]
    rc, out, t = dream(a.cnnfx, gpath, inp, os.path.join(d, "o1g"), "--guide", gimg, *common)
    if rc != 0:
        return check("activation: --guide runs", False, f"rc {rc}")
    rc, out2, t = dream(a.cnnfx, gpath, inp, os.path.join(d, "o1n"), *common)
    g = features(gnet, load(gimg)).reshape(512, -1)
    gn = g / np.maximum(np.linalg.norm(g, axis=0), 1e-6)

    def match(img):
        f = features(gnet, img).reshape(512, -1)
        fn = f / np.maximum(np.linalg.norm(f, axis=0), 1e-6)
        return float((f.T @ g).max(axis=1).sum()), float((fn.T @ gn).max(axis=1).mean())

    (m0, c0), (mg, cg), (mn, cn) = match(x), match(load(out)), match(load(out2))
    check("activation: --guide raises the best-match objective more than plain dream",
          mg > 1.2 * m0 and mg - m0 > 1.3 * (mn - m0) and cg > cn,
          f"sum_p max_j <a_p,y_j>: {m0:.4g} -> {mg:.4g} guided, {mn:.4g} plain; "
          f"mean best cosine {c0:.3f} -> {cg:.3f} guided, {cn:.3f} plain")


def tile_bounds(n, T, M, align=32):
    """Core boundaries as dream.c's split() computes them."""
    if n <= T:
        return []
    nb, cb = (n + align - 1) // align, (T - 2 * M) // align
    k = (nb + cb - 1) // cb
    return [min(n, (i * nb // k) * align) for i in range(1, k)]


def test_tiling(a, d, gpath):
    inp = photo("horses.jpg", 384, 256, os.path.join(d, "horses.png"))
    common = ["--octaves", 1, "--iterations", 4, "--jitter", 0, "--seed", 5]
    rc1, out1, t1 = dream(a.cnnfx, gpath, inp, os.path.join(d, "o2u"), "--tile", 4096, *common)
    rc2, out2, t2 = dream(a.cnnfx, gpath, inp, os.path.join(d, "o2t"), "--tile", 128, *common)
    if rc1 or rc2:
        return check("tiling: runs", False, f"rc {rc1} {rc2}")
    x, u, t = load(inp), load(out1), load(out2)
    change = np.abs(u - x).mean()
    diff = np.abs(t - u).mean()
    check("tiling: tile 128 (24 tiles) close to one tile", diff < 0.3 * change,
          f"mean |tiled-untiled| = {diff * 255:.2f}/255 vs change {change * 255:.2f}/255; {t2:.1f}s vs {t1:.1f}s")
    # seams: pixel-to-pixel differences of the change image across the tile boundaries
    ok, info = True, []
    for axis, n in ((1, x.shape[1]), (0, x.shape[0])):
        D = (t - x).mean(axis=2)
        p = np.abs(np.diff(D, axis=axis)).mean(axis=1 - axis)  # p[i]: between i and i+1
        pu = np.abs(np.diff((u - x).mean(axis=2), axis=axis)).mean(axis=1 - axis)
        b = tile_bounds(n, 128, 32)
        near = sorted({i for c in b for i in range(c - 9, c + 9) if 0 <= i < len(p)})
        far = [i for i in range(len(p)) if i not in near]
        r_t = p[near].mean() / p[far].mean()
        r_u = pu[near].mean() / pu[far].mean()
        at = max(p[c - 1] / p[far].mean() for c in b)
        info.append(f"{'xy'[1 - axis]}: boundary/elsewhere {r_t:.2f} (untiled {r_u:.2f}), worst boundary {at:.2f}")
        ok = ok and r_t < r_u * 1.1 + 0.05 and at < 1.6
    check("tiling: no seam at tile boundaries", ok, "; ".join(info))


def test_big(a, d, spath):
    inp = os.path.join(d, "big.jpg")
    Image.open(os.path.join(PHOTOS, "kite.jpg")).convert("RGB").resize((6000, 4000), Image.BILINEAR).save(
        inp, quality=90)
    outdir = os.path.join(d, "o3")
    cmd = [a.cnnfx, "dream", "-q", "--overwrite", "-m", spath, "-o", outdir, inp, "--octaves", "1", "--iterations",
           "1", "--max-memory", "24", "--seed", "1"]
    t = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.time() - t
    err = p.stderr.read().decode()
    p.returncode = os.waitstatus_to_exitcode(status)
    rss = ru.ru_maxrss / 1024
    if p.returncode != 0:
        print("  stderr:", err[-2000:])
        return check("big: 6000x4000 dreams", False, f"rc {p.returncode}")
    out = os.path.join(outdir, "big.jpg")
    im = Image.open(out)
    x = np.asarray(Image.open(inp).convert("RGB").crop((2000, 1500, 2600, 1900)), np.float32)
    y = np.asarray(im.convert("RGB").crop((2000, 1500, 2600, 1900)), np.float32)
    ch = np.abs(x - y).mean()
    check("big: 6000x4000 dreams with --max-memory 24", im.size == (6000, 4000) and ch > 0.5,
          f"{wall:.1f}s, mean |out-in| {ch:.2f}/255 on a crop")
    check(f"big: peak RSS < {BIG_RSS_BOUND_MB} MB", rss < BIG_RSS_BOUND_MB, f"peak RSS {rss:.0f} MB")


def test_cancel(a, d, gpath):
    inp = photo("giraffe.jpg", 1024, 768, os.path.join(d, "giraffe.png"))
    outdir = os.path.join(d, "o4")
    os.makedirs(outdir, exist_ok=True)
    cmd = [a.cnnfx, "dream", "-q", "-m", gpath, "-o", outdir, inp, "--iterations", "1000"]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(4)
    running = p.poll() is None
    p.send_signal(signal.SIGINT)
    t = time.time()
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    stop = time.time() - t
    left = [os.path.join(r, f) for r, _, fs in os.walk(outdir) for f in fs]
    check("cancel: SIGINT stops with 130 and leaves no file", running and p.returncode == 130 and not left,
          f"rc {p.returncode}, stopped {stop:.1f}s after SIGINT, files left: {left}")


def test_seed(a, d, spath):
    inp = photo("person.jpg", 400, 300, os.path.join(d, "person.png"))
    common = ["--octaves", 2, "--iterations", 3, "--tile", 128]
    outs = []
    for i, s in enumerate((7, 7, 8)):
        rc, out, _ = dream(a.cnnfx, spath, inp, os.path.join(d, f"o5_{i}"), "--seed", s, *common)
        if rc:
            return check("seed: runs", False, f"rc {rc}")
        outs.append(open(out, "rb").read())
    check("seed: same seed, identical bytes", outs[0] == outs[1])
    check("seed: another seed, different image", outs[0] != outs[2])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--only", default="")
    a = ap.parse_args()
    a.cnnfx = os.path.abspath(a.cnnfx)
    only = {int(s) for s in a.only.split(",") if s}
    torch.set_num_threads(2)
    d = tempfile.mkdtemp(prefix="cnnfx-dream-")
    t0 = time.time()
    try:
        gnet = GNet4c()
        gpath = os.path.join(d, "gnet4c.onnx")
        spath = os.path.join(d, "small.onnx")
        export(gnet, gpath, "gnet4c-random")
        export(small_net(), spath, "small-random")
        tests = {1: lambda: test_activation(a, d, gnet, gpath), 2: lambda: test_tiling(a, d, gpath),
                 3: lambda: test_big(a, d, spath), 4: lambda: test_cancel(a, d, gpath), 5: lambda: test_seed(a, d, spath)}
        for k, f in tests.items():
            if not only or k in only:
                f()
    finally:
        if a.keep:
            print("kept", d)
        else:
            shutil.rmtree(d, ignore_errors=True)
    n_fail = results.count(False)
    print(f"({time.time() - t0:.0f}s)")
    print(f"{results.count(True)} passed, {n_fail} failed")
    sys.exit(1 if n_fail else 0)


if __name__ == "__main__":
    main()
