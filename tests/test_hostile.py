#!/usr/bin/python3
"""Hostile ONNX files: `cnnfx info` and `cnnfx check-onnx` must fail cleanly, never crash.

    /usr/bin/python3 tests/test_hostile.py --cnnfx BUILD/batch/cnnfx [--flips 2000] [--seed 1]
                                          [--timeout 60] [-j 2] [--keep DIR] [--quick]

Cases (from small valid models built here with onnx.helper):
  * every truncation length of a small model (and of its input_0.pb);
  * --flips seeded random bit flips (1-3 bits per file) of the model, plus some of input_0.pb;
  * oversized / negative / overflowing dimensions in initializers, Constant values, declared
    graph-input shapes and input_0.pb; raw_data / float_data shorter or longer than the dims;
  * huge declared length prefixes, overlong varints, deep nesting, random garbage, empty file;
  * a graph with a cycle, a node reading an undefined tensor, an unsupported op (the message
    must name it), a tensor produced twice, no outputs, external data, sparse initializers;
  * double / string / bool graph inputs and input_0.pb tensors of the wrong type.
Each file is run through `cnnfx info MODEL` and `cnnfx check-onnx DIR`.  Every run must
  - exit 0 or 1 (no signal, no abort, nothing > 1), within --timeout seconds;
  - print no sanitizer report (AddressSanitizer / LeakSanitizer / "runtime error:") and no
    GLib-CRITICAL / GLib-WARNING;
  - when it fails (exit 1), say why (a non-empty "cnnfx: ..." / "FAIL ...: reason" message);
  - for the cases that must be rejected, exit 1 with the expected words in the message.
Final line: "N passed, M failed"; exit status 1 on any failure.
Non-sanitizer builds run under RLIMIT_AS (--rlimit-gb, default 8) so that a model declaring a
huge input fails with an allocation error instead of exhausting the machine.
"""
import argparse
import concurrent.futures as cf
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# ("WARNING: AddressSanitizer failed to allocate" is expected: allocator_may_return_null=1)
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "ThreadSanitizer",
                   "MemorySanitizer", "-CRITICAL **", "-WARNING **", "Segmentation fault")

# ---- model builders ----------------------------------------------------------------------------


def vi(name, shape, dt=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dt, shape)


def mk(nodes, inputs, outputs, inits=(), opset=13):
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    return m


def base_model():
    """Small conv+relu+pool+gemm model (about 400 bytes) with a declared static input."""
    rng = np.random.default_rng(0)
    W = rng.uniform(-1, 1, (2, 1, 2, 2)).astype(np.float32)
    G = rng.uniform(-1, 1, (3, 8)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], kernel_shape=[2, 2], pads=[0, 0, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "G"], ["y"], transB=1),
    ]
    inits = [numpy_helper.from_array(W, "W"),
             helper.make_tensor("G", TensorProto.FLOAT, G.shape, G.flatten().tolist())]
    return mk(nodes, [vi("x", [1, 1, 4, 4])], [vi("y", [1, 3])], inits)


def base_input():
    x = np.random.default_rng(1).uniform(-1, 1, (1, 1, 4, 4)).astype(np.float32)
    return numpy_helper.from_array(x, "x").SerializeToString()


def base_output():
    return numpy_helper.from_array(np.zeros((1, 3), np.float32), "y").SerializeToString()


def relu_model(in_type=TensorProto.FLOAT, shape=(1, 2, 2, 2), opset=13):
    return mk([helper.make_node("Relu", ["x"], ["y"])], [vi("x", list(shape), in_type)],
              [vi("y", list(shape), in_type)], opset=opset)


def with_init(t, name="W"):
    """base model whose initializer W is replaced by TensorProto t."""
    m = base_model()
    t.name = name
    for i, x in enumerate(m.graph.initializer):
        if x.name == name:
            m.graph.initializer[i].CopyFrom(t)
    return m


def tensor(dims, dtype=TensorProto.FLOAT, raw=None, floats=None, ints=None):
    t = TensorProto()
    t.dims.extend(dims)
    t.data_type = dtype
    if raw is not None:
        t.raw_data = raw
    if floats is not None:
        t.float_data.extend(floats)
    if ints is not None:
        t.int64_data.extend(ints)
    return t


def varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


# ---- cases -----------------------------------------------------------------------------------

class Case:
    __slots__ = ("name", "model", "inp", "expect", "must_fail")

    def __init__(self, name, model, inp=None, expect=None, must_fail=False):
        self.name = name
        self.model = model if isinstance(model, (bytes, bytearray)) else model.SerializeToString()
        self.inp = inp
        self.expect = expect        # substring(s) the error message must contain (case-insensitive)
        self.must_fail = must_fail or expect is not None


def dense_lengths(n, quick):
    if not quick or n <= 600:
        return list(range(n))
    return sorted(set(list(range(256)) + list(range(256, n, 7)) + [n - k for k in range(1, 16)]))


def flip(rnd, data, nbits):
    b = bytearray(data)
    for _ in range(nbits):
        i = rnd.randrange(len(b))
        b[i] ^= 1 << rnd.randrange(8)
    return bytes(b)


def build_cases(a):
    rnd = random.Random(a.seed)
    M = base_model()
    mb = M.SerializeToString()
    xin = base_input()
    cases = [Case("valid_base", mb)]

    # truncations
    for n in dense_lengths(len(mb), a.quick):
        cases.append(Case(f"trunc_model_{n}", mb[:n]))  # a cut at a field boundary may still load
    for n in range(len(xin)):
        cases.append(Case(f"trunc_input_{n}", mb, inp=xin[:n]))

    # bit flips
    for i in range(a.flips):
        cases.append(Case(f"flip_model_{i}", flip(rnd, mb, rnd.choice([1, 1, 2, 3]))))
    for i in range(max(1, a.flips // 10)):
        cases.append(Case(f"flip_input_{i}", mb, inp=flip(rnd, xin, rnd.choice([1, 2]))))

    # oversized / negative / overflowing dims in an initializer
    big = {
        "dim_2p40": [2 ** 40], "dim_2p40_4d": [2, 1, 2 ** 40, 2], "dim_neg": [2, 1, -2, 2],
        "dim_neg_all": [-1], "dim_prod_overflow": [2 ** 32, 2 ** 32, 2 ** 32],
        "dim_prod_wrap_to_small": [2 ** 62, 4, 1, 1], "dim_int64_max": [2 ** 63 - 1],
        "dim_rank9": [1] * 9, "dim_rank100": [1] * 100, "dim_zero": [2, 1, 0, 2],
    }
    for nm, dims in big.items():
        cases.append(Case(f"init_{nm}_raw", with_init(tensor(dims, raw=b"\0" * 16)), must_fail=True))
        cases.append(Case(f"init_{nm}_floats", with_init(tensor(dims, floats=[0.0] * 4)), must_fail=True))
        cases.append(Case(f"input_pb_{nm}", mb, inp=tensor(dims, raw=b"\0" * 16).SerializeToString(),
                          must_fail=True))
        const = mk([helper.make_node("Constant", [], ["k"], value=tensor(dims, raw=b"\0" * 16)),
                    helper.make_node("Add", ["x", "k"], ["y"])], [vi("x", [2, 2])], [vi("y", [2, 2])])
        cases.append(Case(f"constant_{nm}", const, must_fail=True))
    cases.append(Case("init_raw_short", with_init(tensor([2, 1, 2, 2], raw=b"\0" * 12)), expect="W"))
    cases.append(Case("init_raw_long", with_init(tensor([2, 1, 2, 2], raw=b"\0" * 36)), expect="W"))
    cases.append(Case("init_raw_odd", with_init(tensor([2, 1, 2, 2], raw=b"\0" * 33)), must_fail=True))
    cases.append(Case("init_raw_huge_dims_tiny_data", with_init(tensor([1 << 20, 1 << 20], raw=b"\0" * 4)),
                      must_fail=True))
    cases.append(Case("init_floats_short", with_init(tensor([2, 1, 2, 2], floats=[1.0] * 7)), expect="W"))
    cases.append(Case("init_int64_as_weight", with_init(tensor([2, 1, 2, 2], TensorProto.INT64, ints=[1] * 8))))
    cases.append(Case("init_no_dtype", with_init(tensor([2, 1, 2, 2], 0, raw=b"\0" * 32)), must_fail=True))
    cases.append(Case("init_dtype_999", with_init(tensor([2, 1, 2, 2], 999, raw=b"\0" * 32)), must_fail=True))
    for dt, nm, size in ((TensorProto.DOUBLE, "double", 8), (TensorProto.FLOAT16, "float16", 2),
                         (TensorProto.STRING, "string", 0), (TensorProto.BOOL, "bool", 1),
                         (TensorProto.COMPLEX64, "complex64", 8), (TensorProto.BFLOAT16, "bfloat16", 2),
                         (TensorProto.UINT64, "uint64", 8), (TensorProto.INT8, "int8", 1)):
        t = tensor([2, 1, 2, 2], dt)
        if dt == TensorProto.STRING:
            t.string_data.extend([b"a"] * 8)
        else:
            t.raw_data = b"\x01" * (8 * size)
        cases.append(Case(f"init_{nm}", with_init(t)))
    ext = tensor([2, 1, 2, 2])
    ext.data_location = TensorProto.EXTERNAL
    ext.external_data.add(key="location", value="../../../../etc/passwd")
    cases.append(Case("init_external_data", with_init(ext), expect="external"))
    noname = base_model()
    noname.graph.initializer[0].name = ""
    cases.append(Case("init_without_name", noname, must_fail=True))

    # declared graph-input shapes (info / check-grad allocate from these)
    for nm, dims in (("decl_2p40", [1, 3, 2 ** 40, 2 ** 40]), ("decl_neg", [1, -7, 4, 4]),
                     ("decl_16g", [1, 1, 65536, 65536]), ("decl_2p62", [2 ** 62]),
                     ("decl_rank12", [1] * 12), ("decl_zero", [0, 2, 2, 2])):
        m = relu_model(shape=(1, 2, 2, 2))
        del m.graph.input[0].type.tensor_type.shape.dim[:]
        for d in dims:
            m.graph.input[0].type.tensor_type.shape.dim.add().dim_value = d
        cases.append(Case(f"input_{nm}", m))

    # raw protobuf nastiness
    huge = field(7, 2, b"")[:1] + varint(2 ** 62) + b"\x0a\x00"
    cases += [
        Case("empty_file", b"", expect="empty"),
        Case("one_byte", b"\x08", must_fail=True),
        Case("zeros_1k", b"\0" * 1024, must_fail=True),
        Case("ff_1k", b"\xff" * 1024, must_fail=True),
        Case("graph_len_2p62", huge, must_fail=True),
        Case("graph_len_2p64m1", b"\x3a" + b"\xff" * 9 + b"\x01" + b"\x0a\x00", must_fail=True),
        Case("graph_len_past_end", b"\x3a\x10\x0a\x02\x08\x01", must_fail=True),
        Case("varint_overlong", b"\x08" + b"\x80" * 20 + b"\x01", must_fail=True),
        Case("group_wiretype", b"\x3b\x3c", must_fail=True),
        Case("field_zero", b"\x02\x00", must_fail=True),
        Case("text_file", b"ir_version: 7\ngraph { node { op_type: \"Relu\" } }\n", must_fail=True),
        Case("gzip_magic", b"\x1f\x8b\x08\x00" + bytes(range(256)), must_fail=True),
        Case("two_graphs", mb + field(7, 2, M.graph.SerializeToString()), must_fail=True),
        Case("no_graph", field(1, 0, varint(7)) + field(8, 2, field(2, 0, varint(13))), expect="graph"),
    ]
    nested = b""
    for _ in range(20000):
        nested = field(7, 2, nested)
    cases.append(Case("nested_graph_20000", nested, must_fail=True))
    # node -> attribute -> tensor, each level's length wrong by one
    node = field(4, 2, b"Relu") + field(1, 2, b"x") + field(2, 2, b"y")
    attr = field(1, 2, b"alpha") + field(5, 2, field(1, 0, varint(2 ** 40)) + field(2, 0, varint(1)))
    g = field(1, 2, node + field(5, 2, attr)) + field(11, 2, field(1, 2, b"x")) + field(12, 2, field(1, 2, b"y"))
    cases.append(Case("attr_tensor_2p40", field(7, 2, g), must_fail=True))
    good = field(8, 2, field(2, 0, varint(13))) + field(7, 2, g)
    for k in range(1, 30):
        b = bytearray(good)
        if k < len(b) and b[k] < 0x7F:
            b[k] += 1
            cases.append(Case(f"len_plus1_at_{k}", bytes(b)))
    for i in range(40):
        n = rnd.choice([1, 7, 64, 500, 4096, 65536])
        cases.append(Case(f"garbage_{i}_{n}", bytes(rnd.randrange(256) for _ in range(n))))
    # valid wire format, random field numbers and nesting
    for i in range(40):
        def rmsg(depth):
            out = b""
            for _ in range(rnd.randint(0, 6)):
                f = rnd.choice([1, 2, 3, 4, 5, 7, 8, 9, 11, 12, 20, 1000])
                w = rnd.choice([0, 2, 2, 5, 1])
                if w == 0:
                    out += field(f, 0, varint(rnd.choice([0, 1, 7, 2 ** 31, 2 ** 63, -1])))
                elif w == 5:
                    out += field(f, 5, rnd.randbytes(4))
                elif w == 1:
                    out += field(f, 1, rnd.randbytes(8))
                else:
                    out += field(f, 2, rmsg(depth + 1) if depth < 6 and rnd.random() < 0.6 else rnd.randbytes(rnd.randint(0, 9)))
            return out
        cases.append(Case(f"wire_random_{i}", field(7, 2, rmsg(0))))

    # graph-level semantic errors
    cyc = mk([helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
              helper.make_node("Relu", ["a"], ["y"])], [vi("x", [2])], [vi("y", [2])])
    cases.append(Case("cycle", cyc, expect="cycle"))
    self_loop = mk([helper.make_node("Add", ["x", "y"], ["y"])], [vi("x", [2])], [vi("y", [2])])
    cases.append(Case("self_loop", self_loop, must_fail=True))
    undef = mk([helper.make_node("Add", ["x", "nowhere_tensor"], ["y"])], [vi("x", [2])], [vi("y", [2])])
    cases.append(Case("undefined_input", undef, expect="nowhere_tensor"))
    undef_out = mk([helper.make_node("Relu", ["x"], ["r"])], [vi("x", [2])], [vi("ghost_output", [2])])
    cases.append(Case("undefined_output", undef_out, expect="ghost_output"))
    unsup = mk([helper.make_node("FrobnicateZz", ["x"], ["y"])], [vi("x", [2])], [vi("y", [2])])
    cases.append(Case("unsupported_op", unsup, expect="FrobnicateZz"))
    unsup_dom = mk([helper.make_node("Relu", ["x"], ["y"], domain="com.example.evil")], [vi("x", [2])],
                   [vi("y", [2])])
    unsup_dom.opset_import.append(helper.make_opsetid("com.example.evil", 1))
    cases.append(Case("unsupported_domain", unsup_dom, expect="com.example.evil"))
    twice = mk([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Sigmoid", ["x"], ["y"])],
               [vi("x", [2])], [vi("y", [2])])
    cases.append(Case("produced_twice", twice, expect="twice"))
    noout = mk([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [2])], [])
    cases.append(Case("no_outputs", noout, expect="output"))
    noop = mk([helper.make_node("Relu", ["x"], ["y"])], [vi("x", [2])], [vi("y", [2])])
    noop.graph.node[0].op_type = ""
    cases.append(Case("empty_op_type", noop, must_fail=True))
    sub = mk([helper.make_node("If", ["c"], ["y"], then_branch=helper.make_graph([], "t", [], []),
                               else_branch=helper.make_graph([], "e", [], []))],
             [vi("c", [], TensorProto.BOOL)], [vi("y", [2])])
    cases.append(Case("control_flow_if", sub, expect="If"))
    sparse = relu_model()
    sp = sparse.graph.sparse_initializer.add()
    sp.values.CopyFrom(tensor([1], floats=[1.0]))
    sp.values.name = "s"
    sp.dims.extend([4])
    cases.append(Case("sparse_initializer", sparse, expect="sparse"))
    bad_const = mk([helper.make_node("Constant", [], ["k"]), helper.make_node("Add", ["x", "k"], ["y"])],
                   [vi("x", [2])], [vi("y", [2])])
    cases.append(Case("constant_without_value", bad_const, must_fail=True))
    const_sparse = mk([helper.make_node("Constant", [], ["k"], value_string="hello"),
                       helper.make_node("Add", ["x", "k"], ["y"])], [vi("x", [2])], [vi("y", [2])])
    cases.append(Case("constant_string", const_sparse, must_fail=True))
    many_in = mk([helper.make_node("Sum", ["x"] * 100, ["y"])], [vi("x", [2])], [vi("y", [2])])
    cases.append(Case("sum_100_inputs", many_in))
    many_out = mk([helper.make_node("Split", ["x"], [f"o{i}" for i in range(100)], axis=0)],
                  [vi("x", [100])], [vi("o0", [1])], opset=11)
    cases.append(Case("split_100_outputs", many_out))
    conv_bad = mk([helper.make_node("Conv", ["x", "W"], ["y"], kernel_shape=[3, 3], strides=[0, 0],
                                    pads=[-5, -5, 2 ** 40, 1], dilations=[0, -1], group=0)],
                  [vi("x", [1, 1, 4, 4])], [vi("y", [1, 1, 4, 4])],
                  [numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "W")])
    cases.append(Case("conv_bad_attrs", conv_bad))
    pool_bad = mk([helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[2 ** 40, 0], strides=[-1, 1])],
                  [vi("x", [1, 1, 4, 4])], [vi("y", [1, 1, 4, 4])])
    cases.append(Case("pool_bad_attrs", pool_bad))
    reshape_big = mk([helper.make_node("Reshape", ["x", "s"], ["y"])], [vi("x", [2, 2])], [vi("y", [4])],
                     [numpy_helper.from_array(np.array([2 ** 40, 2 ** 40], np.int64), "s")])
    cases.append(Case("reshape_to_huge", reshape_big, must_fail=True))
    expand_big = mk([helper.make_node("Expand", ["x", "s"], ["y"])], [vi("x", [1])], [vi("y", [4])],
                    [numpy_helper.from_array(np.array([1 << 31, 1 << 31], np.int64), "s")])
    cases.append(Case("expand_to_huge", expand_big, must_fail=True))

    # types of graph inputs / input data
    for dt, nm in ((TensorProto.DOUBLE, "double"), (TensorProto.STRING, "string"), (TensorProto.BOOL, "bool"),
                   (TensorProto.INT32, "int32"), (TensorProto.UINT8, "uint8"), (TensorProto.FLOAT16, "float16")):
        cases.append(Case(f"graph_input_{nm}", relu_model(dt)))
    rl = relu_model()
    for nm, arr in (("double", np.ones((1, 2, 2, 2), np.float64)), ("bool", np.ones((1, 2, 2, 2), bool)),
                    ("int64", np.ones((1, 2, 2, 2), np.int64)), ("int32", np.ones((1, 2, 2, 2), np.int32)),
                    ("uint8", np.ones((1, 2, 2, 2), np.uint8)), ("float16", np.ones((1, 2, 2, 2), np.float16)),
                    ("wrong_shape", np.ones((3, 5), np.float32)), ("scalar", np.array(1.0, np.float32))):
        cases.append(Case(f"input_data_{nm}", rl, inp=numpy_helper.from_array(arr, "x").SerializeToString()))
    st = tensor([1, 2, 2, 2], TensorProto.STRING)
    st.string_data.extend([b"x"] * 8)
    cases.append(Case("input_data_string", rl, inp=st.SerializeToString()))
    # a float tensor where an op reads int64 (shape / axes inputs fed from the data set)
    rs = mk([helper.make_node("Reshape", ["x", "s"], ["y"])], [vi("x", [2, 2]), vi("s", [2], TensorProto.INT64)],
            [vi("y", [4])])
    cases.append(Case("reshape_shape_input_float", rs,
                      inp=numpy_helper.from_array(np.ones((2, 2), np.float32), "x").SerializeToString()))
    return cases


# ---- running ---------------------------------------------------------------------------------

def is_sanitized(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return b"__asan_init" in data or b"__ubsan_handle" in data or b"__tsan_init" in data
    except OSError:
        return False


def make_env(sanitized):
    env = dict(os.environ)
    # Models claiming huge tensors must get a clean NULL from malloc, not an ASan abort.
    asan = env.get("ASAN_OPTIONS", "")
    for opt in ("allocator_may_return_null=1", "max_allocation_size_mb=4096"):
        if opt.split("=")[0] not in asan:
            asan = (asan + ":" if asan else "") + opt
    env["ASAN_OPTIONS"] = asan
    env.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env["G_DEBUG"] = "fatal-criticals"
    return env


def run_one(cmd, env, timeout, rlimit):
    def pre():
        os.setsid()
        if rlimit:
            resource.setrlimit(resource.RLIMIT_AS, (rlimit, rlimit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=pre)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return None, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), time.monotonic() - t0
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), time.monotonic() - t0


def judge(case, kind, rc, out, err, timeout):
    both = out + err
    if rc is None:
        return f"timed out after {timeout}s"
    if rc < 0:
        return f"killed by signal {-rc} ({signal.Signals(-rc).name})"
    if rc not in (0, 1):
        return f"exit status {rc}"
    for mark in SANITIZER_MARKS:
        if mark in both:
            return f"sanitizer/GLib report ({mark!r})"
    if rc == 1:
        if kind == "info":
            msg = [l for l in err.splitlines() if l.startswith("cnnfx: ") and len(l.strip()) > 8]
            if not msg:
                return "exit 1 without a 'cnnfx: ...' error message on stderr"
        else:
            fails = [l for l in out.splitlines() if l.startswith("FAIL ")]
            if not fails or not all(":" in l and l.split(":", 1)[1].strip() for l in fails):
                return "exit 1 without 'FAIL ...: reason' lines"
    if case.must_fail and rc == 0 and not (kind == "info" and case.inp is not None):
        return "accepted a file that must be rejected"
    if case.expect and rc == 1:
        exp = [case.expect] if isinstance(case.expect, str) else case.expect
        for e in exp:
            if e.lower() not in both.lower():
                return f"error message does not mention {e!r}"
    return None


def run_case(a, case, tmp, env, rlimit):
    d = os.path.join(tmp, case.name)
    os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
    mp = os.path.join(d, "model.onnx")
    with open(mp, "wb") as f:
        f.write(case.model)
    with open(os.path.join(d, "test_data_set_0", "input_0.pb"), "wb") as f:
        f.write(case.inp if case.inp is not None else base_input())
    with open(os.path.join(d, "test_data_set_0", "output_0.pb"), "wb") as f:
        f.write(base_output())
    results = []
    for kind, cmd in (("info", [a.cnnfx, "info", mp]), ("check-onnx", [a.cnnfx, "check-onnx", d])):
        rc, out, err, dt = run_one(cmd, env, a.timeout, rlimit)
        why = judge(case, kind, rc, out, err, a.timeout)
        results.append((case.name, kind, why, rc, out, err, dt))
    if all(r[2] is None for r in results):
        shutil.rmtree(d, ignore_errors=True)
    elif a.keep:
        shutil.copytree(d, os.path.join(a.keep, case.name), dirs_exist_ok=True)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cnnfx", required=True)
    ap.add_argument("--flips", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=None, help="seconds per run (default 30, 120 if sanitized)")
    ap.add_argument("-j", "--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)))
    ap.add_argument("--keep", help="copy failing cases into this directory")
    ap.add_argument("--quick", action="store_true", help="sampled truncations, 200 flips")
    ap.add_argument("--rlimit-gb", type=float, default=8.0, help="address-space limit for non-sanitized runs (0=off)")
    ap.add_argument("--only", help="run only cases whose name contains this")
    a = ap.parse_args()
    if a.quick and a.flips == 2000:
        a.flips = 200
    if not os.access(a.cnnfx, os.X_OK):
        print(f"test_hostile: {a.cnnfx} is not executable")
        print("0 passed, 1 failed")
        return 1
    sanitized = is_sanitized(a.cnnfx)
    if a.timeout is None:
        a.timeout = 120.0 if sanitized else 30.0
    rlimit = 0 if sanitized or a.rlimit_gb <= 0 else int(a.rlimit_gb * (1 << 30))
    env = make_env(sanitized)
    cases = build_cases(a)
    if a.only:
        cases = [c for c in cases if a.only in c.name]
    if a.keep:
        os.makedirs(a.keep, exist_ok=True)
    print(f"test_hostile: {len(cases)} files x 2 commands, {a.jobs} jobs, timeout {a.timeout:g}s"
          f"{', sanitizer build' if sanitized else ''}{', RLIMIT_AS %.0f GiB' % a.rlimit_gb if rlimit else ''}",
          flush=True)
    passed = failed = 0
    slowest = (0.0, "")
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cnnfx-hostile-") as tmp:
        with cf.ThreadPoolExecutor(a.jobs) as ex:
            futs = [ex.submit(run_case, a, c, tmp, env, rlimit) for c in cases]
            for fu in cf.as_completed(futs):
                for name, kind, why, rc, out, err, dt in fu.result():
                    if dt > slowest[0]:
                        slowest = (dt, f"{name} ({kind})")
                    if why is None:
                        passed += 1
                        continue
                    failed += 1
                    print(f"FAIL {name} [{kind}]: {why}")
                    tail = (out + err).strip().splitlines()[-12:]
                    for l in tail:
                        print(f"    | {l[:300]}")
                    sys.stdout.flush()
    print(f"test_hostile: {time.monotonic() - t0:.0f}s, slowest run {slowest[0]:.1f}s: {slowest[1]}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0  # nothing checked is a failure


if __name__ == "__main__":
    sys.exit(main())
