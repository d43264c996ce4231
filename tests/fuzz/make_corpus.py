#!/usr/bin/python3
"""Seed corpus for the cnnfx ONNX fuzz target.

    /usr/bin/python3 tests/fuzz/make_corpus.py OUT_DIR [--seed N] [--mutations N] [--no-node-tests]

Writes into OUT_DIR:
  * a handful of small valid models (conv+relu+pool+gemm, BatchNorm, Concat, Softmax, Reshape,
    Clip/Squeeze/Unsqueeze/Pad in their opset 7/11/13 forms; initializers as raw_data and as
    float_data/int64_data; Constant nodes with value / value_float / value_ints);
  * TensorProto files (input_0.pb style: float raw/float_data, int64, int32, double);
  * mutations of those (truncations, bit flips, byte splices, varint/length tampering);
  * every ONNX op with missing / absent ("") / surplus inputs and outputs (arity_*.onnx);
  * unless --no-node-tests: model.onnx and input_0.pb of small ONNX node tests from
    /usr/share/libonnx-testdata (renamed node_<test>.onnx / node_<test>_in0.pb).
Deterministic for a given --seed.  Only /usr/bin/python3 with onnx + numpy is needed.
"""
import argparse
import os
import random
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NODE_TESTS = "/usr/share/libonnx-testdata/data/node"


def f32(rng, *shape):
    return rng.uniform(-1, 1, size=shape).astype(np.float32)


def init(name, arr, raw=True):
    """Initializer as raw_data (numpy_helper) or as typed repeated fields."""
    if raw:
        return numpy_helper.from_array(arr, name)
    dt = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64}[arr.dtype]
    return helper.make_tensor(name, dt, arr.shape, arr.flatten().tolist(), raw=False)


def model(nodes, inputs, outputs, inits, opset, name="g"):
    if opset <= 7:  # IR version 3: initializers must also be listed as graph inputs
        inputs = inputs + [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in inits]
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], producer_name="cnnfx-corpus")
    m.ir_version = 3 if opset <= 7 else (6 if opset <= 11 else 7)
    return m


def vi(name, shape, dt=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dt, shape)


def cnn(rng, opset, raw, constants=False):
    """Conv -> Relu -> MaxPool -> Flatten -> Gemm (+ Softmax from 13)."""
    nodes, inits = [], []
    W = f32(rng, 4, 3, 3, 3)
    B = f32(rng, 4)
    G = f32(rng, 5, 4 * 3 * 3)
    Gb = f32(rng, 5)
    if constants:
        nodes.append(helper.make_node("Constant", [], ["W"], value=init("Wc", W, raw)))
        if opset >= 12:
            nodes.append(helper.make_node("Constant", [], ["B"], value_floats=B.tolist()))
        else:
            nodes.append(helper.make_node("Constant", [], ["B"], value=init("Bc", B, raw)))
    else:
        inits += [init("W", W, raw), init("B", B, raw)]
    inits += [init("G", G, raw), init("Gb", Gb, raw)]
    nodes += [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["p"], ["a"], kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1]),
        helper.make_node("Flatten", ["a"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "G", "Gb"], ["y0"], transB=1, alpha=1.0, beta=1.0),
    ]
    out = "y0"
    if opset >= 13:
        nodes.append(helper.make_node("Softmax", ["y0"], ["y"], axis=-1))
        out = "y"
    return model(nodes, [vi("x", [1, 3, 6, 6])], [vi(out, [1, 5])], inits, opset, "cnn")


def bn_concat(rng, opset, raw):
    C = 3
    inits = [init("s", f32(rng, C), raw), init("b", f32(rng, C), raw), init("mu", f32(rng, C), raw),
             init("var", (np.abs(f32(rng, C)) + 0.5).astype(np.float32), raw)]
    attrs = {"epsilon": 1e-5}
    if opset < 9:
        attrs["spatial"] = 1
    nodes = [
        helper.make_node("BatchNormalization", ["x", "s", "b", "mu", "var"], ["n"], **attrs),
        helper.make_node("Sigmoid", ["n"], ["sg"]),
        helper.make_node("Concat", ["n", "sg"], ["cc"], axis=1),
        helper.make_node("GlobalAveragePool", ["cc"], ["gp"]),
        helper.make_node("Mul", ["gp", "cc"], ["y"]),
    ]
    return model(nodes, [vi("x", [1, C, 4, 4])], [vi("y", [1, 2 * C, 4, 4])], inits, opset, "bn")


def opset_forms(rng, opset, raw):
    """Clip / Squeeze / Unsqueeze / Reshape / Pad in the attribute or input form of the opset."""
    nodes, inits = [], []
    if opset < 11:
        nodes.append(helper.make_node("Clip", ["x"], ["c"], min=-0.5, max=0.5))
    else:
        inits += [init("lo", np.array(-0.5, np.float32), raw), init("hi", np.array(0.5, np.float32), raw)]
        nodes.append(helper.make_node("Clip", ["x", "lo", "hi"], ["c"]))
    if opset < 13:
        nodes.append(helper.make_node("Unsqueeze", ["c"], ["u"], axes=[0]))
        nodes.append(helper.make_node("Squeeze", ["u"], ["q"], axes=[0]))
    else:
        inits.append(init("ax", np.array([0], np.int64), raw))
        nodes.append(helper.make_node("Unsqueeze", ["c", "ax"], ["u"]))
        nodes.append(helper.make_node("Squeeze", ["u", "ax"], ["q"]))
    if opset < 11:
        nodes.append(helper.make_node("Pad", ["q"], ["pd"], pads=[0, 0, 1, 1, 0, 0, 1, 1], mode="constant", value=0.0))
    else:
        inits.append(init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), raw))
        nodes.append(helper.make_node("Pad", ["q", "pads"], ["pd"], mode="constant"))
    nodes.append(helper.make_node("Constant", [], ["shp"], value=init("shpc", np.array([1, -1], np.int64), raw)))
    nodes.append(helper.make_node("Reshape", ["pd", "shp"], ["rs"]))
    if opset >= 12:
        nodes.append(helper.make_node("Constant", [], ["k"], value_float=2.0))
    else:
        nodes.append(helper.make_node("Constant", [], ["k"], value=init("kc", np.array(2.0, np.float32), raw)))
    nodes.append(helper.make_node("Mul", ["rs", "k"], ["m"]))
    nodes.append(helper.make_node("Tanh", ["m"], ["y"]))
    return model(nodes, [vi("x", [1, 2, 3, 3])], [vi("y", [1, 50])], inits, opset, "forms")


def residual(rng, opset, raw):
    """Two branches joined by Add, with a LeakyRelu and a 1x1 conv; symbolic batch dim."""
    inits = [init("W1", f32(rng, 3, 3, 1, 1), raw), init("W2", f32(rng, 3, 3, 3, 3), raw)]
    nodes = [
        helper.make_node("Conv", ["x", "W1"], ["a"], kernel_shape=[1, 1]),
        helper.make_node("Conv", ["x", "W2"], ["b"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], dilations=[1, 1],
                         group=1),
        helper.make_node("LeakyRelu", ["b"], ["lb"], alpha=0.1),
        helper.make_node("Add", ["a", "lb"], ["y"]),
    ]
    return model(nodes, [vi("x", ["N", 3, 5, 5])], [vi("y", ["N", 3, 5, 5])], inits, opset, "res")


def tensors(rng):
    """TensorProto files like the backend tests' input_K.pb."""
    out = {}
    out["t_f32_raw.pb"] = numpy_helper.from_array(f32(rng, 1, 3, 4, 4), "x")
    out["t_f32_fields.pb"] = helper.make_tensor("x", TensorProto.FLOAT, [2, 3], f32(rng, 6).tolist(), raw=False)
    out["t_i64.pb"] = numpy_helper.from_array(np.array([1, -1, 3], np.int64), "shape")
    out["t_i32.pb"] = numpy_helper.from_array(np.array([[1, 2], [3, 4]], np.int32), "i")
    out["t_f64.pb"] = numpy_helper.from_array(np.array([0.5, -2.0], np.float64), "d")
    out["t_scalar.pb"] = numpy_helper.from_array(np.array(3.0, np.float32), "s")
    out["t_empty.pb"] = numpy_helper.from_array(np.zeros((0, 3), np.float32), "e")
    out["t_bool.pb"] = numpy_helper.from_array(np.array([True, False]), "b")
    return {k: v.SerializeToString() for k, v in out.items()}


def valid_models(seed):
    rng = np.random.default_rng(seed)
    ms = {}
    for opset in (7, 11, 13):
        for raw in (True, False):
            tag = "raw" if raw else "fields"
            ms[f"cnn_op{opset}_{tag}.onnx"] = cnn(rng, opset, raw)
            ms[f"cnn_const_op{opset}_{tag}.onnx"] = cnn(rng, opset, raw, constants=True)
            ms[f"bn_op{opset}_{tag}.onnx"] = bn_concat(rng, opset, raw)
            ms[f"forms_op{opset}_{tag}.onnx"] = opset_forms(rng, opset, raw)
        ms[f"res_op{opset}.onnx"] = residual(rng, opset, True)
    out = {}
    for k, m in ms.items():
        try:
            onnx.checker.check_model(m)
        except Exception as e:  # keep going: the file is still a useful seed
            print(f"make_corpus: note: {k} does not pass onnx.checker: {e}", file=sys.stderr)
        out[k] = m.SerializeToString()
    return out


def mutate(rnd, data):
    """One random structural mutation of a protobuf byte string."""
    b = bytearray(data)
    kind = rnd.randrange(8)
    if not b:
        return bytes([rnd.randrange(256)]), "grow"
    if kind == 0:  # truncate
        return bytes(b[: rnd.randrange(len(b))]), "trunc"
    if kind == 1:  # flip a few bits
        for _ in range(rnd.randint(1, 4)):
            i = rnd.randrange(len(b))
            b[i] ^= 1 << rnd.randrange(8)
        return bytes(b), "flip"
    if kind == 2:  # overwrite a byte with an interesting value
        i = rnd.randrange(len(b))
        b[i] = rnd.choice([0x00, 0x01, 0x7F, 0x80, 0xFF, 0x08, 0x0A, 0x12, 0x3A])
        return bytes(b), "byte"
    if kind == 3:  # splice: duplicate a chunk somewhere else
        i, j = sorted(rnd.randrange(len(b) + 1) for _ in range(2))
        k = rnd.randrange(len(b) + 1)
        return bytes(b[:k] + b[i:j] + b[k:]), "dup"
    if kind == 4:  # delete a chunk
        i, j = sorted(rnd.randrange(len(b) + 1) for _ in range(2))
        return bytes(b[:i] + b[j:]), "del"
    if kind == 5:  # insert a huge varint (a length / dim of ~2^62)
        k = rnd.randrange(len(b) + 1)
        big = bytes([0xFF] * 8 + [0x3F])
        return bytes(b[:k] + big + b[k:]), "bigvarint"
    if kind == 6:  # make a length prefix claim more than there is
        idx = [i for i in range(len(b) - 1) if b[i] & 7 == 2]
        if idx:
            i = rnd.choice(idx)
            b[i + 1] = 0xFF if b[i + 1] < 0x80 else b[i + 1]
        return bytes(b), "len"
    # append garbage
    return bytes(b) + bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 32))), "tail"


def float_to_int_models():
    """Floats that C cannot convert to int64 (NaN, +-inf, 1e30) where an op turns a float into an
    integer: Pad's fill value (attribute and input form), Cast to int64, Clip of int64 with float
    bounds, integer Pow overflow. The result is saturated or refused, never UB (a fuzzer find)."""
    out = {}
    x = vi("x", [1, 2, 3, 3])
    for tag, v in (("nan", float("nan")), ("inf", float("inf")), ("ninf", -float("inf")), ("big", 1e30)):
        a = np.array(v, np.float32)
        n = helper.make_node("Pad", ["x"], ["y"], pads=[0, 0, 1, 1, 0, 0, 1, 1], mode="constant", value=v)
        out[f"f2i_pad2_{tag}.onnx"] = model([n], [x], [vi("y", None)], [], 2).SerializeToString()
        n = helper.make_node("Pad", ["x", "pads", "v"], ["y"], mode="constant")
        inits = [init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)), init("v", a)]
        out[f"f2i_pad11_{tag}.onnx"] = model([n], [x], [vi("y", None)], inits, 13).SerializeToString()
        nodes = [helper.make_node("Add", ["x", "c"], ["xa"]),
                 helper.make_node("Cast", ["xa"], ["xi"], to=TensorProto.INT64),
                 helper.make_node("Clip", ["xi", "lo", "hi"], ["ci"]),
                 helper.make_node("Pad", ["ci", "pads", "iv"], ["pi"], mode="constant"),
                 helper.make_node("Pow", ["pi", "e"], ["pw"]),
                 helper.make_node("Cast", ["pw"], ["y"], to=TensorProto.FLOAT)]
        inits = [init("c", np.full([1, 2, 3, 3], v, np.float32)), init("lo", a), init("hi", a),
                 init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)), init("iv", np.array(-3, np.int64)),
                 init("e", np.array(v, np.float32))]
        out[f"f2i_cast_{tag}.onnx"] = model(nodes, [x], [vi("y", None)], inits, 13).SerializeToString()
    return out


def arity_models():
    """Every default-domain ONNX op with missing, absent ("") and surplus inputs, and with no or
    extra outputs: kernels must check what they get, never read past n_in or dereference NULL."""
    from onnx import defs
    names = sorted({s.name for s in defs.get_all_schemas_with_history() if s.domain in ("", "ai.onnx")})
    out = {}
    x = vi("x", [2, 3, 4, 4])
    variants = {
        "noin": ([], ["y"]),
        "one": (["x"], ["y"]),
        "absent": (["", "", ""], ["y"]),
        "firstabsent": (["", "x", "x"], ["y"]),
        "many": (["x"] * 6, ["y"]),
        "noout": (["x", "x"], []),
        "extraout": (["x", "x"], ["y", "y2", "y3", "y4"]),
    }
    for op in names:
        if op == "Constant":
            continue
        for tag, (ins, outs) in variants.items():
            n = helper.make_node(op, ins, outs)
            youts = [vi(o, None) for o in outs] or [vi("x", [2, 3, 4, 4])]
            g = helper.make_graph([n], "arity", [x], youts[:1])
            m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
            m.ir_version = 7
            out[f"arity_{op}_{tag}.onnx"] = m.SerializeToString()
    return out


def node_test_seeds(limit_bytes=65536):
    out = {}
    if not os.path.isdir(NODE_TESTS):
        return out
    for t in sorted(os.listdir(NODE_TESTS)):
        d = os.path.join(NODE_TESTS, t)
        mp = os.path.join(d, "model.onnx")
        if os.path.isfile(mp) and os.path.getsize(mp) <= limit_bytes:
            with open(mp, "rb") as f:
                out[f"node_{t}.onnx"] = f.read()
        ip = os.path.join(d, "test_data_set_0", "input_0.pb")
        if os.path.isfile(ip) and os.path.getsize(ip) <= limit_bytes:
            with open(ip, "rb") as f:
                out[f"node_{t}_in0.pb"] = f.read()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mutations", type=int, default=400, help="mutated files to write (default 400)")
    ap.add_argument("--no-node-tests", action="store_true", help="do not add ONNX node-test models")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    seeds = valid_models(a.seed)
    seeds.update(tensors(np.random.default_rng(a.seed + 1)))
    files = dict(seeds)
    rnd = random.Random(a.seed)
    base = sorted(seeds)
    for i in range(a.mutations):
        src = rnd.choice(base)
        data = seeds[src]
        for _ in range(rnd.choice([1, 1, 1, 2, 3])):
            data, kind = mutate(rnd, data)
        files[f"mut{i:04d}_{kind}_{src}"] = data
    files.update(arity_models())
    files.update(float_to_int_models())
    if not a.no_node_tests:
        files.update(node_test_seeds())
    for k, v in files.items():
        with open(os.path.join(a.out, k), "wb") as f:
            f.write(v)
    print(f"make_corpus: wrote {len(files)} files to {a.out}")


if __name__ == "__main__":
    main()
