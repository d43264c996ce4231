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
import re
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
BIG_RSS_BOUND_MB = 1050  # MiB

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


def colour_net():
    blur = nn.Conv2d(3, 3, 3, 1, 1, bias=False)
    mix = nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        blur.weight.zero_()
        for c in range(3):
            blur.weight[c, c] = 1.0 / 9
        mix.weight[:, :, 0, 0] = torch.tensor([[2.0, -1, -1], [-1, 2, -1], [-1, -1, 2]])
    return nn.Sequential(blur, mix, nn.ReLU()).eval()


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
    # G_MESSAGES_DEBUG: the tiling tests read the tile size used from dream's debug line (stdout)
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, G_MESSAGES_DEBUG="all"))
    if check_rc and r.returncode != 0:
        print("  command:", " ".join(cmd), "\n  stderr:", r.stderr.strip()[-2000:], flush=True)
    tiles = re.findall(r"dream: session peak .* final tile (\d+)", r.stdout + r.stderr)
    LAST_TILE[0] = int(tiles[-1]) if tiles else None
    return r.returncode, os.path.join(outdir, os.path.basename(inp)), time.time() - t


LAST_TILE = [None]  # tile size of the last dream() run, from its debug output


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
    # guide: with random GoogLeNet features (all-positive, pairwise cosine ~0.9) every position
    # "matches" everything, so the guide is checked on a model whose features mean something:
    # colour opponency (R-G/B, G-R/B, B-R/G after a 3x3 blur, ReLU).  A red guide must make the
    # dream push red; a plain dream pushes whatever colour dominates locally.
    cpath = os.path.join(d, "colour.onnx")
    export(colour_net(), cpath, "colour")
    gimg = os.path.join(d, "red.png")
    rng = np.random.default_rng(0)
    red = np.clip(np.array([0.8, 0.2, 0.2]) + 0.1 * rng.standard_normal((64, 64, 3)), 0, 1)
    Image.fromarray((red * 255).astype(np.uint8)).save(gimg)
    common = ["--octaves", 1, "--iterations", 5, "--seed", 3]
    rc1, outg, t = dream(a.cnnfx, cpath, inp, os.path.join(d, "o1g"), "--guide", gimg, *common)
    rc2, outn, t = dream(a.cnnfx, cpath, inp, os.path.join(d, "o1n"), *common)
    if rc1 or rc2:
        return check("activation: --guide runs", False, f"rc {rc1} {rc2}")
    redness = lambda im: float((im[..., 0] - 0.5 * (im[..., 1] + im[..., 2])).mean())
    r0, rg, rn = redness(x), redness(load(outg)), redness(load(outn))
    check("activation: --guide (red) pushes the image towards the guide's features", rg - r0 > 0.02 and
          rg - r0 > 3 * abs(rn - r0), f"mean R-(G+B)/2: {r0:.3f} -> {rg:.3f} guided, {rn:.3f} plain")


def tile_bounds(n, T, M, align=32):
    """Core boundaries as dream.c's split() computes them."""
    if n <= T:
        return []
    nb, cb = (n + align - 1) // align, (T - 2 * M) // align
    k = (nb + cb - 1) // cb
    return [min(n, (i * nb // k) * align) for i in range(1, k)]


def test_tiling(a, d, gpath, spath):
    # (a) receptive field (15 px) well inside the margin: tiling must not change the result at all
    inp = photo("person.jpg", 400, 300, os.path.join(d, "person.png"))
    common = ["--octaves", 2, "--iterations", 3, "--seed", 5]
    rc1, out1, _ = dream(a.cnnfx, spath, inp, os.path.join(d, "o2su"), "--tile", 4096, *common)
    tile1 = LAST_TILE[0]
    rc2, out2, _ = dream(a.cnnfx, spath, inp, os.path.join(d, "o2st"), "--tile", 128, *common)
    tile2 = LAST_TILE[0]
    if rc1 or rc2:
        return check("tiling: runs", False, f"rc {rc1} {rc2}")
    check("tiling: the runs compared are one tile and 128 px tiles", tile1 is not None and tile1 >= 400 and
          tile2 == 128, f"tile sizes {tile1}, {tile2}")
    x, u, t = load(inp), load(out1), load(out2)
    diff = np.abs(t - u)
    check("tiling: small receptive field, tile 128 (20 tiles) = one tile", diff.max() <= 2.5 / 255 and
          diff.mean() < 0.02 / 255, f"max |tiled-untiled| {diff.max() * 255:.0f}/255, mean {diff.mean() * 255:.3f}/255,"
          f" change {np.abs(u - x).mean() * 255:.2f}/255")

    # (b) GoogLeNet 4c, receptive field far beyond the 64 px margin: close, and no seams
    inp = photo("horses.jpg", 640, 448, os.path.join(d, "horses.png"))
    x = load(inp)
    runs, tiles = {}, {}
    for name, opts in (("u0", ["--tile", 4096, "--jitter", 0]), ("t0", ["--tile", 320, "--jitter", 0]),
                       ("u5", ["--tile", 4096, "--seed", 5]), ("t5", ["--tile", 320, "--seed", 5]),
                       ("u6", ["--tile", 4096, "--seed", 6])):
        rc, out, t = dream(a.cnnfx, gpath, inp, os.path.join(d, "o2" + name), "--octaves", 1, "--iterations", 3,
                           *opts)
        if rc:
            return check("tiling: runs", False, f"rc {rc}")
        runs[name] = load(out)
        tiles[name] = LAST_TILE[0]
    check("tiling: GoogLeNet runs really tile (320) or not (one tile)",
          all(tiles[k] == 320 for k in ("t0", "t5")) and all(tiles[k] and tiles[k] >= 640 for k in ("u0", "u5", "u6")),
          f"tile sizes {tiles}")
    m = lambda p, q: float(np.abs(p - q).mean())
    u0, t0, u5, t5, u6 = (runs[k] for k in ("u0", "t0", "u5", "t5", "u6"))
    check("tiling: GoogLeNet, tile 320 (6 tiles) close to one tile",
          m(t5, u5) < 0.35 * m(u5, u6) and m(t0, u0) < 0.35 * m(u0, x),
          f"jitter 32: |tiled-untiled| {m(t5, u5) * 255:.2f}/255 vs another seed {m(u5, u6) * 255:.2f}/255; "
          f"jitter 0: {m(t0, u0) * 255:.2f}/255 vs change {m(u0, x) * 255:.2f}/255")
    # seams (jitter 0: the boundaries stay put): pixel-to-pixel differences of the change image
    # in 32 px bands around the tile boundaries, relative to elsewhere, tiled vs untiled
    ok, info = True, []
    for axis, n in ((1, x.shape[1]), (0, x.shape[0])):
        prof = lambda im: np.abs(np.diff((im - x).mean(axis=2), axis=axis)).mean(axis=1 - axis)
        p, pu = prof(t0), prof(u0)
        b = tile_bounds(n, 320, 64)
        near = sorted({i for c in b for i in range(c - 17, c + 17) if 0 <= i < len(p)})
        far = [i for i in range(len(p)) if i not in near]
        r_t, r_u = p[near].mean() / p[far].mean(), pu[near].mean() / pu[far].mean()
        col = [(p[c - 1] / p[far].mean()) / (pu[c - 1] / pu[far].mean()) for c in b]
        info.append(f"{'yx'[axis]}: band/elsewhere {r_t:.2f} tiled, {r_u:.2f} untiled; boundary "
                    f"columns tiled/untiled {min(col):.2f}..{max(col):.2f}")
        # a seam is an edge (more difference) or a smooth band (less): both sides are checked
        ok = ok and abs(r_t - r_u) < 0.1 * r_u + 0.03 and 0.8 < min(col) and max(col) < 1.25
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
    check(f"big: peak RSS < {BIG_RSS_BOUND_MB} MiB", rss < BIG_RSS_BOUND_MB, f"peak RSS {rss:.0f} MiB")


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
        tests = {1: lambda: test_activation(a, d, gnet, gpath), 2: lambda: test_tiling(a, d, gpath, spath),
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
    sys.exit(1 if n_fail or not results else 0)  # nothing checked is a failure


if __name__ == "__main__":
    main()
