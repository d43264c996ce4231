#!/usr/bin/python3
"""Exact mode: `cnnfx grad --exact` against float64 PyTorch on the torchvision architectures of
test_torchvision.py (same seeded weights and BatchNorm statistics, same export).

For each model the input gradient of L = 0.5*||y||^2 is computed
  * by `cnnfx grad --exact` and by `cnnfx grad` (default fast mode, Winograd);
  * by torch in float64 (the reference) and in float32 (its own error e32 = rel. L2 error).
A float32 gradient through ReLU / max-pool is not continuous in rounding: a unit within rounding
error of a kink may take the other branch (see test_torchvision.py), which alone gives errors of
~1e-3 whatever the arithmetic.  So the reference runs the exported ONNX graph in torch with the
ReLU masks and max-pool argmax of cnnfx's own forward pass (test_torchvision's interpreter), in
float64 and in float32: then
  * exact mode must be within max(1e-4, 2*e32) of the float64 reference (the issue's bound), and
    within max(1e-6, 3*e32) (so that a Winograd layer left on, ~1e-5, fails),
  * fast mode's error is printed (docs/benchmarks.md quotes it) and must stay below 1e-2.
The plain errors (branches not aligned) are printed too.
Prints "PASS/FAIL model ..." lines and "N passed, M failed"; exit 1 on failure.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import onnx
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_torchvision as tv  # noqa: E402

FAST_MAX = 1e-2


def rel(g, ref):
    g = g.astype(np.float64)
    ref = ref.astype(np.float64)
    return float(np.linalg.norm(g - ref) / max(np.linalg.norm(ref), 1e-300))


def torch_grad(wrapped, x, dtype):
    m = wrapped.model.to(dtype)
    xr = torch.from_numpy(x).to(dtype).requires_grad_(True)
    y = m(xr)
    (g,) = torch.autograd.grad(0.5 * (y ** 2).sum(), xr)
    return g.double().numpy()


def interp_grad(model, x, kinks, dtype):
    """Input gradient of 0.5*||y||^2 from the ONNX graph run in torch at `dtype`, with ReLU/Clip masks
    and max-pool argmax taken from cnnfx's forward values (same branches as cnnfx)."""
    xr = torch.from_numpy(x).to(dtype).requires_grad_(True)
    env = tv.onnx_torch_eval(model, xr, kinks, dtype=dtype)
    y = env[model.graph.output[0].name]
    (g,) = torch.autograd.grad(0.5 * (y ** 2).sum(), xr)
    return g.double().numpy()


def kink_shapes(model, x):
    with torch.no_grad():
        env = tv.onnx_torch_eval(model, torch.from_numpy(x))
    return {n.input[0]: tuple(env[n.input[0]].shape) for n in model.graph.node if n.op_type in tv.KINK_OPS}


# AlexNet and VGG end in an adaptive pool that exports only at 224x224: below that, their convolution
# stack (`features`, which is all their 3x3 / strided convolutions and max-pools) is checked.
FEATURES_ONLY = ("alexnet", "vgg16", "vgg19")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    ap.add_argument("--models", default=",".join(tv.MODELS))
    ap.add_argument("--size", type=int, default=112, help="input side (224: whole AlexNet / VGG too)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(2)
    passed = failed = 0
    with tempfile.TemporaryDirectory() as d:
        wrappers = {}
        for mode, extra in (("exact", " --exact"), ("fast", "")):
            wrappers[mode] = os.path.join(d, f"cnnfx-{mode}")
            with open(wrappers[mode], "w") as f:
                f.write(f'#!/bin/sh\nexec "{os.path.abspath(a.cnnfx)}" "$@"{extra}\n')
            os.chmod(wrappers[mode], 0o755)
        for name in a.models.split(","):
            t0 = time.time()
            size = a.size
            wrapped, _ = tv.build(name, a.seed)
            part = ""
            if name in FEATURES_ONLY and size < 224:
                wrapped = tv.Tapped(wrapped.model.features, tv.MODELS[name][2](wrapped.model)).eval()
                part = " features"
            gen = torch.Generator().manual_seed(a.seed + 7)
            x = torch.randn(1, 3, size, size, generator=gen).numpy()
            model = tv.export(wrapped, torch.from_numpy(x), 13)
            mp, xp = os.path.join(d, "model.onnx"), os.path.join(d, "x.pb")
            onnx.save(model, mp)
            tv.save_pb(x, xp, "input")
            g64 = torch_grad(wrapped, x, torch.float64)
            e32_plain = rel(torch_grad(wrapped, x, torch.float32), g64)
            shapes = kink_shapes(model, x)
            res = {}
            for mode in ("exact", "fast"):
                gp = os.path.join(d, f"g_{mode}.pb")
                rc, out, _ = tv.run_cli([wrappers[mode], "grad", mp, "--input", xp, "-o", gp], 600)
                if rc != 0:
                    print(f"  cnnfx grad ({mode}) failed: {out[-500:]}")
                    res[mode] = None
                    continue
                g = tv.load_pb(gp)
                kinks = tv.cnnfx_values(model, x, shapes, d, wrappers[mode], 600)
                r64 = interp_grad(model, x, kinks, torch.float64)
                e32 = rel(interp_grad(model, x, kinks, torch.float32), r64)
                res[mode] = (rel(g, r64), e32, rel(g, g64))
            ok_exact = ok_fast = False
            if res["exact"]:
                err, e32, plain = res["exact"]
                tol = max(1e-4, 2 * e32)
                # The bound (1e-4) would also admit Winograd's error (~1e-5): exact mode must
                # moreover be float32 arithmetic, within 3x (and 1e-6) of torch-f32's own error.
                tight = max(1e-6, 3 * e32)
                ok_exact = err <= tol and err <= tight
                print(f"{'PASS' if ok_exact else 'FAIL'} {name}{part} {size}x{size} exact: cnnfx --exact vs float64 "
                      f"{err:.2e} (limit {tol:.2e} = max(1e-4, 2 x torch-f32 {e32:.2e}), and {tight:.2e} = max(1e-6, "
                      f"3 x torch-f32); same ReLU/max-pool branches); without aligning branches cnnfx {plain:.2e}, torch-f32 {e32_plain:.2e}")
            if res["fast"]:
                err, e32, plain = res["fast"]
                ok_fast = err <= FAST_MAX
                print(f"{'PASS' if ok_fast else 'FAIL'} {name}{part} {size}x{size} fast: default mode vs float64 "
                      f"{err:.2e} (limit {FAST_MAX:.0e}, same branches); without aligning branches {plain:.2e} "
                      f"[{time.time() - t0:.1f}s]")
            for ok in (ok_exact, ok_fast):
                passed += ok
                failed += not ok
            sys.stdout.flush()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
