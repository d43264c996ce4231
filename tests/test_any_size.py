#!/usr/bin/python3
"""Any photo size on a model with a stride constraint (batch/netload.c probe, core/filters/net.c).

Model: a tiny U-Net-like network (seeded weights): conv 3x3 stride 2 -> ReLU -> nearest 2x
Resize, added to a 1x1 conv of the input.  At an odd width the two branches differ by one pixel
and the Add fails; cnnfx must find that sizes have to be multiples of 2 (by trying), pad the
image (edge replication) and fold the gradient back.

Checks:
  1. the model line says "padded to multiples of 2";
  2. dream (1 octave, 1 step, no jitter) on a 99x77 photo writes a 99x77 result;
  3. its change is dream's step x + 20/255 * g / mean|g| with g the gradient of the dream
     objective computed by PyTorch on the edge-padded image (torch's replicate padding is
     differentiable, so the reference folds the padding's gradient back by itself), after the
     8-bit save: every pixel within 1/255, also on the last column (where the fold adds the
     padded column's gradient);
  4. without the padding (--input-size is not involved) the plain model indeed fails at 99x77
     in PyTorch (the constraint is real).
Prints PASS/FAIL lines and "N passed, M failed"; exit 1 on any failure.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from PIL import Image

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'} {name}" + (f" ({detail})" if detail else ""), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    a = ap.parse_args()
    r = np.random.default_rng(0)
    w1 = r.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32)
    w2 = r.normal(0, 0.3, (4, 3, 1, 1)).astype(np.float32)
    init = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
            numpy_helper.from_array(np.array([], np.float32), "roi"),
            numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "sc")]
    nodes = [helper.make_node("Conv", ["input", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Resize", ["r1", "roi", "sc"], ["u"], mode="nearest"),
             helper.make_node("Conv", ["input", "w2"], ["c2"]),
             helper.make_node("Add", ["u", "c2"], ["out"])]
    g = helper.make_graph(nodes, "unet", [helper.make_tensor_value_info("input", 1, [1, 3, "h", "w"])],
                          [helper.make_tensor_value_info("out", 1, [1, 4, "h", "w"])], init)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    d = tempfile.mkdtemp(prefix="cnnfx-anysize-")
    try:
        mp = os.path.join(d, "unet.onnx")
        onnx.save(m, mp)
        # a photo-like image in mid-range (no clipping after one step)
        H, W = 77, 99
        src = Image.open("/usr/share/darknet/data/eagle.jpg").convert("RGB").resize((W, H), Image.BILINEAR)
        x0 = 0.3 + 0.4 * np.asarray(src, np.float64) / 255
        ip = os.path.join(d, "photo.png")
        Image.fromarray(np.round(x0 * 255).astype(np.uint8)).save(ip)
        x0 = np.asarray(Image.open(ip), np.float64) / 255
        p = subprocess.run([a.cnnfx, "dream", "-m", mp, "--layer", "out", "--octaves", "1", "--iterations", "1",
                            "--jitter", "0", "--step", "20", ip, "-o", os.path.join(d, "o")],
                           capture_output=True, text=True)
        line = [ln for ln in p.stderr.splitlines() if ln.startswith("model ")]
        check("the model line says the sizes are padded to multiples of 2",
              len(line) == 1 and "padded to multiples of 2" in line[0], line or p.stderr[-300:])
        out = os.path.join(d, "o", "photo.png")
        if p.returncode != 0 or not os.path.exists(out):
            check("dream on a 99x77 photo runs", False, p.stderr[-300:])
        else:
            x1 = np.asarray(Image.open(out), np.float64) / 255
            check("dream on a 99x77 photo writes 99x77", x1.shape == x0.shape, f"{x1.shape}")
            # reference gradient: objective 0.5*||out||^2 (dream's, up to a constant factor)
            xt = torch.tensor(x0.transpose(2, 0, 1)[None], requires_grad=True)
            mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).reshape(1, 3, 1, 1)
            std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).reshape(1, 3, 1, 1)
            xp = F.pad(xt, (0, W % 2, 0, H % 2), mode="replicate")
            z = (xp - mean) / std
            c1 = F.relu(F.conv2d(z, torch.tensor(w1, dtype=torch.float64), stride=2, padding=1))
            u = F.interpolate(c1, scale_factor=2, mode="nearest")
            y = u + F.conv2d(z, torch.tensor(w2, dtype=torch.float64))
            (0.5 * (y ** 2).sum()).backward()
            gr = xt.grad[0].numpy().transpose(1, 2, 0)
            ch = x1 - x0
            if x1.shape == x0.shape:
                # dream's step: x += step/255 * g / mean|g|, clipped, then the 8-bit save
                pred = np.round(np.clip(x0 + 20 / 255 * gr / np.abs(gr).mean(), 0, 1) * 255) / 255
                err = np.abs(x1 - pred) * 255
                errl = err[:, -1]
                c = np.corrcoef(ch.ravel(), gr.ravel())[0, 1]
                check("the step is the gradient on the padded image, folded back (8-bit save: <= 1/255)",
                      err.max() <= 1.0 + 1e-9 and err.mean() < 0.1 and errl.max() <= 1.0 + 1e-9,
                      f"max |diff| {err.max():.0f}/255, mean {err.mean():.3f}/255, last column max {errl.max():.0f}/255;"
                      f" correlation with the gradient {c:.3f}")
            try:
                zt = torch.zeros(1, 3, H, W)
                F.interpolate(F.conv2d(zt, torch.tensor(w1), stride=2, padding=1), scale_factor=2) + \
                    F.conv2d(zt, torch.tensor(w2))
                check("the constraint is real (torch fails at 99x77 without padding)", False)
            except RuntimeError:
                check("the constraint is real (torch fails at 99x77 without padding)", True)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
