#!/usr/bin/python3
"""torchvision parity test: the acceptance test of the cnnfx core.

For each torchvision CNN (seeded random weights, randomised BatchNorm statistics,
eval mode) this script

  1. exports the model to ONNX (opset 13 by default; some variants use older opsets)
     with BatchNormalization kept as its own node (not folded into Conv);
  2. writes an ONNX backend-test directory (model.onnx + test_data_set_0) and runs
     `cnnfx check-onnx DIR --rtol 1e-3 --atol 1e-4`;
  3. compares input gradients of L = 0.5*||y||^2 (final output) and of
     L = 0.5*||t||^2 (an intermediate tensor t, named "tap" in the ONNX graph but
     NOT a graph output) computed by `cnnfx grad` against float32 torch autograd:
     ||g - g_ref|| / ||g_ref|| <= 1e-3 and allclose(rtol=1e-2, atol=1e-3*max|g_ref|).

     A float32 input gradient through ReLU/ReLU6/max-pool is not a continuous function
     of rounding: a unit within rounding error of a kink (or a near-tie in a pooling
     window) may take the other branch in another implementation, changing the gradient
     over that unit's receptive field.  torch float32 vs torch float64 already differs
     by up to ~1e-2 (rel) on MobileNetV2, VGG16 and ResNet18 with these weights.  So
     when cnnfx's gradient does not match torch's, a second reference is computed:
     the exported ONNX graph run by a small torch interpreter whose ReLU/Clip masks and
     max-pool argmax come from cnnfx's own forward values (read back through
     `cnnfx grad` on a helper model, see cnnfx_values).  That reference is a fixed
     linear map, so a correct cnnfx matches it to ~1e-5; a check passes if it matches
     either reference with the tolerances above.  Both comparisons are printed.

Prints "PASS/FAIL model check (...)" per check and "N passed, M failed"; exit 1 on failure.
With --bisect, a failing check is traced to the first diverging ONNX node: the ONNX
graph is re-run in a small torch interpreter and compared with cnnfx on every
intermediate tensor (forward: all tensors as extra outputs; backward: binary search
over `cnnfx grad --tap T`).
"""
import argparse
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnx.numpy_helper as nph
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import warnings

warnings.filterwarnings("ignore")  # torch.onnx / torchvision deprecation chatter

TV = torchvision.models

# name -> (constructor, input size, tap selector)
MODELS = {
    "alexnet": (lambda: TV.alexnet(), 224, lambda m: m.features[7]),  # relu after conv3
    "vgg16": (lambda: TV.vgg16(init_weights=False), 224, lambda m: m.features[18]),  # relu4_1
    "vgg19": (lambda: TV.vgg19(init_weights=False), 224, lambda m: m.features[20]),  # relu4_1
    "googlenet": (lambda: TV.googlenet(aux_logits=False, init_weights=False, transform_input=False), 224,
                  lambda m: m.inception4c),
    "squeezenet1_0": (lambda: TV.squeezenet1_0(), 224, lambda m: m.features[8]),  # fire5 (1.0 numbering)
    "squeezenet1_1": (lambda: TV.squeezenet1_1(), 224, lambda m: m.features[7]),  # fire5
    "resnet18": (lambda: TV.resnet18(), 224, lambda m: m.layer3),
    "mobilenet_v2": (lambda: TV.mobilenet_v2(), 224, lambda m: m.features[10]),
}
# Default variants: every model at opset 13, plus older-opset forms (Clip with attributes,
# BatchNormalization-9, ...) on cheap models.
DEFAULT = [f"{n}@13" for n in MODELS] + ["mobilenet_v2@9", "squeezenet1_1@11"]

GRAD_REL = 1e-3
GRAD_RTOL = 1e-2
GRAD_ATOL_FRAC = 1e-3


class Tapped(nn.Module):
    """Wraps a model so that forward returns (output, intermediate tensor)."""

    def __init__(self, model, sub):
        super().__init__()
        self.model = model
        self.store = None
        sub.register_forward_hook(self._hook)

    def _hook(self, mod, inp, out):
        self.store = out

    def forward(self, x):
        self.store = None
        y = self.model(x)
        return y, self.store


def build(name, seed):
    ctor, size, tapsel = MODELS[name]
    torch.manual_seed(seed)
    m = ctor()
    # Well-scaled random weights (torchvision's own init is not used everywhere, e.g.
    # GoogLeNet with init_weights=False): Kaiming-normal convs/linears, small random biases.
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")
            if mod.bias is not None:
                nn.init.uniform_(mod.bias, -0.1, 0.1)
    bns = [mod for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)]
    if bns:
        # Calibrate running statistics on random data so activations stay O(1), then
        # randomise everything so BatchNorm is far from identity.
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        m.train()
        with torch.no_grad():
            m(torch.randn(4, 3, 112, 112))
        with torch.no_grad():
            for bn in bns:
                c = bn.num_features
                std = bn.running_var.sqrt()
                bn.running_mean.add_(0.2 * std * torch.randn(c))
                bn.running_var.mul_(torch.empty(c).uniform_(0.5, 2.0))
                bn.weight.copy_(torch.empty(c).uniform_(0.5, 1.5))
                bn.bias.copy_(torch.empty(c).uniform_(-0.2, 0.2))
    m.eval()
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(1, 3, size, size, generator=gen)
    # Rescale the last layer so that the logits have unit standard deviation.
    last = [mod for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.Linear))][-1]
    with torch.no_grad():
        s = float(m(x).std())
        if s > 0:
            last.weight.div_(s)
            if last.bias is not None:
                last.bias.div_(s)
    return Tapped(m, tapsel(m)).eval(), x


def export(wrapped, x, opset):
    """ONNX export with outputs (output, tap); returns the ModelProto with 'tap' an internal tensor."""
    buf = io.BytesIO()
    torch.onnx.export(wrapped, x, buf, opset_version=opset, input_names=["input"],
                      output_names=["output", "tap"], training=torch.onnx.TrainingMode.PRESERVE,
                      do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    outs = [o for o in model.graph.output if o.name != "tap"]
    assert any("tap" in n.output for n in model.graph.node), "tap tensor not found in the exported graph"
    del model.graph.output[:]
    model.graph.output.extend(outs)
    return model


def save_pb(arr, path, name):
    t = nph.from_array(np.ascontiguousarray(arr), name)
    with open(path, "wb") as f:
        f.write(t.SerializeToString())


def load_pb(path):
    t = onnx.TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return nph.to_array(t)


def run_cli(args, timeout):
    t = time.time()
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        return r.returncode, (r.stdout + r.stderr).strip(), time.time() - t
    except subprocess.TimeoutExpired:
        return None, f"timeout after {timeout}s", time.time() - t


def compare_grad(g, ref):
    g = g.astype(np.float64)
    ref = ref.astype(np.float64)
    if g.shape != ref.shape:
        return False, f"shape {g.shape}, expected {ref.shape}"
    nref = np.linalg.norm(ref)
    rel = np.linalg.norm(g - ref) / nref if nref > 0 else np.linalg.norm(g)
    amax = float(np.abs(ref).max())
    atol = GRAD_ATOL_FRAC * amax
    excess = np.abs(g - ref) - (atol + GRAD_RTOL * np.abs(ref))
    bad = int((~(excess <= 0)).sum())
    worst = float(np.nanmax(np.abs(g - ref)) / amax) if amax > 0 else float("inf")
    ok = bool(np.isfinite(rel) and rel <= GRAD_REL and bad == 0)
    msg = f"rel={rel:.2e} maxdiff/max|g|={worst:.2e} bad={bad}/{g.size} |g|={nref:.3g}"
    return ok, msg


# ---------------------------------------------------------------------------------
# A small torch interpreter for the ONNX ops these exports contain (for --bisect).

def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads2d(a, n=2):
    p = list(a.get("pads", [0] * (2 * n)))
    return p[:n], p[n:]


def _masked(value, x, mask):
    """value in the forward pass, gradient of x masked by `mask` in the backward pass."""
    return value.detach() + (x - x.detach()) * mask


def onnx_torch_eval(model, x, kinks=None, dtype=None):
    """Evaluates the graph with torch ops (autograd-capable). Returns dict name->tensor.

    kinks: optional dict tensor name -> values (from cnnfx) of the inputs of Relu, Clip and
    MaxPool nodes; the backward pass then takes its ReLU/Clip masks and max-pool argmax
    from those values instead of its own, so that it follows exactly the same branches
    as cnnfx did."""
    kinks = kinks or {}
    opset = max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] or [13])
    env = {t.name: torch.from_numpy(nph.to_array(t).copy()) for t in model.graph.initializer}
    if dtype is not None:
        env = {k: v.to(dtype) if v.is_floating_point() else v for k, v in env.items()}
    env[model.graph.input[0].name] = x
    for node in model.graph.node:
        a = _attrs(node)
        ins = [env[i] if i else None for i in node.input]
        op = node.op_type
        if op in ("Identity", "Dropout"):
            out = ins[0]
        elif op == "Constant":
            out = torch.from_numpy(nph.to_array(a["value"]).copy())
        elif op == "Relu":
            out = F.relu(ins[0])
            if node.input[0] in kinks:
                out = _masked(out, ins[0], (kinks[node.input[0]] > 0).to(out.dtype))
        elif op == "Clip":
            if opset < 11:
                lo, hi = a.get("min", -3.4e38), a.get("max", 3.4e38)
            else:
                lo = float(ins[1]) if len(ins) > 1 and ins[1] is not None else -3.4e38
                hi = float(ins[2]) if len(ins) > 2 and ins[2] is not None else 3.4e38
            out = torch.clamp(ins[0], lo, hi)
            if node.input[0] in kinks:
                k = kinks[node.input[0]]
                out = _masked(out, ins[0], ((k >= lo) & (k <= hi)).to(out.dtype))
        elif op == "Add":
            out = ins[0] + ins[1]
        elif op == "Concat":
            out = torch.cat(ins, dim=a["axis"])
        elif op == "Flatten":
            ax = a.get("axis", 1)
            out = ins[0].reshape(int(np.prod(ins[0].shape[:ax])), -1)
        elif op == "Gemm":
            A, B = ins[0], ins[1]
            if a.get("transA", 0):
                A = A.t()
            if a.get("transB", 0):
                B = B.t()
            out = a.get("alpha", 1.0) * (A @ B)
            if len(ins) > 2 and ins[2] is not None:
                out = out + a.get("beta", 1.0) * ins[2]
        elif op == "Conv":
            assert a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
            lo, hi = _pads2d(a)
            xi = ins[0]
            if lo != hi:
                xi = F.pad(xi, [lo[1], hi[1], lo[0], hi[0]])
                lo = [0, 0]
            out = F.conv2d(xi, ins[1], ins[2] if len(ins) > 2 else None, stride=a.get("strides", [1, 1]),
                           padding=lo, dilation=a.get("dilations", [1, 1]), groups=a.get("group", 1))
        elif op == "BatchNormalization":
            out = F.batch_norm(ins[0], ins[3], ins[4], ins[1], ins[2], False, 0.0, a.get("epsilon", 1e-5))
        elif op == "MaxPool":
            lo, hi = _pads2d(a)
            xi = ins[0]
            ki = kinks.get(node.input[0])
            if lo != hi:
                xi = F.pad(xi, [lo[1], hi[1], lo[0], hi[0]], value=float("-inf"))
                if ki is not None:
                    ki = F.pad(ki, [lo[1], hi[1], lo[0], hi[0]], value=float("-inf"))
                lo = [0, 0]
            pool = lambda t, ri: F.max_pool2d(t, a["kernel_shape"], a.get("strides", [1, 1]), lo,
                                              a.get("dilations", [1, 1]), ceil_mode=bool(a.get("ceil_mode", 0)),
                                              return_indices=ri)
            if ki is None:
                out = pool(xi, False)
            else:  # gather at cnnfx's argmax
                _, idx = pool(ki.to(xi.dtype), True)
                out = xi.flatten(2).gather(2, idx.flatten(2)).view(idx.shape)
        elif op == "AveragePool":
            lo, hi = _pads2d(a)
            assert lo == hi
            out = F.avg_pool2d(ins[0], a["kernel_shape"], a.get("strides", [1, 1]), lo,
                               ceil_mode=bool(a.get("ceil_mode", 0)),
                               count_include_pad=bool(a.get("count_include_pad", 0)))
        elif op == "GlobalAveragePool":
            out = ins[0].mean(dim=(2, 3), keepdim=True)
        elif op == "Reshape":
            out = ins[0].reshape([int(v) if v != 0 else ins[0].shape[i] for i, v in enumerate(ins[1].tolist())])
        else:
            raise NotImplementedError(f"bisect interpreter: op {op}")
        env[node.output[0]] = out
    return env


KINK_OPS = ("Relu", "Clip", "MaxPool")


def cnnfx_values(model, x, shapes, d, cnnfx, timeout):
    """cnnfx's own forward values of the tensors in `shapes` (name -> shape), read back
    through `cnnfx grad`: the image becomes an initializer and a new first input z (zeros)
    is added to the concatenation of the flattened tensors, so
    d(0.5*||cat + z||^2)/dz = cat."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inp = g.input[0].name
    rest = list(g.input)[1:]
    del g.input[:]
    g.initializer.append(nph.from_array(np.ascontiguousarray(x), inp))
    names = list(shapes)
    total = int(sum(np.prod(shapes[n]) for n in names))
    g.input.append(onnx.helper.make_tensor_value_info("__dump_z", onnx.TensorProto.FLOAT, [1, total]))
    g.input.extend(rest)
    flat = []
    for k, n in enumerate(names):
        g.node.append(onnx.helper.make_node("Flatten", [n], [f"__dump_flat{k}"], axis=0))
        flat.append(f"__dump_flat{k}")
    level = 0
    while len(flat) > 32:  # the executor caps a node at 64 inputs: concatenate in a tree
        groups = [flat[i:i + 32] for i in range(0, len(flat), 32)]
        flat = []
        for j, grp in enumerate(groups):
            flat.append(f"__dump_cat{level}_{j}")
            g.node.append(onnx.helper.make_node("Concat", grp, [flat[-1]], axis=1))
        level += 1
    g.node.append(onnx.helper.make_node("Concat", flat, ["__dump_cat"], axis=1))
    g.node.append(onnx.helper.make_node("Add", ["__dump_cat", "__dump_z"], ["__dump_out"]))
    del g.output[:]
    g.output.append(onnx.helper.make_tensor_value_info("__dump_out", onnx.TensorProto.FLOAT, [1, total]))
    mp, zp, gp = (os.path.join(d, f) for f in ("dump.onnx", "dump_z.pb", "dump_values.pb"))
    onnx.save(m, mp)
    del m
    save_pb(np.zeros((1, total), np.float32), zp, "__dump_z")
    rc, out, _ = run_cli([cnnfx, "grad", mp, "--input", zp, "-o", gp], timeout)
    for f in (mp, zp):
        os.unlink(f)
    if rc != 0:
        raise RuntimeError(f"cnnfx grad on the value-dump model failed: {out[-300:]}")
    v = load_pb(gp).reshape(-1)
    os.unlink(gp)
    res, o = {}, 0
    for n in names:
        k = int(np.prod(shapes[n]))
        res[n] = torch.from_numpy(v[o:o + k].reshape(shapes[n]).copy())
        o += k
    return res


def mask_consistent_grads(model, x, d, cnnfx, timeout):
    """Input gradients (output, tap) from the ONNX graph run in torch, with ReLU/Clip masks
    and max-pool argmax taken from cnnfx's forward values (see onnx_torch_eval)."""
    xt = torch.from_numpy(x)
    with torch.no_grad():
        env = onnx_torch_eval(model, xt)
    shapes = {}
    for node in model.graph.node:
        if node.op_type in KINK_OPS:
            shapes[node.input[0]] = tuple(env[node.input[0]].shape)
    del env
    kinks = cnnfx_values(model, x, shapes, d, cnnfx, timeout)
    xr = xt.clone().requires_grad_(True)
    env = onnx_torch_eval(model, xr, kinks)
    out = model.graph.output[0].name
    (g_out,) = torch.autograd.grad(0.5 * (env[out] ** 2).sum(), xr, retain_graph=True)
    (g_tap,) = torch.autograd.grad(0.5 * (env["tap"] ** 2).sum(), xr)
    return g_out.numpy(), g_tap.numpy(), kinks


def _dependents(model):
    """Float node outputs that depend on the graph input, in topological order."""
    dep = {model.graph.input[0].name}
    order = []
    for node in model.graph.node:
        if any(i in dep for i in node.input):
            for o in node.output:
                if o:
                    dep.add(o)
                    order.append((o, node))
    return order


def _describe(node, env):
    shp = [tuple(env[i].shape) if i and i in env else None for i in node.input]
    return f"{node.op_type} node '{node.name}' inputs {shp} attrs {_attrs(node)}"


def bisect_forward(model, x, d, cnnfx, log):
    env = onnx_torch_eval(model, torch.from_numpy(x))
    order = _dependents(model)
    m2 = onnx.ModelProto()
    m2.CopyFrom(model)
    del m2.graph.output[:]
    bd = os.path.join(d, "bisect_fwd")
    os.makedirs(os.path.join(bd, "test_data_set_0"), exist_ok=True)
    save_pb(x, os.path.join(bd, "test_data_set_0", "input_0.pb"), "input")
    for k, (name, node) in enumerate(order):
        m2.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        save_pb(env[name].detach().numpy(), os.path.join(bd, "test_data_set_0", f"output_{k}.pb"), name)
    onnx.save(m2, os.path.join(bd, "model.onnx"))
    rc, out, _ = run_cli([cnnfx, "check-onnx", bd, "--rtol", "1e-3", "--atol", "1e-4"], 600)
    log(f"  bisect forward: {([ln for ln in out.splitlines() if ln.startswith(('PASS', 'FAIL'))] or [out[-300:]])[0]}")
    for name, node in order:
        if f"output {name}:" in out:
            log(f"  first diverging tensor '{name}' = {_describe(node, env)}")
            return
    log("  no intermediate tensor diverges (check the output comparison itself)")


def bisect_grad(model, x, mpath, d, cnnfx, log, kinks=None):
    order = _dependents(model)
    xt = torch.from_numpy(x)

    def probe(k):
        name, node = order[k]
        xr = xt.clone().requires_grad_(True)
        env = onnx_torch_eval(model, xr, kinks)
        (ref,) = torch.autograd.grad(0.5 * (env[name] ** 2).sum(), xr, allow_unused=True)
        ref = np.zeros_like(x) if ref is None else ref.numpy()
        gp = os.path.join(d, "bisect_grad.pb")
        rc, out, _ = run_cli([cnnfx, "grad", mpath, "--input", os.path.join(d, "test_data_set_0", "input_0.pb"),
                              "--tap", name, "-o", gp], 600)
        if rc != 0:
            return False, f"cnnfx grad failed: {out[-300:]}", env
        ok, msg = compare_grad(load_pb(gp), ref)
        return ok, msg, env

    lo, hi = 0, len(order) - 1  # invariant: first bad in [lo, hi]
    ok, msg, env = probe(hi)
    if ok:
        log(f"  bisect grad: tap on the last tensor passes ({msg})")
        return
    while lo < hi:
        mid = (lo + hi) // 2
        ok, msg, env = probe(mid)
        log(f"  bisect grad: tap '{order[mid][0]}' ({order[mid][1].op_type}) {'ok' if ok else 'BAD'} {msg}")
        if ok:
            lo = mid + 1
        else:
            hi = mid
    ok, msg, env = probe(lo)
    log(f"  first tensor with a wrong input gradient '{order[lo][0]}' ({msg}) = backward of "
        f"{_describe(order[lo][1], env)}")


# ---------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cnnfx", required=True, help="path to the cnnfx executable")
    ap.add_argument("--workdir", default=None, help="where to write models (default: a temporary directory)")
    ap.add_argument("--models", default=None,
                    help="comma-separated subset, NAME or NAME@OPSET (default: " + ",".join(DEFAULT) + ")")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the written models")
    ap.add_argument("--bisect", action="store_true", help="locate the diverging node when a check fails")
    ap.add_argument("--timeout", type=int, default=600, help="per cnnfx invocation, seconds")
    a = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    specs = a.models.split(",") if a.models else DEFAULT
    variants = []
    for s in specs:
        s = s.strip()
        name, _, op = s.partition("@")
        if name not in MODELS:
            print(f"unknown model '{name}' (known: {', '.join(MODELS)})", file=sys.stderr)
            return 2
        variants.append((name, int(op) if op else 13))
    cnnfx = os.path.abspath(a.cnnfx)
    own = a.workdir is None
    work = tempfile.mkdtemp(prefix="cnnfx-tv-") if own else a.workdir
    os.makedirs(work, exist_ok=True)
    passed = failed = 0

    def log(msg):
        print(msg, flush=True)

    def result(ok, label, msg):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
        log(f"{'PASS' if ok else 'FAIL'} {label} ({msg})")

    t_all = time.time()
    try:
        for name, opset in variants:
            label = f"{name}@{opset}"
            t0 = time.time()
            wrapped, x = build(name, a.seed)
            xr = x.clone().requires_grad_(True)
            y, tap = wrapped(xr)
            (g_out,) = torch.autograd.grad(0.5 * (y ** 2).sum(), xr, retain_graph=True)
            (g_tap,) = torch.autograd.grad(0.5 * (tap ** 2).sum(), xr)
            y = y.detach().numpy()
            try:
                model = export(wrapped, x, opset)
            except Exception as e:  # an exporter failure is a harness problem, report it
                result(False, f"{label} export", repr(e)[:300])
                continue
            del wrapped
            d = os.path.join(work, label.replace("@", "_op"))
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(os.path.join(d, "test_data_set_0"))
            mpath = os.path.join(d, "model.onnx")
            onnx.save(model, mpath)
            xin = x.numpy()
            inp = os.path.join(d, "test_data_set_0", "input_0.pb")
            save_pb(xin, inp, "input")
            save_pb(y, os.path.join(d, "test_data_set_0", "output_0.pb"), "output")
            t_prep = time.time() - t0

            rc, out, dt = run_cli([cnnfx, "check-onnx", d, "--rtol", "1e-3", "--atol", "1e-4"], a.timeout)
            ok = rc == 0 and "PASS" in out
            why = ([ln for ln in out.splitlines() if ln.startswith("FAIL")] or out.splitlines()[-1:] or [f"rc={rc}"])[0]
            result(ok, f"{label} forward", f"{'|y|max=%.3g' % np.abs(y).max() if ok else why}; {dt:.1f}s")
            if not ok and a.bisect:
                try:
                    bisect_forward(model, xin, d, cnnfx, log)
                except Exception as e:
                    log(f"  bisect forward failed: {e!r}")

            # Input gradients.  A float32 gradient through ReLU/ReLU6/max-pool is not a
            # continuous function of rounding: an activation within rounding error of a kink
            # (or a near-tie in a pooling window) can take the other branch, which changes
            # the gradient over that unit's receptive field (torch float32 vs float64 already
            # differs by up to ~1e-2 on MobileNetV2/VGG16).  So when cnnfx disagrees with
            # torch, the reference is recomputed with cnnfx's own branch decisions (values
            # read back from cnnfx); the check passes if either comparison passes.
            grads = {}
            for check, tapname in (("grad-output", None), ("grad-tap", "tap")):
                gp = os.path.join(d, f"{check}.pb")
                cmd = [cnnfx, "grad", mpath, "--input", inp, "-o", gp]
                if tapname:
                    cmd[2:2] = ["--tap", tapname]
                rc, out, dt = run_cli(cmd, a.timeout)
                if rc != 0 or not os.path.exists(gp):
                    grads[check] = (None, f"cnnfx grad rc={rc}: {out[-300:]}", dt)
                else:
                    grads[check] = (load_pb(gp), None, dt)
            refs = {"grad-output": g_out.numpy(), "grad-tap": g_tap.numpy()}
            res = {}
            for check, (g, err, dt) in grads.items():
                res[check] = (False, err) if g is None else compare_grad(g, refs[check])
            mc, kinks = None, None
            if any(not ok for ok, _ in res.values()) and all(g is not None for g, _, _ in grads.values()):
                try:
                    t1 = time.time()
                    mo, mt, kinks = mask_consistent_grads(model, xin, d, cnnfx, a.timeout)
                    mc = {"grad-output": mo, "grad-tap": mt}
                    log(f"     ({label}: mask-consistent reference {time.time() - t1:.1f}s)")
                except Exception as e:
                    log(f"     ({label}: no mask-consistent reference: {e!r})")
            for check, (g, err, dt) in grads.items():
                ok, msg = res[check]
                if g is None:
                    result(False, f"{label} {check}", msg)
                    continue
                msg = f"vs torch: {msg}"
                if not ok and mc is not None:
                    # The reference rebuilt with cnnfx's own branch decisions explains rounding at
                    # kinks only: it is accepted only while plain torch still agrees to the spread
                    # torch float32 vs float64 shows (rel-L2 <= 2e-2), so a wrong gradient cannot
                    # pass on a reference built from its own values.
                    ref = refs[check].astype(np.float64)
                    nref = np.linalg.norm(ref)
                    rel_plain = np.linalg.norm(g.astype(np.float64) - ref) / nref if nref > 0 else np.inf
                    ok, msg2 = compare_grad(g, mc[check])
                    ok = ok and bool(rel_plain <= 2e-2)
                    msg += f"; vs torch with cnnfx's ReLU/pool branches: {msg2} (accepted only with plain rel <= 2e-2)"
                result(ok, f"{label} {check}", f"{msg}; {dt:.1f}s")
                if not ok and a.bisect and check == "grad-output":
                    try:
                        bisect_grad(model, xin, mpath, d, cnnfx, log, kinks)
                    except Exception as e:
                        log(f"  bisect grad failed: {e!r}")
            log(f"     {label}: {time.time() - t0:.1f}s (prepare {t_prep:.1f}s)")
            if not a.keep:
                shutil.rmtree(d, ignore_errors=True)
    finally:
        if own and not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    log(f"{passed} passed, {failed} failed ({time.time() - t_all:.0f}s)")
    return 1 if failed or not passed else 0  # nothing checked is a failure


if __name__ == "__main__":
    sys.exit(main())
