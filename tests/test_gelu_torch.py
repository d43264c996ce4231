#!/usr/bin/python3
"""Gelu (ONNX opset 20, approximate "none" and "tanh") against PyTorch's F.gelu.

Forward: ONNX backend-test directories whose expected outputs are torch's, run by `cnnfx check-onnx`
(rtol 1e-5, atol 1e-6), over [-10, 10] with both tails.  Backward: `cnnfx grad` (the gradient of
0.5 ||gelu(x)||^2, i.e. gelu(x) * gelu'(x)) against torch autograd.  Finite differences are in
tests/gradcheck (gen_elementwise.py).  Also: a Gelu in a file of opset < 20, or with an unknown
`approximate`, is refused with a clear error.
"""
import argparse, os, subprocess, sys, tempfile

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)


def model(path, shape, opset=20, **attrs):
    g = helper.make_graph([helper.make_node("Gelu", ["X"], ["Y"], **attrs)], "gelu",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, shape)])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8), path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    shape = [2, 3, 41, 37]
    x = np.concatenate([np.linspace(-10, 10, 2001, dtype=np.float32),
                        rng.standard_normal(int(np.prod(shape)) - 2001).astype(np.float32) * 2.5])
    x = x.reshape(shape)
    with tempfile.TemporaryDirectory(prefix="cnnfx-gelu-") as tmp:
        for ap_ in ("none", "tanh"):
            d = os.path.join(tmp, f"test_gelu_{ap_}")
            os.makedirs(os.path.join(d, "test_data_set_0"))
            mp = os.path.join(d, "model.onnx")
            model(mp, shape, approximate=ap_)
            xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
            y = F.gelu(xt, approximate=ap_)
            (0.5 * (y * y).sum()).backward()
            ref_y = y.detach().numpy().astype(np.float32)
            ref_g = xt.grad.numpy().astype(np.float32)
            for nm, arr in (("input_0", x), ("output_0", ref_y)):
                with open(os.path.join(d, "test_data_set_0", nm + ".pb"), "wb") as f:
                    f.write(numpy_helper.from_array(arr).SerializeToString())
            r = subprocess.run([a.cnnfx, "check-onnx", "--rtol", "1e-5", "--atol", "1e-6", d], capture_output=True,
                               text=True)
            check(f"Gelu approximate={ap_}: forward = torch (check-onnx, rtol 1e-5, atol 1e-6)", r.returncode == 0,
                  (r.stdout + r.stderr)[-300:])
            gp = os.path.join(tmp, f"g_{ap_}.pb")
            r = subprocess.run([a.cnnfx, "grad", mp, "--input", os.path.join(d, "test_data_set_0", "input_0.pb"),
                                "-o", gp], capture_output=True, text=True)
            if r.returncode:
                check(f"Gelu approximate={ap_}: cnnfx grad runs", False, r.stderr[-300:])
                continue
            t = onnx.TensorProto()
            t.ParseFromString(open(gp, "rb").read())
            g = numpy_helper.to_array(t)
            err = float(np.max(np.abs(g - ref_g) / (1e-5 + np.abs(ref_g))))
            aerr = float(np.max(np.abs(g - ref_g)))
            check(f"Gelu approximate={ap_}: input gradient = torch autograd",
                  g.shape == ref_g.shape and np.all(np.abs(g - ref_g) <= 1e-6 + 1e-5 * np.abs(ref_g)),
                  f"max abs err {aerr:.2e}, max rel err {err:.2e}")
        # refusals
        xin = os.path.join(tmp, "x.pb")
        with open(xin, "wb") as f:
            f.write(numpy_helper.from_array(np.ones([1, 4], np.float32)).SerializeToString())
        for what, kw, want in (("a Gelu in an opset-18 file", {"opset": 18}, "opset 20"),
                               ("Gelu approximate='sigmoid'", {"approximate": "sigmoid"}, "none, tanh")):
            bad = os.path.join(tmp, "bad.onnx")
            model(bad, [1, 4], **kw)
            r = subprocess.run([a.cnnfx, "grad", bad, "--input", xin, "-o", os.path.join(tmp, "o.pb")],
                               capture_output=True, text=True)
            check(f"{what} is refused, naming {want}", r.returncode != 0 and want in r.stderr,
                  (r.stdout + r.stderr)[-300:])
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
