#!/usr/bin/python3
"""Behaviour tests of `cnnfx classify` (core/filters/classify.c, batch/draw.c).

Model: a tiny CNN trained here in torch for a few seconds (seeded) on synthetic 48x48 images:
class "square" = a white square (8..13 px) at a random place on dark uniform noise, class
"background" = noise only.  conv3x3/2(8)-ReLU-conv3x3/2(16)-ReLU-GlobalAveragePool-Flatten-Gemm,
exported to ONNX twice: with a dynamic input size (runs at the image's size) and with a static
48x48 input (classify resizes the image to it).  Sidecar .ini: mean 0.5, std 0.25, labels.

Tests
  1. localisation: on 64x64 images with the square at a known place, each heat map
     (gradcam, gradcam++, saliency, smoothgrad; read back with --colormap gray --opacity 1)
     has its argmax inside the square (+-2 px for the 16x16 CAM maps) and >= 3x the square's
     area fraction of its mass inside; same on a 96x96 image through the static 48x48 model.
     Grad-CAM, Grad-CAM++ and saliency also match a torch reference implementation
     (autograd, same formulas, bilinear upsampling) within 3/255.  The auto-picked CAM layer
     equals cam_layer=Relu#2 in the sidecar.
  2. report: top-k probabilities sorted, in 0..1, summing to <= 1 (CSV and JSON parsed);
     --class picks the explained class, an unknown class fails cleanly; the labels image
     differs from the input only in a box in the top-left corner.
  3. offline default model (weights/offline.ini [defaults] classify) on darknet photos:
     runs, writes report, heat map and labels image; probabilities sum to <= 1.

Usage: test_filter_classify.py --cnnfx BUILD/batch/cnnfx [--keep]
Prints PASS/FAIL lines and "N passed, M failed"; exit 1 on failure.
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

PHOTOS = "/usr/share/darknet/data"
S_TRAIN = 48
MEAN, STD = 0.5, 0.25
results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'} {name}" + (f" ({detail})" if detail else ""), flush=True)


def make_data(n, rng, size=S_TRAIN):
    x = rng.uniform(0, 0.7, (n, 3, size, size)).astype(np.float32)
    y = rng.integers(0, 2, n)
    for i in np.nonzero(y)[0]:
        s = rng.integers(8, 14)
        r, c = rng.integers(0, size - s, 2)
        x[i, :, r:r + s, c:c + s] = 1.0
    return torch.from_numpy((x - MEAN) / STD), torch.from_numpy(y)


def train():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))
    opt = torch.optim.Adam(m.parameters(), 1e-2)
    X, Y = make_data(1536, rng)
    for ep in range(3):
        perm = torch.randperm(len(X))
        for b in range(0, len(X), 64):
            i = perm[b:b + 64]
            loss = F.cross_entropy(m(X[i]), Y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    Xt, Yt = make_data(256, rng)
    with torch.no_grad():
        acc = (m(Xt).argmax(1) == Yt).float().mean().item()
    return m.eval(), acc


def export(m, path, dynamic, extra=""):
    x = torch.zeros(1, 3, S_TRAIN, S_TRAIN)
    kw = dict(dynamic_axes={"input": {2: "h", 3: "w"}}) if dynamic else {}
    torch.onnx.export(m, x, path, input_names=["input"], output_names=["logits"], opset_version=13, **kw)
    with open(path[:-5] + ".ini", "w") as f:
        f.write(f"[tiny]\ninput=input\noutput=logits\nscale=1\nmean={MEAN}\nstd={STD}\nlabels=tiny.labels\n{extra}")


def square_image(path, size, r, c, s, seed):
    rng = np.random.default_rng(seed)
    img = rng.uniform(0, 0.7, (size, size, 3))
    img[r:r + s, c:c + s] = 1.0
    img8 = np.round(img * 255).astype(np.uint8)
    Image.fromarray(img8).save(path)
    return img8.astype(np.float32) / 255.0


def run(cnnfx, args, check_rc=True):
    cmd = [cnnfx, "classify", "-q", "--overwrite", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check_rc and r.returncode != 0:
        print("  command:", " ".join(cmd), "\n  stderr:", r.stderr.strip()[-2000:], flush=True)
    return r


def read_map(path):
    return np.asarray(Image.open(path).convert("L"), np.float32) / 255.0


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return rows


# ---- torch references (same formulas as classify.c) ----------------------------------------

def torch_maps(m, img, cls):
    """Grad-CAM, Grad-CAM++ (at the CAM resolution) and saliency (at the image size)."""
    x = torch.from_numpy(((img - MEAN) / STD).transpose(2, 0, 1).copy())[None].requires_grad_(True)
    feats = m[:4](x)
    feats.retain_grad()
    logits = m[4:](feats)
    logits[0, cls].backward()
    A, g = feats.detach()[0].double(), feats.grad[0].double()
    cam = F.relu((g.mean((1, 2))[:, None, None] * A).sum(0))
    g2, g3 = g * g, g * g * g
    den = 2 * g2 + A.sum((1, 2))[:, None, None] * g3
    alpha = torch.where((g != 0) & (den != 0), g2 / torch.where(den != 0, den, torch.ones_like(den)),
                        torch.zeros_like(den))
    w = (alpha * F.relu(g)).sum((1, 2))
    campp = F.relu((w[:, None, None] * A).sum(0))
    sal = (x.grad[0] / STD).abs().max(0)[0].double()
    out = []
    for mp, q in ((cam, None), (campp, None), (sal, 0.99)):
        mp = mp.numpy()
        top = mp.max() if q is None else np.sort(mp.ravel())[int(q * (mp.size - 1))]
        out.append(np.clip(mp / top, 0, 1) if top > 0 else mp * 0)
    return out


def upsample(mp, h, w):
    t = torch.from_numpy(np.asarray(mp, np.float32))[None, None]
    return F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()


def localisation(name, mp, r, c, s, margin):
    h, w = mp.shape
    total = mp.sum()
    inside = mp[r:r + s, c:c + s].sum()
    frac = inside / total if total > 0 else 0
    area = s * s / (h * w)
    ay, ax = np.unravel_index(np.argmax(mp), mp.shape)
    in_box = r - margin <= ay < r + s + margin and c - margin <= ax < c + s + margin
    check(f"{name}: argmax inside the square", in_box, f"argmax ({ay},{ax}), square rows {r}..{r + s - 1} "
          f"cols {c}..{c + s - 1}")
    check(f"{name}: heat mass inside >= 3x area fraction", frac >= 3 * area,
          f"mass inside {frac:.3f}, area fraction {area:.3f}, ratio {frac / area:.1f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    cnnfx = os.path.abspath(a.cnnfx)
    tmp = tempfile.mkdtemp(prefix="cnnfx-classify-")
    t_start = time.time()
    try:
        m, acc = train()
        check("tiny square detector trains", acc > 0.9, f"held-out accuracy {acc:.3f}")
        with open(os.path.join(tmp, "tiny.labels"), "w") as f:
            f.write("background\nsquare\n")
        dyn, fixed = os.path.join(tmp, "tiny.onnx"), os.path.join(tmp, "tiny48.onnx")
        export(m, dyn, True)
        export(m, fixed, False)
        os.makedirs(os.path.join(tmp, "explicit"))
        shutil.copy(os.path.join(tmp, "tiny.labels"), os.path.join(tmp, "explicit"))
        explicit = os.path.join(tmp, "explicit", "tiny.onnx")
        export(m, explicit, True, "cam_layer=Relu#2\n")

        # ---- 1. localisation ------------------------------------------------------------
        size, r, c, s = 64, 8, 38, 12
        sq = os.path.join(tmp, "sq.png")
        img = square_image(sq, size, r, c, s, 5)
        ref = torch_maps(m, img, 1)
        ref_up = {"gradcam": upsample(ref[0], size, size), "gradcam++": upsample(ref[1], size, size),
                  "saliency": ref[2]}
        maps = {}
        for ov in ("gradcam", "gradcam++", "saliency", "smoothgrad"):
            out = os.path.join(tmp, "o-" + ov)
            rr = run(cnnfx, ["-m", dyn, "--overlay", ov, "--colormap", "gray", "--opacity", 1, "--top", 2,
                             "--smooth-samples", 16, "--seed", 3, "-o", out, sq])
            if rr.returncode != 0:
                check(f"classify --overlay {ov} runs", False, rr.stderr.strip()[-300:])
                continue
            rows = read_csv(os.path.join(out, "sq.csv"))
            check(f"{ov}: the square image is classified 'square'", rows[0]["label"] == "square",
                  f"{rows[0]['label']} {float(rows[0]['probability']):.3f}")
            mp = maps[ov] = read_map(os.path.join(out, "sq.heatmap.png"))
            localisation(ov, mp, r, c, s, 2 if ov.startswith("gradcam") else 0)
            if ov in ref_up:
                d = np.abs(mp - ref_up[ov]).max()
                check(f"{ov} matches the torch reference", d <= 3 / 255 + 1e-6, f"max |diff| {d * 255:.2f}/255")
        out = os.path.join(tmp, "o-explicit")
        rr = run(cnnfx, ["-m", explicit, "--colormap", "gray", "--opacity", 1, "-o", out, sq])
        if rr.returncode == 0 and "gradcam" in maps:
            d = np.abs(read_map(os.path.join(out, "sq.heatmap.png")) - maps["gradcam"]).max()
            check("auto CAM layer == cam_layer=Relu#2", d == 0, f"max |diff| {d * 255:.0f}/255")
        else:
            check("auto CAM layer == cam_layer=Relu#2", False, rr.stderr.strip()[-300:])

        # fixed-size model: a 96x96 image is resized to 48x48
        size2, r2, c2, s2 = 96, 60, 14, 20
        sq2 = os.path.join(tmp, "sq96.png")
        square_image(sq2, size2, r2, c2, s2, 7)
        for ov in ("gradcam", "saliency", "smoothgrad"):
            out = os.path.join(tmp, "f-" + ov)
            rr = run(cnnfx, ["-m", fixed, "--overlay", ov, "--colormap", "gray", "--opacity", 1,
                             "--smooth-samples", 16, "-o", out, sq2])
            if rr.returncode != 0:
                check(f"fixed-size {ov} runs", False, rr.stderr.strip()[-300:])
                continue
            localisation(f"fixed-size 48x48 model, 96x96 image, {ov}", read_map(os.path.join(out, "sq96.heatmap.png")),
                         r2, c2, s2, 4 if ov == "gradcam" else 2)

        # ---- 2. report, class choice, labels image ---------------------------------------
        out = os.path.join(tmp, "o-report")
        rr = run(cnnfx, ["-m", dyn, "--top", 2, "--format", "json", "-o", out, sq])
        ok = rr.returncode == 0
        if ok:
            with open(os.path.join(out, "sq.json")) as f:
                js = json.load(f)
            p = [t["prob"] for t in js["top"]]
            ok = (len(p) == 2 and p == sorted(p, reverse=True) and sum(p) <= 1 + 1e-5 and min(p) >= 0 and
                  [t["rank"] for t in js["top"]] == [1, 2] and js["top"][0]["label"] == "square")
            check("JSON report well-formed, sorted, sum <= 1", ok, f"{js['top']}")
        else:
            check("JSON report well-formed, sorted, sum <= 1", False, rr.stderr.strip()[-300:])
        csvp = os.path.join(tmp, "o-gradcam", "sq.csv")
        if os.path.exists(csvp):
            rows = read_csv(csvp)
            p = [float(x["probability"]) for x in rows]
            check("CSV report well-formed, sorted, sum <= 1",
                  [int(x["rank"]) for x in rows] == [1, 2] and p == sorted(p, reverse=True) and sum(p) <= 1 + 1e-5
                  and all(0 <= v <= 1 for v in p) and {x["index"] for x in rows} == {"0", "1"}, f"{rows}")
        else:
            check("CSV report well-formed, sorted, sum <= 1", False, f"{csvp} not written")
        # --class: explaining "background" gives a different map than "square"
        out = os.path.join(tmp, "o-class")
        rr = run(cnnfx, ["-m", dyn, "--class", "background", "--colormap", "gray", "--opacity", 1, "-o", out, sq])
        if rr.returncode == 0 and "gradcam" in maps:
            mb = read_map(os.path.join(out, "sq.heatmap.png"))
            inside = mb[r:r + s, c:c + s].sum() / max(mb.sum(), 1e-9)
            check("--class background: the map moves off the square", inside < 0.5 * (maps["gradcam"][r:r + s, c:c + s]
                  .sum() / maps["gradcam"].sum()), f"mass inside {inside:.3f}")
        else:
            check("--class background runs", False, rr.stderr.strip()[-300:])
        rr = run(cnnfx, ["-m", dyn, "--class", "0", "-o", os.path.join(tmp, "o-class0"), sq])
        check("--class 0 (index) runs", rr.returncode == 0)
        rr = run(cnnfx, ["-m", dyn, "--class", "giraffe", "-o", os.path.join(tmp, "o-bad"), sq], check_rc=False)
        check("--class giraffe fails cleanly", rr.returncode not in (0, -6, -11, 134, 139) and "giraffe" in rr.stderr,
              rr.stderr.strip()[-200:])
        # labels image: photo-sized input so the box is small relative to the image
        ph = os.path.join(tmp, "kite.png")
        Image.open(os.path.join(PHOTOS, "kite.jpg")).convert("RGB").resize((480, 320)).save(ph)
        out = os.path.join(tmp, "o-labels")
        rr = run(cnnfx, ["-m", dyn, "--top", 2, "--overlay", "none", "-o", out, ph])
        lp = os.path.join(out, "kite.labels.png")
        if rr.returncode == 0 and os.path.exists(lp):
            a0 = np.asarray(Image.open(ph).convert("RGB"), np.int16)
            a1 = np.asarray(Image.open(lp).convert("RGB"), np.int16)
            diff = np.abs(a0 - a1).max(2) > 0
            ys, xs = np.nonzero(diff)
            ok = diff.any() and ys.min() < 8 and xs.min() < 8 and ys.max() < 0.4 * 320 and xs.max() < 0.6 * 480
            # the box darkens: mean of the changed pixels is lower
            dark = ok and a1[diff].mean() < a0[diff].mean()
            check("labels image differs only in a top-left box", ok and dark,
                  f"changed box x 0..{xs.max() if ok else '?'}, y 0..{ys.max() if ok else '?'}")
            check("no heat map written with --overlay none", not os.path.exists(os.path.join(out, "kite.heatmap.png")))
        else:
            check("labels image written", False, rr.stderr.strip()[-300:])

        # ---- 3. offline default model on photos --------------------------------------------
        out = os.path.join(tmp, "o-photos")
        photos = [os.path.join(PHOTOS, n) for n in ("dog.jpg", "eagle.jpg", "horses.jpg")]
        rr = run(cnnfx, ["-o", out, *photos])
        ok = rr.returncode == 0
        for ph in photos:
            b = os.path.splitext(os.path.basename(ph))[0]
            files = [os.path.join(out, b + e) for e in (".csv", ".heatmap.jpg", ".labels.jpg")]
            ok = ok and all(os.path.exists(f) for f in files)
            if ok:
                rows = read_csv(files[0])
                p = [float(x["probability"]) for x in rows]
                ok = len(rows) == 5 and p == sorted(p, reverse=True) and sum(p) <= 1 + 1e-5 and rows[0]["label"] != ""
                hm = np.asarray(Image.open(files[1]).convert("RGB"), np.float32)
                src = np.asarray(Image.open(ph).convert("RGB"), np.float32)
                ok = ok and hm.shape == src.shape and np.abs(hm - src).mean() > 5
        check("offline default model classifies darknet photos (report, heat map, labels image)", ok,
              rr.stdout.strip().replace("\n", "; ")[-300:] if ok else rr.stderr.strip()[-300:])
        out = os.path.join(tmp, "o-photos-sg")
        rr = run(cnnfx, ["--overlay", "smoothgrad", "--smooth-samples", 8, "--format", "json", "-o", out, photos[0]])
        ok = rr.returncode == 0 and os.path.exists(os.path.join(out, "dog.heatmap.jpg"))
        if ok:
            with open(os.path.join(out, "dog.json")) as f:
                ok = sum(t["prob"] for t in json.load(f)["top"]) <= 1 + 1e-5
        check("offline default model: SmoothGrad + JSON on a photo", ok, rr.stderr.strip()[-300:])
    finally:
        if a.keep:
            print("kept", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    n_pass = sum(results)
    print(f"time {time.time() - t_start:.1f} s")
    print(f"{n_pass} passed, {len(results) - n_pass} failed")
    sys.exit(0 if n_pass == len(results) and results else 1)


if __name__ == "__main__":
    main()
