#!/usr/bin/python3
"""Runtime dispatch: the same results with every SIMD level of cnnfx's own kernels.

For each level this CPU runs (baseline, avx2, avx512; forced with CNNFX_SIMD as a user would):
  * test_winograd (Winograd against a float64 direct convolution),
  * `cnnfx check-onnx` on ONNX's node tests of conv / pool / elementwise (tests/node_tests_*.txt),
  * the finite-difference gradient checks of pooling and (exact mode) convolution (tests/gradcheck),
  * `cnnfx grad` (fast mode and --exact) on a small network with every kernel family (Winograd 3x3,
    strided and 1x1 convs, max/avg pool, BatchNorm, ReLU, sigmoid, Add, Concat, global pool);
    gradients of all levels must agree within float noise (rel. L2 <= 1e-5).
A level the CPU lacks is reported as skipped; an unknown or unsupported CNNFX_SIMD must fail cleanly.
Prints "N passed, M failed"; exit 1 on failure.
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnx.numpy_helper as nph
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = "/usr/share/libonnx-testdata/data"
LEVELS = ["baseline", "avx2", "avx512"]


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 7, stride=2, padding=3)
        self.bn = nn.BatchNorm2d(16)
        self.c3 = nn.Conv2d(16, 32, 3, padding=1)      # Winograd in fast mode
        self.c1a = nn.Conv2d(32, 16, 1)
        self.c1b = nn.Conv2d(32, 24, 1)
        self.c3b = nn.Conv2d(40, 32, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        x = nn.functional.max_pool2d(x, 3, 2, ceil_mode=True)
        x = torch.relu(self.c3(x))
        y = torch.cat([torch.relu(self.c1a(x)), torch.sigmoid(self.c1b(x))], 1)
        y = nn.functional.avg_pool2d(y, 3, 1, 1)
        z = self.c3b(y) + x
        z = z + nn.functional.adaptive_avg_pool2d(z, 1)
        return torch.cat([nn.functional.max_pool2d(z, 2), nn.functional.avg_pool2d(z, 2)], 1)


def save_pb(arr, path, name):
    with open(path, "wb") as f:
        f.write(nph.from_array(np.ascontiguousarray(arr), name).SerializeToString())


def load_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return nph.to_array(t)


def run(args, env, timeout=600):
    try:
        p = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired:
        return None, f"timeout after {timeout}s"


def node_dirs():
    dirs = []
    for lst in ("node_tests_conv.txt", "node_tests_pool.txt", "node_tests_elementwise.txt"):
        for line in open(os.path.join(HERE, lst)):
            t = line.split("#")[0].strip()
            if t:
                d = os.path.join(DATA, t if "/" in t else "node/" + t)
                if os.path.isdir(d):
                    dirs.append(d)
    return dirs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    ap.add_argument("--winograd-test", required=True)
    a = ap.parse_args()
    base_env = {k: v for k, v in os.environ.items() if k != "CNNFX_SIMD"}
    passed = failed = 0

    def check(ok, what, detail=""):
        nonlocal passed, failed
        print(f"{'PASS' if ok else 'FAIL'} {what}" + (f": {detail}" if detail else ""))
        sys.stdout.flush()
        passed += bool(ok)
        failed += not ok

    rc, out = run([a.cnnfx, "--version"], base_env)
    sup = next((l.split(":", 1)[1].split() for l in out.splitlines() if l.startswith("simd-supported:")), None)
    check(rc == 0 and sup and "baseline" in sup, "cnnfx --version names the supported SIMD levels", out.strip())
    sup = sup or ["baseline"]
    rc, out = run([a.cnnfx, "info", "--system"], dict(base_env, CNNFX_SIMD="bogus"))
    check(rc == 2 and "bogus" in out, "CNNFX_SIMD=bogus is refused", out.strip()[-200:])
    for lv in LEVELS:
        if lv not in sup:
            rc, out = run([a.cnnfx, "info", "--system"], dict(base_env, CNNFX_SIMD=lv))
            check(rc == 2 and "cannot run" in out, f"CNNFX_SIMD={lv} refused on a CPU without it", out.strip()[-200:])
            print(f"skipped: level {lv} (this CPU or build does not run it)")

    torch.manual_seed(3)
    net = Net().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 3, 71, 79)  # 18x20 after the stem and pool: Winograd runs (>= 256 outputs)
    dirs = node_dirs()
    grads = {}
    with tempfile.TemporaryDirectory() as d:
        mp, xp = os.path.join(d, "net.onnx"), os.path.join(d, "x.pb")
        torch.onnx.export(net, x, mp, opset_version=13, input_names=["input"], output_names=["y"],
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=True)
        save_pb(x.numpy(), xp, "input")
        exact = os.path.join(d, "cnnfx-exact")
        with open(exact, "w") as f:
            f.write(f'#!/bin/sh\nexec "{os.path.abspath(a.cnnfx)}" "$@" --exact\n')
        os.chmod(exact, 0o755)
        for lv in (l for l in LEVELS if l in sup):
            env = dict(base_env, CNNFX_SIMD=lv)
            rc, out = run([a.cnnfx, "info", "--system"], env)
            check(rc == 0 and f"kernels: {lv}" in out, f"[{lv}] backend runs the {lv} kernels", out.strip()[-300:])
            rc, out = run([a.winograd_test], env)
            check(rc == 0, f"[{lv}] test_winograd", out.strip().splitlines()[-1] if out.strip() else "")
            if dirs:
                rc, out = run([a.cnnfx, "check-onnx"] + dirs, env)
                bad = [l for l in out.splitlines() if not l.startswith("PASS")]
                check(rc == 0, f"[{lv}] {len(dirs)} ONNX node tests (conv, pool, elementwise)", "\n".join(bad[:20]))
            else:
                print("skipped: ONNX node tests (libonnx-testdata not installed)")
            # Finite differences of a float32 Winograd forward are noisy (a few % on some samples,
            # seed-dependent at every level): conv is checked in exact mode, Winograd itself by
            # test_winograd above and by the cross-level comparison below.
            for only, exe in (("pool", a.cnnfx), ("conv", exact)):
                rc, out = run([sys.executable, os.path.join(HERE, "gradcheck", "run.py"), "--cnnfx", exe,
                               "--only", only], env)
                check(rc == 0, f"[{lv}] gradcheck --only {only}{' (exact)' if exe == exact else ''}",
                      out.strip().splitlines()[-1] if out.strip() else "")
            for mode, extra in (("fast", []), ("exact", ["--exact"])):
                gp = os.path.join(d, f"g_{lv}_{mode}.pb")
                rc, out = run([a.cnnfx, "grad", mp, "--input", xp, "-o", gp] + extra, env)
                check(rc == 0, f"[{lv}] cnnfx grad ({mode})", out.strip()[-300:])
                if rc == 0:
                    grads[(lv, mode)] = load_pb(gp).astype(np.float64)
    for mode in ("fast", "exact"):
        ref = grads.get(("baseline", mode))
        for lv in LEVELS[1:]:
            g = grads.get((lv, mode))
            if ref is None or g is None:
                continue
            r = float(np.linalg.norm(g - ref) / np.linalg.norm(ref))
            check(r <= 1e-5, f"{lv} vs baseline gradient ({mode} mode)", f"rel. L2 difference {r:.2e}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
