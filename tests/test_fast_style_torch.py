#!/usr/bin/python3
"""Fast-neural-style parity test: Resize / Upsample (with InstanceNormalization and reflect Pad).

Parts, each printing "PASS/FAIL label (numbers)":

 1. TransformerNet of pytorch/examples/fast_neural_style (reflection-padded convs,
    InstanceNorm2d(affine=True), ReLU, 5 residual blocks, nearest 2x upsampling by
    F.interpolate before a conv) with seeded random weights, exported at opset 9 (Upsample)
    and opset 13 (Resize); run on 1x3x96x128 and 1x3x75x101 (output 1x3x76x104).
 2. Small conv -> F.interpolate -> conv models (bilinear align_corners False/True, bicubic,
    nearest, up- and downscaling, explicit sizes) exported at opsets 9 / 11 / 13.
 3. Hand-built opset-18 antialiased Resize (linear, cubic with exclude_outside=1 and
    cubic_coeff_a=-0.5) against F.interpolate(antialias=True), which uses the same filters.
 4. Resize attributes PyTorch cannot export (opset 18 axes, keep_aspect_ratio_policy,
    antialias; opset 19 half_pixel_symmetric; tf_crop_and_resize; random combinations of
    mode x coordinate_transformation_mode x nearest_mode) against a numpy implementation of the
    ONNX reference algorithm (onnx/reference/ops/op_resize.py, which Debian's onnx 1.12 lacks),
    forward only (the gradients of these modes are covered by tests/gradcheck/gen_resize.py).

Checks for parts 1-3:
  forward:  cnnfx's output (read back exactly, see cnnfx_output) vs PyTorch float32:
            max|y - y_ref| <= 1e-3 * max|y_ref|; the same test directory must also PASS
            `cnnfx check-onnx --rtol 0 --atol 1e-3*max|y_ref|` (the plain graph-input path);
  gradient: `cnnfx grad` = d(0.5*||y||^2)/dx vs torch.autograd, required
            max|g - g_ref| <= 1e-3 * max|g_ref| and ||g - g_ref|| / ||g_ref|| <= 1e-3.
            For the ReLU network (TransformerNet) g_ref is torch.autograd in float64 with each
            ReLU's mask taken from cnnfx's forward values (mask_consistent_grad says why: the
            gradient itself is not continuous in rounding); the plain float32 torch gradient is
            printed too and must agree to rel-L2 <= 1e-2.
Part 4: `cnnfx check-onnx --rtol 1e-5 --atol 1e-5` against the reference outputs.
Part 5: invalid / unsupported nodes (non-float X, zero / negative / NaN / huge scales, bad sizes,
         unknown attribute values, missing inputs, ...) must fail with exit 1 and a message
         naming the problem -- never crash.
Prints "N passed, M failed"; exits 1 on any failure (nothing is skipped).
"""
import argparse
import copy
import io
import itertools
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper

warnings.filterwarnings("ignore")  # torch.onnx export chatter
torch.set_num_threads(2)

TOL = 1e-3  # relative to the reference's max magnitude (forward and gradient)

# ---------------------------------------------------------------------------------------------
# 1. TransformerNet (pytorch/examples fast_neural_style/neural_style/transformer_net.py)


class MaskableReLU(nn.Module):
    """nn.ReLU.  Records the input shape of every call; when MaskableReLU.masks is set, the
    backward of the k-th call uses masks[k] (cnnfx's own ReLU decisions) instead of its own,
    the forward value is unchanged (see mask_consistent_grad)."""
    masks = None
    shapes = []

    def forward(self, x):
        k = len(MaskableReLU.shapes)
        MaskableReLU.shapes.append(tuple(x.shape))
        if MaskableReLU.masks is None:
            return F.relu(x)
        return F.relu(x).detach() + (x - x.detach()) * MaskableReLU.masks[k].to(x.dtype)


class ConvLayer(nn.Module):
    def __init__(self, cin, cout, k, stride):
        super().__init__()
        self.reflection_pad = nn.ReflectionPad2d(k // 2)
        self.conv2d = nn.Conv2d(cin, cout, k, stride)

    def forward(self, x):
        return self.conv2d(self.reflection_pad(x))


class ResidualBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = ConvLayer(c, c, 3, 1)
        self.in1 = nn.InstanceNorm2d(c, affine=True)
        self.conv2 = ConvLayer(c, c, 3, 1)
        self.in2 = nn.InstanceNorm2d(c, affine=True)
        self.relu = MaskableReLU()

    def forward(self, x):
        out = self.relu(self.in1(self.conv1(x)))
        return self.in2(self.conv2(out)) + x


class UpsampleConvLayer(nn.Module):
    def __init__(self, cin, cout, k, stride, upsample=None):
        super().__init__()
        self.upsample = upsample
        self.reflection_pad = nn.ReflectionPad2d(k // 2)
        self.conv2d = nn.Conv2d(cin, cout, k, stride)

    def forward(self, x):
        if self.upsample:
            x = F.interpolate(x, mode="nearest", scale_factor=self.upsample)
        return self.conv2d(self.reflection_pad(x))


class TransformerNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = ConvLayer(3, 32, 9, 1)
        self.in1 = nn.InstanceNorm2d(32, affine=True)
        self.conv2 = ConvLayer(32, 64, 3, 2)
        self.in2 = nn.InstanceNorm2d(64, affine=True)
        self.conv3 = ConvLayer(64, 128, 3, 2)
        self.in3 = nn.InstanceNorm2d(128, affine=True)
        self.res1, self.res2, self.res3, self.res4, self.res5 = (ResidualBlock(128) for _ in range(5))
        self.deconv1 = UpsampleConvLayer(128, 64, 3, 1, upsample=2)
        self.in4 = nn.InstanceNorm2d(64, affine=True)
        self.deconv2 = UpsampleConvLayer(64, 32, 3, 1, upsample=2)
        self.in5 = nn.InstanceNorm2d(32, affine=True)
        self.deconv3 = ConvLayer(32, 3, 9, 1)
        self.relu = MaskableReLU()

    def forward(self, x):
        y = self.relu(self.in1(self.conv1(x)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        y = self.res5(self.res4(self.res3(self.res2(self.res1(y)))))
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        return self.deconv3(y)


def randomize(net, seed):
    """Seeded random weights; InstanceNorm affine parameters far from the identity."""
    torch.manual_seed(seed)
    for mod in net.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")
            nn.init.uniform_(mod.bias, -0.1, 0.1)
        elif isinstance(mod, nn.InstanceNorm2d):
            with torch.no_grad():
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    return net.eval()


class InterpNet(nn.Module):
    """conv -> F.interpolate(**kw) -> conv (so the resize sits inside a network)."""

    def __init__(self, **kw):
        super().__init__()
        self.kw = kw
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        return self.c2(F.interpolate(self.c1(x), **self.kw))


# (label, constructor, input shape, opsets)
NETS = [
    ("fast_style_96x128", TransformerNet, (1, 3, 96, 128), (9, 13)),
    ("fast_style_75x101", TransformerNet, (1, 3, 75, 101), (9, 13)),
    ("bilinear_x2", lambda: InterpNet(scale_factor=2, mode="bilinear", align_corners=False), (1, 3, 24, 32),
     (11, 13)),
    ("bilinear_x2_align_corners", lambda: InterpNet(scale_factor=2, mode="bilinear", align_corners=True),
     (1, 3, 24, 32), (11, 13)),
    ("bilinear_size_37x50", lambda: InterpNet(size=(37, 50), mode="bilinear", align_corners=False), (1, 3, 24, 31),
     (13,)),
    ("bilinear_size_37x50_align_corners", lambda: InterpNet(size=(37, 50), mode="bilinear", align_corners=True),
     (1, 3, 24, 31), (13,)),
    ("bilinear_down_0.5", lambda: InterpNet(scale_factor=0.5, mode="bilinear", align_corners=False),
     (1, 3, 40, 52), (13,)),
    ("bicubic_size_41x29", lambda: InterpNet(size=(41, 29), mode="bicubic", align_corners=False), (1, 3, 20, 23),
     (13,)),
    ("bicubic_x2_align_corners", lambda: InterpNet(scale_factor=2, mode="bicubic", align_corners=True),
     (1, 3, 17, 21), (13,)),
    ("nearest_size_37x50", lambda: InterpNet(size=(37, 50), mode="nearest"), (1, 3, 24, 32), (13,)),
    ("nearest_x3", lambda: InterpNet(scale_factor=3, mode="nearest"), (1, 3, 11, 13), (9, 13)),
]

# ---------------------------------------------------------------------------------------------
# helpers


def save_pb(arr, path, name):
    with open(path, "wb") as f:
        f.write(numpy_helper.from_array(np.ascontiguousarray(arr), name).SerializeToString())


def load_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def run_cli(args, timeout=600):
    env = dict(os.environ)
    # sanitizer builds: a huge allocation must come back as NULL (-> "out of memory" error)
    if "allocator_may_return_null" not in env.get("ASAN_OPTIONS", ""):
        env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS", ""), "allocator_may_return_null=1"]))
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
        return r.returncode, (r.stdout + r.stderr).strip()
    except subprocess.TimeoutExpired:
        return None, f"timeout after {timeout}s"


def write_case(d, model, inputs, outputs):
    """ONNX backend-test directory: model.onnx + test_data_set_0/{input,output}_N.pb."""
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "test_data_set_0"))
    onnx.save(model, os.path.join(d, "model.onnx"))
    gin = [i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    for k, arr in enumerate(inputs):
        save_pb(arr, os.path.join(d, "test_data_set_0", f"input_{k}.pb"), gin[k])
    for k, arr in enumerate(outputs):
        save_pb(arr, os.path.join(d, "test_data_set_0", f"output_{k}.pb"), model.graph.output[k].name)


def cnnfx_values(cnnfx, model, x, names, shapes, d):
    """cnnfx's own forward values of tensors `names` (shapes from torch), read back exactly:
    x becomes an initializer and a new first input z (zeros) is added to the concatenation of
    the flattened tensors, so `cnnfx grad` (d(0.5*||cat + z||^2)/dz = cat) writes them."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    xname = g.input[0].name
    rest = list(g.input)[1:]
    del g.input[:]
    g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(x), xname))
    total = int(sum(np.prod(s) for s in shapes))
    g.input.append(helper.make_tensor_value_info("__z", TensorProto.FLOAT, [1, total]))
    g.input.extend(rest)
    flat = []
    for k, n in enumerate(names):
        g.node.append(helper.make_node("Flatten", [n], [f"__flat{k}"], axis=0))
        flat.append(f"__flat{k}")
    g.node.append(helper.make_node("Concat", flat, ["__cat"], axis=1))
    g.node.append(helper.make_node("Add", ["__cat", "__z"], ["__out"]))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("__out", TensorProto.FLOAT, [1, total]))
    mp, zp, vp = (os.path.join(d, f) for f in ("readback.onnx", "readback_z.pb", "readback_v.pb"))
    onnx.save(m, mp)
    save_pb(np.zeros((1, total), np.float32), zp, "__z")
    rc, out = run_cli([cnnfx, "grad", mp, "--input", zp, "-o", vp])
    if rc != 0:
        raise RuntimeError(f"cnnfx grad (value read-back) failed: {out[-400:]}")
    v = load_pb(vp).reshape(-1)
    if v.size != total:
        raise RuntimeError(f"value read-back: {v.size} values, expected {total}")
    res, o = [], 0
    for s in shapes:
        k = int(np.prod(s))
        res.append(v[o:o + k].reshape(s))
        o += k
    return res


def mask_consistent_grad(cnnfx, net, model, x, d):
    """Input gradient of 0.5*||net(x)||^2 by torch.autograd (float64) with every ReLU's backward
    mask taken from cnnfx's forward values of the ReLU inputs (ONNX Relu nodes in graph order =
    the module's call order).

    Why: the gradient is not a continuous function of rounding.  A ReLU input within rounding
    error of 0 may take the other branch in another implementation, which changes the gradient
    over that unit's receptive field.  For TransformerNet with InstanceNorm this is large:
    perturbing x by 1e-6 (forward change ~6e-6, the size of float32 implementation differences)
    moves torch's own float64 gradient by ~4e-3 of its maximum.  With cnnfx's masks the
    reference is one fixed linear map, so a correct cnnfx matches it to ~1e-5."""
    relu_in = [n.input[0] for n in model.graph.node if n.op_type == "Relu"]
    MaskableReLU.masks, MaskableReLU.shapes = None, []
    with torch.no_grad():
        net(torch.from_numpy(x))
    shapes = list(MaskableReLU.shapes)
    if len(shapes) != len(relu_in):
        raise RuntimeError(f"{len(relu_in)} Relu nodes in the ONNX graph, {len(shapes)} ReLU calls in torch")
    vals = cnnfx_values(cnnfx, model, x, relu_in, shapes, d)
    net64 = copy.deepcopy(net).double()
    MaskableReLU.masks, MaskableReLU.shapes = [torch.from_numpy(v > 0) for v in vals], []
    try:
        xr = torch.from_numpy(x).double().requires_grad_(True)
        y = net64(xr)
        (g,) = torch.autograd.grad(0.5 * (y ** 2).sum(), xr)
    finally:
        MaskableReLU.masks, MaskableReLU.shapes = None, []
    return g.numpy()


def max_rel(a, ref):
    a = a.astype(np.float64)
    ref = ref.astype(np.float64)
    if a.shape != ref.shape:
        return float("inf"), float("inf")
    amax = float(np.abs(ref).max())
    mx = float(np.abs(a - ref).max()) / amax if amax > 0 else float(np.abs(a).max())
    nref = np.linalg.norm(ref)
    l2 = float(np.linalg.norm(a - ref) / nref) if nref > 0 else float(np.linalg.norm(a))
    return (mx if np.isfinite(mx) else float("inf")), (l2 if np.isfinite(l2) else float("inf"))


def export(net, x, opset):
    buf = io.BytesIO()
    torch.onnx.export(net, x, buf, opset_version=opset, input_names=["input"], output_names=["output"],
                      do_constant_folding=True)
    return onnx.load_from_string(buf.getvalue())


def resize_ops(model):
    return sorted({n.op_type for n in model.graph.node if n.op_type in ("Resize", "Upsample")})


class Results:
    def __init__(self):
        self.passed = self.failed = 0
        self.worst = {}

    def add(self, ok, label, msg):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(f"{'PASS' if ok else 'FAIL'} {label} ({msg})", flush=True)

    def note(self, kind, value):
        self.worst[kind] = max(self.worst.get(kind, 0.0), value)


def torch_parity(R, cnnfx, work, label, model, x, y_ref, g_ref, net=None):
    """Forward and input-gradient checks of one ONNX model against torch results.  With `net`
    (a module containing MaskableReLU) the gradient is judged against the mask-consistent
    reference; the plain torch comparison is printed and must still agree to rel-L2 <= 1e-2."""
    d = os.path.join(work, label.replace("@", "_op"))
    write_case(d, model, [x], [y_ref])
    atol = TOL * float(np.abs(y_ref).max())
    rc, out = run_cli([cnnfx, "check-onnx", d, "--rtol", "0", "--atol", repr(atol)])
    ok_dir = rc == 0 and "PASS" in out
    try:
        (y,) = cnnfx_values(cnnfx, model, x, [model.graph.output[0].name], [y_ref.shape], d)
        mx, l2 = max_rel(y, y_ref)
        fmsg = f"max|dy|/max|y|={mx:.2e} rel-L2={l2:.2e}"
    except Exception as e:  # a failed read-back is a failure
        mx, fmsg = float("inf"), repr(e)[:300]
    if not ok_dir:
        fmsg += "; check-onnx: " + (([ln for ln in out.splitlines() if ln.startswith("FAIL")] or [out[-300:]])[0])
    R.note("forward max|dy|/max|y|", mx)
    R.add(ok_dir and mx <= TOL, f"{label} forward", fmsg)
    gp = os.path.join(d, "grad.pb")
    rc, out = run_cli([cnnfx, "grad", os.path.join(d, "model.onnx"), "--input",
                       os.path.join(d, "test_data_set_0", "input_0.pb"), "-o", gp])
    if rc != 0 or not os.path.exists(gp):
        R.add(False, f"{label} gradient", f"cnnfx grad rc={rc}: {out[-300:]}")
        return
    g = load_pb(gp)
    mx, l2 = max_rel(g, g_ref)
    if net is None:
        R.note("gradient max|dg|/max|g|", mx)
        R.add(mx <= TOL and l2 <= TOL, f"{label} gradient", f"max|dg|/max|g|={mx:.2e} rel-L2={l2:.2e}")
        return
    msg = f"vs torch: max|dg|/max|g|={mx:.2e} rel-L2={l2:.2e}"
    try:
        mc = mask_consistent_grad(cnnfx, net, model, x, d)
        mx2, l22 = max_rel(g, mc)
        msg += f"; vs torch with cnnfx's ReLU masks: max|dg|/max|g|={mx2:.2e} rel-L2={l22:.2e}"
    except Exception as e:
        mx2 = l22 = float("inf")
        msg += f"; no mask-consistent reference: {e!r}"[:300]
    R.note("gradient max|dg|/max|g| vs ReLU-mask-consistent torch", mx2)
    R.note("gradient rel-L2 vs plain torch (ReLU nets)", l2)
    R.add(mx2 <= TOL and l22 <= TOL and l2 <= 1e-2, f"{label} gradient", msg)


def part_torch_nets(R, cnnfx, work, seed):
    for i, (name, ctor, shape, opsets) in enumerate(NETS):
        net = randomize(ctor(), seed + i)
        gen = torch.Generator().manual_seed(seed + 100 + i)
        x = torch.rand(shape, generator=gen) * 2 - 1
        xr = x.clone().requires_grad_(True)
        y = net(xr)
        (g,) = torch.autograd.grad(0.5 * (y ** 2).sum(), xr)
        y_ref, g_ref = y.detach().numpy(), g.numpy()
        for opset in opsets:
            label = f"{name}@{opset}"
            t0 = time.time()
            try:
                model = export(net, x, opset)
            except Exception as e:
                R.add(False, f"{label} export", repr(e)[:300])
                continue
            ops = resize_ops(model)
            if not ops:
                R.add(False, f"{label} export", "no Resize/Upsample node in the exported graph")
                continue
            print(f"     {label}: {'/'.join(ops)}, input {'x'.join(map(str, shape))} -> output "
                  f"{'x'.join(map(str, y_ref.shape))}", flush=True)
            has_relu = any(isinstance(m, MaskableReLU) for m in net.modules())
            torch_parity(R, cnnfx, work, label, model, x.numpy(), y_ref, g_ref, net if has_relu else None)
            print(f"     {label}: {time.time() - t0:.1f}s", flush=True)


# ---------------------------------------------------------------------------------------------
# 3. antialiasing vs torch


def aa_model(shape, sizes, mode, **attrs):
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], mode=mode, antialias=1, **attrs)
    g = helper.make_graph([node], "aa", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(np.array(sizes, np.int64), "sizes")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def part_antialias(R, cnnfx, work, seed):
    cases = [
        ("bilinear", "linear", (1, 3, 40, 52), (13, 17), {}),
        ("bilinear", "linear", (2, 2, 33, 29), (8, 21), {}),
        ("bicubic", "cubic", (1, 3, 40, 52), (11, 20), {"cubic_coeff_a": -0.5}),
        ("bicubic", "cubic", (1, 2, 64, 48), (16, 31), {"cubic_coeff_a": -0.5}),
    ]
    for k, (tmode, omode, shape, size, extra) in enumerate(cases):
        label = f"antialias_{tmode}_{'x'.join(map(str, shape[2:]))}_to_{'x'.join(map(str, size))}@18"
        gen = torch.Generator().manual_seed(seed + 200 + k)
        x = torch.rand(shape, generator=gen) * 2 - 1
        xr = x.clone().requires_grad_(True)
        y = F.interpolate(xr, size=size, mode=tmode, align_corners=False, antialias=True)
        (g,) = torch.autograd.grad(0.5 * (y ** 2).sum(), xr)
        model = aa_model(shape, list(shape[:2]) + list(size), omode, exclude_outside=1, **extra)
        torch_parity(R, cnnfx, work, label, model, x.numpy(), y.detach().numpy(), g.numpy())


# ---------------------------------------------------------------------------------------------
# 4. numpy implementation of the ONNX reference algorithm (onnx >= 1.14 op_resize.py)


def _nearest_coeffs(ratio, mode):
    if float(ratio).is_integer():
        return np.array([0, 1])
    if mode == "round_prefer_floor":
        return np.array([ratio <= 0.5, ratio > 0.5])
    if mode == "round_prefer_ceil":
        return np.array([ratio < 0.5, ratio >= 0.5])
    if mode == "floor":
        return np.array([1, 0])
    return np.array([0, 1])  # ceil


def _linear_coeffs(ratio, scale, antialias):
    if not antialias:
        return np.array([1 - ratio, ratio])
    scale = min(scale, 1.0)
    start = int(np.floor(-1 / scale) + 1)
    footprint = 2 - 2 * start
    args = (np.arange(start, start + footprint) - ratio) * scale
    coeffs = np.clip(1 - np.abs(args), 0, 1)
    return coeffs / coeffs.sum()


def _cubic_coeffs(ratio, scale, antialias, A):
    if not antialias:
        return np.array([((A * (ratio + 1) - 5 * A) * (ratio + 1) + 8 * A) * (ratio + 1) - 4 * A,
                         ((A + 2) * ratio - (A + 3)) * ratio * ratio + 1,
                         ((A + 2) * (1 - ratio) - (A + 3)) * (1 - ratio) * (1 - ratio) + 1,
                         ((A * ((1 - ratio) + 1) - 5 * A) * ((1 - ratio) + 1) + 8 * A) * ((1 - ratio) + 1) - 4 * A])
    scale = min(scale, 1.0)

    def c(x):
        x = abs(x)
        if x <= 1:
            return (A + 2) * x ** 3 - (A + 3) * x ** 2 + 1
        if x < 2:
            return A * x ** 3 - 5 * A * x ** 2 + 8 * A * x - 4 * A
        return 0.0

    i_start = int(np.floor(-2 / scale) + 1)
    coeffs = np.array([c(scale * (i - ratio)) for i in range(i_start, 2 - i_start)])
    return coeffs / coeffs.sum()


def _neighbors(x, n, data):
    pad = int(np.ceil(n / 2))
    padded = np.pad(data, pad, mode="edge")
    x = x + pad
    idx = sorted(sorted(range(len(padded)), key=lambda i: (abs(x - i), i))[:n])
    return np.array(idx) - pad, padded[idx]


def _interp_1d(data, scale, out_int, x, get_coeffs, roi, extrap, ctm, exclude_outside):
    in_w = len(data)
    out_w = scale * in_w
    if ctm == "align_corners":
        x_ori = 0.0 if out_w == 1 else x * (in_w - 1) / (out_w - 1)
    elif ctm == "asymmetric":
        x_ori = x / scale
    elif ctm == "tf_crop_and_resize":
        if out_w == 1:
            x_ori = (roi[1] - roi[0]) * (in_w - 1) / 2
        else:
            x_ori = x * (roi[1] - roi[0]) * (in_w - 1) / (out_w - 1)
        x_ori += roi[0] * (in_w - 1)
        if x_ori < 0 or x_ori > in_w - 1:
            return float(extrap)
    elif ctm == "pytorch_half_pixel":
        x_ori = -0.5 if out_w == 1 else (x + 0.5) / scale - 0.5
    elif ctm == "half_pixel":
        x_ori = (x + 0.5) / scale - 0.5
    elif ctm == "half_pixel_symmetric":
        adjustment = out_int / out_w
        center = in_w / 2
        offset = center * (1 - adjustment)
        x_ori = offset + (x + 0.5) / scale - 0.5
    elif ctm == "tf_half_pixel_for_nn":
        x_ori = (x + 0.5) / scale
    else:
        raise ValueError(ctm)
    x_ori = float(x_ori)
    x_int = int(np.floor(x_ori))
    ratio = 1.0 if x_ori.is_integer() else x_ori - x_int
    coeffs = np.array(get_coeffs(ratio, scale), dtype=np.float64)
    idx, pts = _neighbors(x_ori, len(coeffs), np.asarray(data, np.float64))
    if exclude_outside:
        for i, j in enumerate(idx):
            if j < 0 or j >= in_w:
                coeffs[i] = 0
        coeffs /= coeffs.sum()
    return float(np.dot(coeffs, pts))


def _interp_nd(data, scales, out_sizes, x, get_coeffs, roi, **kw):
    n = data.ndim
    if n == 1:
        return _interp_1d(data, scales[0], out_sizes[0], x[0], get_coeffs,
                          None if roi is None else [roi[0], roi[1]], **kw)
    inner_roi = None if roi is None else np.concatenate([roi[1:n], roi[n + 1:]])
    vals = [_interp_nd(data[i], scales[1:], out_sizes[1:], x[1:], get_coeffs, inner_roi, **kw)
            for i in range(data.shape[0])]
    return _interp_1d(vals, scales[0], out_sizes[0], x[0], get_coeffs,
                      None if roi is None else [roi[0], roi[n]], **kw)


def ref_resize(X, mode="nearest", ctm="half_pixel", nearest_mode="round_prefer_floor", cubic_coeff_a=-0.75,
               exclude_outside=0, extrapolation_value=0.0, antialias=0, axes=None, keep="stretch", roi=None,
               scales=None, sizes=None):
    r = X.ndim
    if axes is not None:
        axes = [a % r for a in axes]
        if scales is not None:
            s = [1.0] * r
            for i, d in enumerate(axes):
                s[d] = scales[i]
            scales = s
        if sizes is not None:
            s = list(X.shape)
            for i, d in enumerate(axes):
                s[d] = sizes[i]
            sizes = s
        if roi is not None:
            full = [0.0] * r + [1.0] * r
            for i, d in enumerate(axes):
                full[d] = roi[i]
                full[r + d] = roi[len(axes) + i]
            roi = full
    else:
        axes = list(range(r))
    if sizes is not None:
        scales = np.array(sizes, np.float64) / np.array(X.shape, np.float64)
        if keep != "stretch":
            s = scales[axes].min() if keep == "not_larger" else scales[axes].max()
            scales = np.array([s if i in axes else 1.0 for i in range(r)])
            sizes = [int(s * X.shape[i] + 0.5) if i in axes else X.shape[i] for i in range(r)]
    else:
        scales = np.array(scales, np.float32).astype(np.float64)
        sizes = (scales * np.array(X.shape)).astype(int)
    if mode == "nearest":
        get = lambda ratio, scale: _nearest_coeffs(ratio, nearest_mode)
    elif mode == "linear":
        get = lambda ratio, scale: _linear_coeffs(ratio, scale, antialias)
    else:
        get = lambda ratio, scale: _cubic_coeffs(ratio, scale, antialias, cubic_coeff_a)
    Y = np.zeros(sizes, np.float64)
    for x in itertools.product(*[range(s) for s in sizes]):
        Y[x] = _interp_nd(X.astype(np.float64), list(scales), list(sizes), list(x), get,
                          None if roi is None else np.array(roi, np.float64), extrap=extrapolation_value, ctm=ctm,
                          exclude_outside=exclude_outside)
    return Y.astype(np.float32)


def ref_case(name, shape, opset, rng, scales=None, sizes=None, roi=None, **attrs):
    """(name, model, x, expected y) for a Resize node with the given constants."""
    X = rng.uniform(-1, 1, size=shape).astype(np.float32)
    inits, ins = [], ["x"]
    for nm, v, dt in (("roi", roi, np.float32), ("scales", scales, np.float32), ("sizes", sizes, np.int64)):
        if v is not None:
            inits.append(numpy_helper.from_array(np.array(v, dt), nm))
            ins.append(nm)
        else:
            ins.append("")
    while ins[-1] == "":
        ins.pop()
    node = helper.make_node("Resize", ins, ["y"], **attrs)
    g = helper.make_graph([node], name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    kw = dict(mode=attrs.get("mode", "nearest"), ctm=attrs.get("coordinate_transformation_mode", "half_pixel"),
              nearest_mode=attrs.get("nearest_mode", "round_prefer_floor"),
              cubic_coeff_a=attrs.get("cubic_coeff_a", -0.75), exclude_outside=attrs.get("exclude_outside", 0),
              extrapolation_value=attrs.get("extrapolation_value", 0.0), antialias=attrs.get("antialias", 0),
              axes=attrs.get("axes"), keep=attrs.get("keep_aspect_ratio_policy", "stretch"),
              roi=None if roi is None else np.array(roi, np.float32).astype(np.float64),
              scales=scales, sizes=sizes)
    return name, model, X, ref_resize(X, **kw)


def reference_cases(seed):
    rng = np.random.default_rng(seed)
    S = (1, 2, 5, 7)
    c = []
    # opset 18: axes, keep_aspect_ratio_policy, antialias
    c.append(ref_case("axes_scales_last", S, 18, rng, scales=[1.6], axes=[3], mode="linear"))
    c.append(ref_case("axes_sizes_hw", S, 18, rng, sizes=[8, 4], axes=[2, 3], mode="cubic"))
    c.append(ref_case("axes_negative", S, 18, rng, sizes=[3, 9], axes=[-1, -2], mode="nearest"))
    for keep in ("not_larger", "not_smaller"):
        for mode in ("nearest", "linear", "cubic"):
            c.append(ref_case(f"keep_{keep}_{mode}", S, 18, rng, sizes=[9, 9], axes=[2, 3], mode=mode,
                              keep_aspect_ratio_policy=keep))
        c.append(ref_case(f"keep_{keep}_all_axes_down", S, 18, rng, sizes=[1, 2, 3, 3], mode="linear",
                          keep_aspect_ratio_policy=keep))
    c.append(ref_case("keep_not_larger_align_corners", S, 18, rng, sizes=[4, 9], axes=[2, 3], mode="linear",
                      keep_aspect_ratio_policy="not_larger", coordinate_transformation_mode="align_corners"))
    c.append(ref_case("antialias_linear_scales", (1, 1, 9, 11), 18, rng, scales=[1, 1, 0.45, 0.3], mode="linear",
                      antialias=1))
    c.append(ref_case("antialias_cubic_sizes", (1, 1, 9, 11), 18, rng, sizes=[1, 1, 4, 3], mode="cubic",
                      antialias=1))
    c.append(ref_case("antialias_cubic_exclude_a05", (1, 1, 10, 8), 18, rng, sizes=[3, 5], axes=[2, 3],
                      mode="cubic", antialias=1, exclude_outside=1, cubic_coeff_a=-0.5))
    c.append(ref_case("antialias_linear_up_noop", (1, 1, 4, 5), 18, rng, scales=[1, 1, 1.5, 2.0], mode="linear",
                      antialias=1))
    c.append(ref_case("antialias_nearest_ignored", (1, 1, 8, 9), 18, rng, scales=[1, 1, 0.5, 0.4], mode="nearest",
                      antialias=1))
    c.append(ref_case("antialias_linear_asymmetric", (1, 1, 12, 9), 18, rng, scales=[1, 1, 0.3, 0.5],
                      mode="linear", antialias=1, coordinate_transformation_mode="asymmetric"))
    c.append(ref_case("tf_crop_axes", S, 18, rng, sizes=[4, 6], roi=[0.1, -0.2, 0.9, 0.8], axes=[2, 3],
                      mode="linear", coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=-2.0))
    # opset 19: half_pixel_symmetric (differs from half_pixel when floor(scale*I) != scale*I)
    for mode in ("nearest", "linear", "cubic"):
        c.append(ref_case(f"half_pixel_symmetric_{mode}", S, 19, rng, scales=[1, 1, 1.7, 0.62], mode=mode,
                          coordinate_transformation_mode="half_pixel_symmetric"))
    # opset 13: random combinations
    modes = ("nearest", "linear", "cubic")
    ctms = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric", "tf_half_pixel_for_nn",
            "tf_crop_and_resize")
    nms = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
    pyr = random.Random(seed)
    for k in range(36):
        mode, ctm = pyr.choice(modes), pyr.choice(ctms)
        shape = (1, pyr.randint(1, 2), pyr.randint(1, 6), pyr.randint(1, 7))
        attrs = {"mode": mode, "coordinate_transformation_mode": ctm}
        if mode == "nearest":
            attrs["nearest_mode"] = pyr.choice(nms)
        if mode == "cubic":
            attrs["cubic_coeff_a"] = pyr.choice([-0.75, -0.5])
            attrs["exclude_outside"] = pyr.choice([0, 1])
        roi = None
        if ctm == "tf_crop_and_resize":
            roi = [0, 0, pyr.uniform(-0.3, 0.4), pyr.uniform(-0.3, 0.4), 1, 1, pyr.uniform(0.6, 1.3),
                   pyr.uniform(0.6, 1.3)]
            attrs["extrapolation_value"] = pyr.choice([0.0, 1.5])
        # (cubic with pytorch_half_pixel and a 1-wide output: the spec and onnxruntime map to 0, the
        # reference to -0.5; cnnfx follows the spec, so such outputs are not drawn here)
        min_out = 2 if (ctm == "pytorch_half_pixel" and mode == "cubic") else 1
        if pyr.random() < 0.5:
            sizes = [shape[0], shape[1]] + [pyr.randint(min_out, 9) for _ in range(2)]
            c.append(ref_case(f"random{k}_{mode}_{ctm}_sizes", shape, 13, rng, sizes=sizes, roi=roi, **attrs))
        else:
            sc = [1.0, 1.0]
            for dim in shape[2:]:
                sc.append(pyr.choice([v for v in (0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0, 2.3, 3.0)
                                      if int(np.float64(np.float32(v)) * dim) >= min_out] or [3.0]))
            c.append(ref_case(f"random{k}_{mode}_{ctm}_scales", shape, 13, rng, scales=sc, roi=roi, **attrs))
    return c


def part_reference(R, cnnfx, work, seed):
    base = os.path.join(work, "reference")
    os.makedirs(base, exist_ok=True)
    dirs = {}
    for name, model, x, y in reference_cases(seed):
        d = os.path.join(base, name)
        write_case(d, model, [x], [y])
        dirs[d] = name
    rc, out = run_cli([cnnfx, "check-onnx", "--rtol", "1e-5", "--atol", "1e-5"] + list(dirs))
    lines = {}
    for ln in out.splitlines():
        parts = ln.split(" ", 2)
        if len(parts) >= 2 and parts[0] in ("PASS", "FAIL"):
            lines[parts[1]] = ln
    for d, name in dirs.items():
        ln = lines.get(d)
        ok = ln is not None and ln.startswith("PASS")
        R.add(ok, f"reference {name}", "check-onnx rtol=atol=1e-5" if ok else (ln or f"no result; rc={rc}")[:400])


# ---------------------------------------------------------------------------------------------
# 5. invalid / unsupported Resize and Upsample nodes: a clear error (exit 1), never a crash


def error_cases():
    """(name, model, input arrays, words the error message must contain)."""
    X = np.zeros((1, 1, 4, 4), np.float32)
    I = np.zeros((1, 1, 4, 4), np.int64)

    def node_model(op, ins, inits, opset, shape=(1, 1, 4, 4), dtype=TensorProto.FLOAT, pre=(), **attrs):
        nodes = list(pre) + [helper.make_node(op, ins, ["y"], **attrs)]
        g = helper.make_graph(nodes, "e", [helper.make_tensor_value_info("x", dtype, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits])
        return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)

    sc = lambda *v: np.array(v, np.float32)
    sz = lambda *v: np.array(v, np.int64)
    R13 = lambda inits, ins=("x", "", "scales"), **a: node_model("Resize", list(ins), inits, 13, **a)
    return [
        ("int64_x", node_model("Resize", ["x", "", "scales"], [("scales", sc(1, 1, 2, 2))], 13,
                               dtype=TensorProto.INT64), [I], ["float32"]),
        ("zero_scale", R13([("scales", sc(1, 1, 0, 2))]), [X], ["scale", "positive"]),
        ("negative_scale", R13([("scales", sc(1, 1, -2, 2))]), [X], ["scale", "positive"]),
        ("nan_scale", R13([("scales", sc(1, 1, np.nan, 2))]), [X], ["scale", "positive"]),
        ("inf_scale", R13([("scales", sc(1, 1, np.inf, 2))]), [X], ["scale", "positive"]),
        ("overflow_scale", R13([("scales", sc(1, 1, 1e30, 1e30))]), [X], ["output size"]),
        ("huge_output", R13([("scales", sc(1, 1, 3e7, 3e7))]), [X], ["out of memory"]),
        ("scales_count", R13([("scales", sc(2, 2))]), [X], ["scales", "rank"]),
        ("negative_size", R13([("sizes", sz(1, 1, -3, 4))], ("x", "", "", "sizes")), [X], ["sizes"]),
        ("sizes_count", R13([("sizes", sz(8, 8))], ("x", "", "", "sizes")), [X], ["sizes"]),
        ("huge_size", R13([("sizes", sz(1, 1, 1 << 50, 4))], ("x", "", "", "sizes")), [X], ["sizes"]),
        ("scales_and_sizes", R13([("scales", sc(1, 1, 2, 2)), ("sizes", sz(1, 1, 8, 8))],
                                 ("x", "", "scales", "sizes")), [X], ["not both"]),
        ("neither", R13([], ("x",)), [X], ["scales", "sizes"]),
        ("int_scales", R13([("scales", sz(1, 1, 2, 2))]), [X], ["scales", "float"]),
        ("float_sizes", R13([("sizes", sc(1, 1, 2, 2))], ("x", "", "", "sizes")), [X], ["sizes", "int64"]),
        ("bad_mode", R13([("scales", sc(1, 1, 2, 2))], mode="area"), [X], ["mode", "area"]),
        ("bad_ctm", R13([("scales", sc(1, 1, 2, 2))], coordinate_transformation_mode="center"), [X],
         ["coordinate_transformation_mode", "center"]),
        ("bad_nearest_mode", R13([("scales", sc(1, 1, 2, 2))], nearest_mode="nearest"), [X], ["nearest_mode"]),
        ("bad_exclude_outside", R13([("scales", sc(1, 1, 2, 2))], exclude_outside=3), [X], ["exclude_outside"]),
        ("bad_keep_policy", node_model("Resize", ["x", "", "", "sizes"], [("sizes", sz(8, 8))], 18,
                                       axes=[2, 3], keep_aspect_ratio_policy="fit"), [X],
         ["keep_aspect_ratio_policy", "fit"]),
        ("bad_antialias", node_model("Resize", ["x", "", "scales"], [("scales", sc(1, 1, 0.5, 0.5))], 18,
                                     mode="linear", antialias=2), [X], ["antialias"]),
        ("axes_repeated", node_model("Resize", ["x", "", "scales"], [("scales", sc(2, 2))], 18, axes=[2, -2]),
         [X], ["axis", "repeated"]),
        ("axes_out_of_range", node_model("Resize", ["x", "", "scales"], [("scales", sc(2, 2))], 18, axes=[2, 4]),
         [X], ["axis", "out of range"]),
        ("tf_crop_without_roi", R13([("sizes", sz(1, 1, 3, 3))], ("x", "", "", "sizes"),
                                    coordinate_transformation_mode="tf_crop_and_resize"), [X], ["roi"]),
        ("tf_crop_nonfinite_roi", R13([("roi", sc(0, 0, 0, 0, 1, 1, np.inf, 1)), ("sizes", sz(1, 1, 3, 3))],
                                      ("x", "roi", "", "sizes"), coordinate_transformation_mode="tf_crop_and_resize"),
         [X], ["roi"]),
        ("empty_to_nonempty", R13([("sizes", sz(1, 1, 3, 3))], ("x", "", "", "sizes"), shape=(1, 1, 0, 4)),
         [np.zeros((1, 1, 0, 4), np.float32)], ["empty axis"]),
        ("scalar_x", R13([("scales", np.zeros([0], np.float32)), ("ax", sz(0))], ("xs", "", "scales"), shape=(1,),
                         pre=[helper.make_node("Squeeze", ["x", "ax"], ["xs"])]), [np.zeros((1,), np.float32)],
         ["rank", "scalar"]),
        ("resize10_one_input", node_model("Resize", ["x"], [], 10), [X], ["input"]),
        ("resize10_cubic", node_model("Resize", ["x", "scales"], [("scales", sc(1, 1, 2, 2))], 10, mode="cubic"),
         [X], ["mode", "cubic"]),
        ("upsample7_no_scales", node_model("Upsample", ["x"], [], 7), [X], ["scales"]),
        ("upsample_opset6", node_model("Upsample", ["x"], [], 6, height_scale=2.0, width_scale=2.0), [X],
         ["Upsample", "opset 7"]),
        ("upsample9_no_scales", node_model("Upsample", ["x"], [], 9), [X], ["input"]),
        ("upsample9_cubic", node_model("Upsample", ["x", "scales"], [("scales", sc(1, 1, 2, 2))], 9, mode="cubic"),
         [X], ["mode", "cubic"]),
        ("upsample7_scales_count", node_model("Upsample", ["x"], [], 7, scales=[2.0, 2.0]), [X], ["scales"]),
    ]


def part_errors(R, cnnfx, work, seed):
    base = os.path.join(work, "errors")
    for name, model, inputs, words in error_cases():
        d = os.path.join(base, name)
        write_case(d, model, inputs, [np.zeros((1,), np.float32)])
        rc, out = run_cli([cnnfx, "check-onnx", d], 120)
        low = out.lower()
        bad = ("runtime error:", "error: addresssanitizer", "error: leaksanitizer", "glib-critical")
        ok = rc == 1 and "FAIL" in out and all(w.lower() in low for w in words) and not any(b in low for b in bad)
        first = ([ln for ln in out.splitlines() if ln.startswith("FAIL")] or [out[-300:]])[0]
        R.add(ok, f"error {name}", f"rc={rc}: {first.split(': ', 1)[-1][:200]}" + ("" if ok else f" (want {words})"))


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cnnfx", required=True, help="path to the cnnfx executable")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", default=None, help="where to write models (default: a temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the written models")
    a = ap.parse_args()
    cnnfx = os.path.abspath(a.cnnfx)
    own = a.workdir is None
    work = tempfile.mkdtemp(prefix="cnnfx-fast-style-") if own else a.workdir
    os.makedirs(work, exist_ok=True)
    R = Results()
    t0 = time.time()
    try:
        for part in (part_torch_nets, part_antialias, part_reference, part_errors):
            try:
                part(R, cnnfx, work, a.seed)
            except Exception as e:  # a harness failure is a failure, never a skip
                R.add(False, part.__name__, f"raised {e!r}"[:400])
    finally:
        if own and not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    worst = "; ".join(f"worst {k} {v:.2e}" for k, v in R.worst.items())
    print(f"summary: tolerance {TOL:g} x max|ref| (forward and input gradient vs PyTorch); {worst}")
    print(f"{R.passed} passed, {R.failed} failed ({time.time() - t0:.0f}s)")
    return 1 if R.failed or R.passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
