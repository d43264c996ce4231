#!/usr/bin/python3
"""BatchNormalization in training form (opset 15, training_mode=1) against PyTorch.

Forward: Y with the batch's statistics and the running_mean / running_var outputs
(ONNX momentum m = 1 - torch momentum; ONNX updates the variance with the biased batch
variance, torch with the unbiased one, so the reference uses the biased one) through
`cnnfx check-onnx`.  Backward: gradients at X, scale and B of 0.5*||BN(X) * R||^2 (R a
fixed random tensor, so the gradient at X is not trivially zero) through `cnnfx grad`,
compared with torch autograd of F.batch_norm(training=True).  Exits non-zero on mismatch.
"""
import argparse, os, subprocess, sys, tempfile

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

torch.set_num_threads(2)


def save_pb(a, name, path):
    t = numpy_helper.from_array(np.ascontiguousarray(a), name)
    with open(path, "wb") as f:
        f.write(t.SerializeToString())


def load_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def make_model(arrays, graph_inputs, shape, c, outputs, with_r):
    inits = [numpy_helper.from_array(v, k) for k, v in arrays.items() if k not in graph_inputs]
    ins = [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(arrays[k].shape)) for k in graph_inputs]
    nodes = [helper.make_node("BatchNormalization", ["X", "scale", "B", "mean", "var"],
                              ["Y", "rm", "rv"] if outputs == 3 else ["Y"],
                              epsilon=1e-5, momentum=0.8, training_mode=1)]
    outs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, shape)]
    if outputs == 3:
        outs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, [c]) for n in ("rm", "rv")]
    if with_r:
        nodes.append(helper.make_node("Mul", ["Y", "R"], ["Z"]))
        outs = [helper.make_tensor_value_info("Z", TensorProto.FLOAT, shape)]
    g = helper.make_graph(nodes, "bn", ins, outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)])


def close(a, b, rtol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return False, f"shape {a.shape} != {b.shape}"
    err = np.abs(a - b).max() if a.size else 0.0
    scale = max(1e-6, np.abs(b).max())
    return err <= rtol * scale, f"max abs err {err:.3g} (scale {scale:.3g})"


def run_case(cnnfx, shape, tmp, rng):
    c = shape[1]
    x = (rng.normal(size=shape) * 3 + 1.5).astype(np.float32)
    arrays = {"X": x, "scale": rng.uniform(0.5, 2, [c]).astype(np.float32),
              "B": rng.uniform(-1, 1, [c]).astype(np.float32),
              "mean": rng.uniform(-1, 1, [c]).astype(np.float32),
              "var": rng.uniform(0.5, 2, [c]).astype(np.float32),
              "R": rng.normal(size=shape).astype(np.float32)}
    fails = []
    # reference
    tx = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    ts = torch.tensor(arrays["scale"], dtype=torch.float64, requires_grad=True)
    tb = torch.tensor(arrays["B"], dtype=torch.float64, requires_grad=True)
    y = F.batch_norm(tx, None, None, ts, tb, training=True, eps=1e-5)
    axes = [0] + list(range(2, len(shape)))
    bmean = x.astype(np.float64).mean(axis=tuple(axes))
    bvar = x.astype(np.float64).var(axis=tuple(axes))
    rm = arrays["mean"] * 0.8 + bmean * 0.2
    rv = arrays["var"] * 0.8 + bvar * 0.2
    # torch's own running-statistics update agrees for the mean (momentum 0.2)
    trm = torch.tensor(arrays["mean"], dtype=torch.float64)
    trv = torch.tensor(arrays["var"], dtype=torch.float64)
    F.batch_norm(torch.tensor(x, dtype=torch.float64), trm, trv, None, None, training=True, momentum=0.2)
    assert np.allclose(trm.numpy(), rm), "reference running mean"
    (0.5 * ((y * torch.tensor(arrays["R"], dtype=torch.float64)) ** 2).sum()).backward()
    ref = {"X": tx.grad.numpy(), "scale": ts.grad.numpy(), "B": tb.grad.numpy()}

    d = os.path.join(tmp, "fwd")
    os.makedirs(os.path.join(d, "test_data_set_0"))
    onnx.save(make_model({k: v for k, v in arrays.items() if k != "R"}, ["X"], list(shape), c, 3, False),
              os.path.join(d, "model.onnx"))
    save_pb(x, "X", os.path.join(d, "test_data_set_0", "input_0.pb"))
    for k, (n, v) in enumerate([("Y", y.detach().numpy()), ("rm", rm), ("rv", rv)]):
        save_pb(v.astype(np.float32), n, os.path.join(d, "test_data_set_0", f"output_{k}.pb"))
    r = subprocess.run([cnnfx, "check-onnx", "--rtol", "1e-4", "--atol", "1e-4", d], capture_output=True, text=True)
    if r.returncode != 0:
        fails.append("forward: " + (r.stdout + r.stderr).strip()[-600:])

    for n in ("X", "scale", "B"):
        mp = os.path.join(tmp, f"grad_{n}.onnx")
        onnx.save(make_model(arrays, [n], list(shape), c, 1, True), mp)
        ip, op = os.path.join(tmp, f"in_{n}.pb"), os.path.join(tmp, f"g_{n}.pb")
        save_pb(arrays[n], n, ip)
        r = subprocess.run([cnnfx, "grad", mp, "--input", ip, "-o", op], capture_output=True, text=True)
        if r.returncode != 0:
            fails.append(f"d{n}: cnnfx grad failed: " + (r.stdout + r.stderr).strip()[-500:])
            continue
        ok, msg = close(load_pb(op), ref[n], 2e-4)
        print(f"  d{n}: {msg}")
        if not ok:
            fails.append(f"d{n}: {msg}")
    return fails


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    a = ap.parse_args()
    rng = np.random.default_rng(7)
    shapes = [(4, 3, 5, 6), (2, 8, 7, 7), (16, 5), (3, 4, 200, 201), (1, 2, 3, 4, 5)]
    failed = 0
    with tempfile.TemporaryDirectory(prefix="cnnfx-bn-train-") as tmp:
        for i, sh in enumerate(shapes):
            ct = os.path.join(tmp, str(i))
            os.makedirs(ct)
            print(f"case {sh}")
            fails = run_case(a.cnnfx, sh, ct, rng)
            if fails:
                failed += 1
                print("FAIL " + str(sh) + "\n  " + "\n  ".join(fails))
    if failed:
        print(f"{failed} of {len(shapes)} BatchNormalization training cases failed")
        return 1
    print(f"all {len(shapes)} BatchNormalization training cases match PyTorch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
