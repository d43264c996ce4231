#!/usr/bin/python3
"""Compare cnnfx's Conv / ConvTranspose against torch.nn.functional.

For random (and a few fixed, larger) layer configurations:
  * forward: a single-op ONNX model with X, W, B as graph inputs is written as an ONNX
    backend-test directory and run through `cnnfx check-onnx`;
  * gradients: for each of X, W, B a model whose only graph input is that tensor (the others
    are initializers) is run through `cnnfx grad`, which writes d(0.5*||Y||^2)/d(input);
    the result is compared with torch autograd.
Exits non-zero on any mismatch.
"""
import argparse, os, random, subprocess, sys, tempfile

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

torch.set_num_threads(2)


# ---------------------------------------------------------------- reference (torch)

def same_pads(total, mode):
    """(begin, end) split of total padding, as cnnfx / onnxruntime do it."""
    if mode == "SAME_LOWER":
        return total - total // 2, total // 2
    return total // 2, total - total // 2


def conv_geometry(c):
    """Explicit begin/end pads and output spatial dims for case c."""
    nsp = len(c["x"]) - 2
    xs, ks, s, d = c["x"][2:], c["w"][2:], c["strides"], c["dil"]
    pb, pe, out = [], [], []
    for i in range(nsp):
        dk = (ks[i] - 1) * d[i] + 1
        if c["op"] == "Conv":
            if c["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
                o = -(-xs[i] // s[i])
                b, e = same_pads(max(0, (o - 1) * s[i] + dk - xs[i]), c["auto_pad"])
            elif c["auto_pad"] == "VALID":
                b, e = 0, 0
            else:
                b, e = c["pads"][i], c["pads"][nsp + i]
            o = (xs[i] + b + e - dk) // s[i] + 1
        else:
            full = s[i] * (xs[i] - 1) + c["opad"][i] + dk
            if c["oshape"] or c["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
                o = c["oshape"][i] if c["oshape"] else xs[i] * s[i]
                total = max(0, full - o)
                b, e = same_pads(total, c["auto_pad"])
                e = full - o - b  # may be negative: extra zero outputs at the end
            else:
                b, e = c["pads"][i], c["pads"][nsp + i]
                o = full - b - e
        pb.append(b)
        pe.append(e)
        out.append(o)
    return pb, pe, out


def torch_ref(c, x, w, b):
    nsp = x.dim() - 2
    pb, pe, out = conv_geometry(c)
    if c["op"] == "Conv":
        fn = (F.conv1d, F.conv2d, F.conv3d)[nsp - 1]
        padspec = []
        for i in reversed(range(nsp)):
            padspec += [pb[i], pe[i]]
        return fn(F.pad(x, padspec), w, b, stride=c["strides"], dilation=c["dil"], groups=c["group"])
    fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[nsp - 1]
    y = fn(x, w, b, stride=c["strides"], dilation=c["dil"], groups=c["group"])
    # Crop pb at the start; the end is cropped (or zero-extended, with the bias) to the ONNX size.
    if b is not None:
        shape = [1, -1] + [1] * nsp
        y = y - b.view(shape)
    for i in range(nsp):
        ax = 2 + i
        n = y.shape[ax]
        y = y.narrow(ax, pb[i], min(n - pb[i], out[i]))
        if y.shape[ax] < out[i]:
            padspec = [0, 0] * nsp
            padspec[2 * (nsp - 1 - i) + 1] = out[i] - y.shape[ax]
            y = F.pad(y, padspec)
    if b is not None:
        y = y + b.view(shape)
    return y


# ---------------------------------------------------------------- ONNX models

def node_attrs(c):
    nsp = len(c["x"]) - 2
    a = {"group": c["group"], "strides": c["strides"], "dilations": c["dil"]}
    if c.get("kshape"):
        a["kernel_shape"] = c["w"][2:]
    if c["auto_pad"] != "NOTSET":
        a["auto_pad"] = c["auto_pad"]
    elif any(c["pads"]):
        a["pads"] = c["pads"]
    if c["op"] == "ConvTranspose":
        if any(c["opad"]):
            a["output_padding"] = c["opad"]
        if c["oshape"]:
            a["output_shape"] = c["oshape"]
    assert len(a["strides"]) == nsp
    return a


def make_model(c, arrays, graph_inputs, yshape):
    """arrays: name -> numpy; graph_inputs: names that are graph inputs (rest: initializers)."""
    names = ["X", "W"] + (["B"] if "B" in arrays else [])
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(arrays[n].shape)) for n in graph_inputs]
    inits = [numpy_helper.from_array(arrays[n], n) for n in names if n not in graph_inputs]
    node = helper.make_node(c["op"], names, ["Y"], **node_attrs(c))
    g = helper.make_graph([node], "t", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, yshape)],
                          initializer=inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def save_pb(arr, name, path):
    with open(path, "wb") as f:
        f.write(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name).SerializeToString())


def load_pb(path):
    t = TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


# ---------------------------------------------------------------- cases

def random_case(rng):
    nsp = rng.choice([1, 2, 2, 2, 2, 3])
    op = rng.choice(["Conv", "Conv", "ConvTranspose"])
    group = rng.choice([1, 1, 1, 2, 3, "dw"])
    cpg = rng.randint(1, 4)
    if group == "dw":
        group = rng.randint(2, 6)
        cpg = 1
    C = group * cpg
    Mpg = rng.choice([1, 2, 3, 5]) if cpg > 1 or rng.random() < 0.5 else 1
    M = group * Mpg
    ks = [rng.choice([1, 2, 3, 3, 5]) if nsp < 3 else rng.choice([1, 2, 3]) for _ in range(nsp)]
    strides = [rng.choice([1, 1, 2, 3]) for _ in range(nsp)]
    dil = [rng.choice([1, 1, 2]) for _ in range(nsp)]
    size = {1: (4, 20), 2: (3, 14), 3: (3, 7)}[nsp]
    xs = [rng.randint(*size) for _ in range(nsp)]
    N = rng.choice([1, 1, 2])
    auto_pad = rng.choice(["NOTSET"] * 5 + ["SAME_UPPER", "SAME_LOWER", "VALID"])
    c = {"op": op, "group": group, "strides": strides, "dil": dil, "auto_pad": auto_pad,
         "bias": rng.random() < 0.7, "kshape": rng.random() < 0.5, "opad": [0] * nsp, "oshape": None}
    if op == "Conv":
        c["x"] = [N, C] + xs
        c["w"] = [M, cpg] + ks
        for i in range(nsp):  # the padded input must hold the kernel
            xs[i] = max(xs[i], (ks[i] - 1) * dil[i] + 1)
        c["x"] = [N, C] + xs
        c["pads"] = [rng.randint(0, ks[i] * dil[i] // 2 + 1) for i in range(nsp)] + \
                    [rng.randint(0, ks[i] * dil[i] // 2 + 1) for i in range(nsp)]
    else:
        if auto_pad == "VALID":
            c["auto_pad"] = "NOTSET"
        c["x"] = [N, C] + [max(2, v // 2) for v in xs]
        c["w"] = [C, Mpg] + ks
        c["pads"] = [0] * (2 * nsp)
        if c["auto_pad"] == "NOTSET":
            if rng.random() < 0.3:
                full = [strides[i] * (c["x"][2 + i] - 1) + (ks[i] - 1) * dil[i] + 1 for i in range(nsp)]
                c["oshape"] = [max(1, full[i] + rng.randint(-2, 1)) for i in range(nsp)]
            else:
                c["opad"] = [rng.randint(0, max(strides[i], dil[i]) - 1) for i in range(nsp)]
                dks = [(ks[i] - 1) * dil[i] + 1 for i in range(nsp)]
                c["pads"] = [rng.randint(0, (dks[i] - 1) // 2) for i in range(nsp)] + \
                            [rng.randint(0, (dks[i] - 1) // 2) for i in range(nsp)]
    return c


def fixed_cases():
    def conv2d(name, x, w, pads, strides=(1, 1), dil=(1, 1), group=1, bias=True):
        return {"name": name, "op": "Conv", "x": x, "w": w, "pads": list(pads), "strides": list(strides),
                "dil": list(dil), "group": group, "auto_pad": "NOTSET", "bias": bias, "kshape": True,
                "opad": [0, 0], "oshape": None}
    return [
        # Winograd candidates (3x3 stride 1; sizes not multiples of 4)
        conv2d("wino_64x64_37x45", [1, 64, 37, 45], [64, 64, 3, 3], [1, 1, 1, 1]),
        conv2d("wino_32x48_nopad", [2, 32, 30, 29], [48, 32, 3, 3], [0, 0, 0, 0]),
        conv2d("wino_asym", [1, 48, 33, 27], [40, 48, 3, 3], [0, 2, 1, 0]),
        # im2col in several bands (64*9*256 floats a row): dilation 2 keeps it off Winograd
        conv2d("banded_dil2", [1, 64, 160, 256], [32, 64, 3, 3], [2, 2, 2, 2], dil=(2, 2)),
        conv2d("depthwise_96", [1, 96, 57, 61], [96, 1, 3, 3], [1, 1, 1, 1], group=96),
        conv2d("depthwise_s2", [1, 32, 56, 57], [32, 1, 3, 3], [1, 1, 1, 1], strides=(2, 2), group=32),
        conv2d("pointwise", [1, 96, 40, 33], [48, 96, 1, 1], [0, 0, 0, 0]),
        dict(conv2d("convt_wino", [1, 32, 29, 31], [32, 24, 3, 3], [1, 1, 1, 1]), op="ConvTranspose"),
        # grouped Winograd (per image and group)
        conv2d("wino_groups2_batch2", [2, 64, 21, 19], [48, 32, 3, 3], [1, 1, 1, 1], group=2),
        dict(conv2d("convt_wino_groups2", [2, 64, 18, 17], [64, 16, 3, 3], [1, 0, 1, 2], group=2),
             op="ConvTranspose"),
        # several small images per GEMM (planes under a band): one band, and bands of 32 + 32 + 6 images
        conv2d("batched_8x8", [12, 32, 8, 8], [48, 32, 3, 3], [1, 1, 1, 1]),
        conv2d("batched_4x4_chunks", [70, 128, 4, 4], [16, 128, 3, 3], [1, 1, 1, 1]),
        conv2d("batched_5x5_s2", [9, 24, 11, 11], [20, 24, 5, 5], [2, 2, 2, 2], strides=(2, 2)),
        dict(conv2d("convt_batched_s2", [9, 24, 5, 5], [24, 16, 4, 4], [1, 1, 1, 1], strides=(2, 2)),
             op="ConvTranspose"),
        # direct kernels for few input channels (core/cpu/convdirect.c): an RGB stem, odd pads and strides
        conv2d("direct_stem_7x7_s2", [2, 3, 67, 81], [64, 3, 7, 7], [3, 3, 3, 3], strides=(2, 2)),
        conv2d("direct_1ch_5x5", [1, 1, 40, 41], [8, 1, 5, 5], [2, 2, 2, 2]),
        conv2d("direct_asym_s1x2", [1, 4, 50, 70], [19, 4, 3, 5], [0, 1, 2, 3], strides=(1, 2)),
        conv2d("direct_s3x2_nobias", [1, 2, 100, 97], [12, 2, 4, 6], [1, 0, 2, 5], strides=(3, 2), bias=False),
        dict(conv2d("convt_direct_to_rgb", [1, 16, 40, 40], [16, 3, 4, 4], [1, 1, 1, 1], strides=(2, 2)),
             op="ConvTranspose"),
        # 1-D and 3-D at a less tiny size
        {"name": "conv1d_long", "op": "Conv", "x": [2, 16, 3000], "w": [24, 16, 5], "pads": [2, 1],
         "strides": [2], "dil": [1], "group": 1, "auto_pad": "NOTSET", "bias": True, "opad": [0], "oshape": None},
        {"name": "conv3d_mid", "op": "Conv", "x": [1, 8, 12, 14, 13], "w": [16, 8, 3, 3, 3],
         "pads": [1, 1, 1, 1, 1, 1], "strides": [1, 1, 1], "dil": [1, 1, 1], "group": 1, "auto_pad": "NOTSET",
         "bias": True, "opad": [0, 0, 0], "oshape": None},
    ]


# ---------------------------------------------------------------- running

def close(got, ref, rtol):
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if got.shape != ref.shape:
        return False, f"shape {got.shape} vs {ref.shape}"
    scale = max(1.0, float(np.abs(ref).max()) if ref.size else 1.0)
    err = float(np.abs(got - ref).max()) / scale if ref.size else 0.0
    return err <= rtol, f"max err {err:.2e} (relative to {scale:.3g})"


def run_case(cnnfx, c, tmp, rng_np):
    x = rng_np.uniform(-1, 1, c["x"]).astype(np.float32)
    w = rng_np.uniform(-1, 1, c["w"]).astype(np.float32)
    M = c["w"][0] if c["op"] == "Conv" else c["w"][1] * c["group"]
    arrays = {"X": x, "W": w}
    if c["bias"]:
        arrays["B"] = rng_np.uniform(-1, 1, [M]).astype(np.float32)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(arrays["B"], requires_grad=True) if c["bias"] else None
    y = torch_ref(c, tx, tw, tb)
    (0.5 * (y.double() ** 2).sum()).backward()
    ref_grads = {"X": tx.grad.numpy(), "W": tw.grad.numpy()}
    if c["bias"]:
        ref_grads["B"] = tb.grad.numpy()
    yref = y.detach().numpy()
    fails = []
    rtol = 2e-4 * max(1.0, np.sqrt(c["w"][1] * np.prod(c["w"][2:]) / 9.0))

    # forward through check-onnx
    d = os.path.join(tmp, "fwd")
    os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
    onnx.save(make_model(c, arrays, list(arrays), list(yref.shape)), os.path.join(d, "model.onnx"))
    for k, n in enumerate(arrays):
        save_pb(arrays[n], n, os.path.join(d, "test_data_set_0", f"input_{k}.pb"))
    save_pb(yref, "Y", os.path.join(d, "test_data_set_0", "output_0.pb"))
    atol = rtol * max(1.0, float(np.abs(yref).max()))
    r = subprocess.run([cnnfx, "check-onnx", "--rtol", str(rtol), "--atol", str(atol), d],
                       capture_output=True, text=True)
    if r.returncode != 0:
        fails.append("forward: " + (r.stdout + r.stderr).strip()[-500:])

    # gradients through `cnnfx grad`
    for n in arrays:
        mp = os.path.join(tmp, f"grad_{n}.onnx")
        onnx.save(make_model(c, arrays, [n], list(yref.shape)), mp)
        ip = os.path.join(tmp, f"in_{n}.pb")
        op = os.path.join(tmp, f"g_{n}.pb")
        save_pb(arrays[n], n, ip)
        r = subprocess.run([cnnfx, "grad", mp, "--input", ip, "-o", op], capture_output=True, text=True)
        if r.returncode != 0:
            fails.append(f"d{n}: cnnfx grad failed: " + (r.stdout + r.stderr).strip()[-500:])
            continue
        ok, msg = close(load_pb(op), ref_grads[n], rtol)
        if not ok:
            fails.append(f"d{n}: {msg}")
    return fails


def describe(c):
    keys = ["op", "x", "w", "group", "strides", "dil", "pads", "auto_pad", "opad", "oshape", "bias"]
    return " ".join(f"{k}={c[k]}" for k in keys if k in c)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    ap.add_argument("--cases", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--no-fixed", action="store_true")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    rng_np = np.random.default_rng(a.seed)
    cases = [] if a.no_fixed else fixed_cases()
    for i in range(a.cases):
        c = random_case(rng)
        c["name"] = f"random{i}"
        cases.append(c)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="cnnfx-conv-torch-") as tmp:
        for c in cases:
            ctmp = os.path.join(tmp, c["name"])
            os.makedirs(ctmp)
            fails = run_case(a.cnnfx, c, ctmp, rng_np)
            if fails:
                failed += 1
                print(f"FAIL {c['name']}: {describe(c)}\n  " + "\n  ".join(fails))
            else:
                print(f"PASS {c['name']}: {describe(c)}")
    print(f"{len(cases) - failed} passed, {failed} failed")
    return 1 if failed or not cases else 0  # nothing checked is a failure


if __name__ == "__main__":
    sys.exit(main())
