#!/usr/bin/python3
"""One training step of `cnnfx train --data DIR --arch cifar-tiny` against PyTorch.

A 10-class ImageFolder of 20 random PNG images (no JPEG decoder differences) is trained for
exactly one full-batch SGD step (no momentum, constant lr, no augmentation).  The same network
is built in torch from the untrained file (`cnnfx train --arch cifar-tiny -o init.onnx`, same
seed), with BatchNorm in training mode, the same normalised input and one SGD step; every
trained weight of cnnfx's output must equal torch's within 1e-3 of the update's size, the loss
must match, and the running statistics (ONNX momentum 0.5: half the old value plus half the
batch's) must be the batch statistics torch sees.  Also checks the label-smoothed loss and the
one-cycle schedule's first learning rate through a second run.
"""
import argparse, os, re, subprocess, sys, tempfile

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiny_folder import make_tiny_folder  # noqa: E402

torch.set_num_threads(2)
results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)


def torch_step(root, init, mean, std, lr, smoothing):
    X, Y = [], []
    for c in range(10):
        for i in range(2):
            a = np.asarray(Image.open(f"{root}/train/c{c}/{i}.png"), np.float32) / 255.0
            X.append(a.transpose(2, 0, 1))
            Y.append(c)
    m = np.array(mean, np.float32)[None, :, None, None]
    s = np.array(std, np.float32)[None, :, None, None]
    X = torch.tensor(((np.stack(X) - m) / s).astype(np.float32))
    Y = torch.tensor(Y)
    W0 = {t.name: torch.tensor(numpy_helper.to_array(t).copy()) for t in onnx.load(init).graph.initializer}
    P = {k: v.clone().requires_grad_(not (k.endswith(".mean") or k.endswith(".var"))) for k, v in W0.items()}
    stats = {}

    def bn(h, p):
        stats[p] = (h.detach().mean(dim=(0, 2, 3)), h.detach().var(dim=(0, 2, 3), unbiased=False))
        return F.batch_norm(h, None, None, P[p + ".scale"], P[p + ".bias"], True, 0.0, 1e-5)

    h = F.relu(bn(F.conv2d(X, P["stem.conv.weight"], padding=1), "stem.bn"))
    for k in (1, 2, 3):
        h = F.max_pool2d(F.conv2d(h, P[f"b{k}.conv1.weight"], padding=1), 2)
        h = F.relu(bn(h, f"b{k}.bn1"))
        h = F.relu(bn(F.conv2d(h, P[f"b{k}.conv2.weight"], padding=1), f"b{k}.bn2"))
    h = torch.amax(h, dim=(2, 3))
    z = (h @ P["fc.weight"].T) / 9.0 + P["fc.bias"]
    loss = F.cross_entropy(z, Y, label_smoothing=smoothing)
    loss.backward()
    new = {k: (v - lr * v.grad).detach().numpy() for k, v in P.items() if v.grad is not None}
    return loss.item(), W0, new, stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="cnnfx-train-step-") as tmp:
        root = os.path.join(tmp, "data")
        make_tiny_folder(root, rng)
        init = os.path.join(tmp, "init.onnx")
        subprocess.run([a.cnnfx, "train", "--arch", "cifar-tiny", "--seed", "5", "-o", init], check=True,
                       capture_output=True)
        for smoothing in (0.0, 0.2):
            out = os.path.join(tmp, f"step{smoothing}.onnx")
            lr = 0.1
            r = subprocess.run([a.cnnfx, "train", "--data", root, "--arch", "cifar-tiny", "--seed", "5", "--epochs", "1",
                                "--batch-size", "20", "--optimizer", "sgd", "--lr", str(lr), "--momentum", "0",
                                "--schedule", "constant", "--pad", "0", "--no-flip", "--label-smoothing",
                                str(smoothing), "-o", out], capture_output=True, text=True)
            check(f"smoothing {smoothing}: one-step run", r.returncode == 0,
                  (r.stdout + r.stderr)[-400:] if r.returncode else "")
            if r.returncode:
                continue
            ini = open(out[:-5] + ".ini").read()
            mean = [float(v) for v in re.search(r"mean=(.*)", ini).group(1).split(";")]
            std = [float(v) for v in re.search(r"std=(.*)", ini).group(1).split(";")]
            loss, W0, new, stats = torch_step(root, init, mean, std, lr, smoothing)
            cl = float(re.search(r"^epoch 1/1\s+loss ([0-9.]+)", r.stdout, re.M).group(1))
            check(f"smoothing {smoothing}: loss matches torch", abs(cl - loss) < 1e-3, f"cnnfx {cl} torch {loss:.5f}")
            W1 = {t.name: numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
            worst, where = 0.0, ""
            for k, v in new.items():
                step = max(1e-7, float(np.abs(v - W0[k].numpy()).max()))
                err = float(np.abs(v - W1[k]).max()) / step
                if err > worst:
                    worst, where = err, k
            check(f"smoothing {smoothing}: every weight after one SGD step matches torch", worst < 1e-3,
                  f"worst {worst:.2e} at {where}")
            worst = 0.0
            for p, (bm, bv) in stats.items():
                em = 0.5 * W0[p + ".mean"].numpy() + 0.5 * bm.numpy()
                ev = 0.5 * W0[p + ".var"].numpy() + 0.5 * bv.numpy()
                worst = max(worst, float(np.abs(em - W1[p + ".mean"]).max()), float(np.abs(ev - W1[p + ".var"]).max()))
            check(f"smoothing {smoothing}: running statistics are the batch's (momentum 0.5)", worst < 1e-4,
                  f"max err {worst:.2e}")
        # one-cycle: the first step runs at lr * 0.1 (warm-up start)
        out = os.path.join(tmp, "cyc.onnx")
        r = subprocess.run([a.cnnfx, "train", "--data", root, "--arch", "cifar-tiny", "--seed", "5", "--epochs", "1",
                            "--batch-size", "20", "--optimizer", "sgd", "--lr", "1.0", "--momentum", "0",
                            "--schedule", "onecycle", "--warmup", "100", "--pad", "0", "--no-flip", "-o", out], capture_output=True, text=True)
        if r.returncode == 0:
            ini = open(out[:-5] + ".ini").read()
            mean = [float(v) for v in re.search(r"mean=(.*)", ini).group(1).split(";")]
            std = [float(v) for v in re.search(r"std=(.*)", ini).group(1).split(";")]
            _, W0, new, _ = torch_step(root, init, mean, std, 0.1, 0.0)
            W1 = {t.name: numpy_helper.to_array(t) for t in onnx.load(out).graph.initializer}
            err = max(float(np.abs(v - W1[k]).max()) / max(1e-7, float(np.abs(v - W0[k].numpy()).max()))
                      for k, v in new.items())
            check("onecycle: first step at 0.1 x lr (warm-up start)", err < 1e-3, f"worst {err:.2e}")
        else:
            check("onecycle run", False, (r.stdout + r.stderr)[-400:])
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
