#!/usr/bin/python3
"""Cases for tests/test_backend_ops.c (run at test time: gen.py OUTDIR).

Writes into OUTDIR:
  cases.tsv   one case a line: OP <TAB> CASE <TAB> MODE <TAB> MODEL [<TAB> INPUT.pb ...]
              MODE is "grad" (forward + backward at every float input) or "fwd" (forward only).
              Without INPUT.pb files the C program fills every input from its declared shape
              (uniform [-1, 1], [0.5, 1.5] for names ending in "_pos", as `cnnfx check-grad`).
  probes.tsv  OP <TAB> MODEL: a one-node model per ONNX operator (default domain) so that the C
              program can ask cnnfx_model_load which operators the core registers.
Sources: the models of tests/gradcheck/gen_*.py (mode grad), one model per com.microsoft quantized
operator plus CastLike float -> float (quant_models, mode grad) and, for operators that those do not
cover, up to MAX_NODE_CASES data sets of ONNX's node tests (Debian libonnx-testdata, mode fwd; cases
in types cnnfx does not run are left out).
"""
import glob, importlib.util, os, sys

import onnx
from onnx import helper, TensorProto

HERE = os.path.dirname(os.path.abspath(__file__))
GRADCHECK = os.path.join(HERE, "..", "gradcheck")
NODE_DATA = "/usr/share/libonnx-testdata/data/node"
MAX_NODE_CASES = 3
BAD_TYPES = {TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.STRING, TensorProto.BOOL,
             TensorProto.COMPLEX64, TensorProto.COMPLEX128}
EXTRA_OPS = ["Mish", "Gelu", "QLinearAdd", "QLinearMul", "QLinearAveragePool", "QLinearGlobalAveragePool",
             "QLinearConcat", "QLinearLeakyRelu", "QLinearSigmoid", "QGemm", "FusedConv", "FusedGemm"]


def load(path):
    spec = importlib.util.spec_from_file_location("gc_" + os.path.basename(path)[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main_op(model):
    """The operator a gradcheck model tests: the last node that is not a spread helper
    (gen_elementwise.spread: Mul(X_pos, sp_a) -> sp_m, Add(sp_m, sp_b) -> S)."""
    nodes = [n for n in model.graph.node
             if n.op_type != "Constant" and not any(t.startswith("sp_") for t in list(n.input) + list(n.output))]
    return nodes[-1].op_type if nodes else None


def quant_models():
    """One com.microsoft quantized operator each, between QuantizeLinear and DequantizeLinear (+ CastLike)."""
    import numpy as np
    from onnx import numpy_helper
    rng = np.random.default_rng(11)
    res = []

    def build(op, name, shapes, body, out_scale=0.02, out_zp=128):
        inits, nodes, k = [], [], [0]

        def c(arr):
            k[0] += 1
            nm = f"c{k[0]}"
            inits.append(numpy_helper.from_array(np.asarray(arr), nm))
            return nm

        def q(x, s, zp):
            k[0] += 1
            nodes.append(helper.make_node("QuantizeLinear", [x, c(np.float32(s)), c(np.uint8(zp))], [f"q{k[0]}"]))
            return f"q{k[0]}"
        y = body(c, q, nodes)
        nodes.append(helper.make_node("DequantizeLinear", [y, c(np.float32(out_scale)), c(np.uint8(out_zp))], ["Y"]))
        g = helper.make_graph(nodes, name, [helper.make_tensor_value_info(f"X{i}", TensorProto.FLOAT, sh)
                                            for i, sh in enumerate(shapes)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.microsoft", 1)])
        m.ir_version = 7
        res.append((op, name, m))

    ms = dict(domain="com.microsoft")
    f32, u8 = np.float32, np.uint8

    def binary(op):
        def body(c, q, nodes):
            nodes.append(helper.make_node(op, [q("X0", 0.01, 128), c(f32(0.01)), c(u8(128)), q("X1", 0.015, 120),
                                               c(f32(0.015)), c(u8(120)), c(f32(0.02)), c(u8(128))], ["y"], **ms))
            return "y"
        return body
    build("QLinearAdd", "qlinear_add", [[1, 3, 4, 5], [1, 3, 4, 5]], binary("QLinearAdd"))
    build("QLinearMul", "qlinear_mul_bcast", [[1, 3, 4, 5], [1, 3, 1, 1]], binary("QLinearMul"), 0.002)

    def unary(op, **attrs):
        def body(c, q, nodes):
            nodes.append(helper.make_node(op, [q("X0", 0.01, 128), c(f32(0.01)), c(u8(128)), c(f32(0.02)), c(u8(128))],
                                          ["y"], **ms, **attrs))
            return "y"
        return body
    build("QLinearLeakyRelu", "qlinear_leakyrelu", [[1, 2, 5, 6]], unary("QLinearLeakyRelu", alpha=0.1))
    build("QLinearSigmoid", "qlinear_sigmoid", [[1, 2, 5, 6]], unary("QLinearSigmoid"), 1 / 256, 0)
    build("QLinearAveragePool", "qlinear_avgpool", [[1, 3, 6, 6]],
          unary("QLinearAveragePool", kernel_shape=[2, 2], strides=[2, 2]))
    build("QLinearGlobalAveragePool", "qlinear_globalavgpool", [[1, 3, 5, 4]], unary("QLinearGlobalAveragePool"))

    def concat(c, q, nodes):
        nodes.append(helper.make_node("QLinearConcat", [c(f32(0.02)), c(u8(128)), q("X0", 0.01, 128), c(f32(0.01)),
                                                        c(u8(128)), q("X1", 0.02, 100), c(f32(0.02)), c(u8(100))],
                                      ["y"], axis=1, **ms))
        return "y"
    build("QLinearConcat", "qlinear_concat", [[1, 2, 3, 4], [1, 3, 3, 4]], concat)

    def qgemm(c, q, nodes):
        w = rng.integers(-100, 100, (6, 8)).astype(np.int8)
        xq = q("X0", 0.02, 128)
        nodes.append(helper.make_node("QGemm", [xq, c(f32(0.02)), c(u8(128)), c(w),
                                                c(rng.uniform(0.003, 0.006, 6).astype(f32)), c(np.zeros(6, np.int8)),
                                                c(rng.integers(-500, 500, 6).astype(np.int32)), c(f32(0.05)),
                                                c(u8(128))], ["y"], transB=1, **ms))
        return "y"
    build("QGemm", "qgemm_transb", [[2, 8]], qgemm, 0.05)
    # CastLike float -> float (ONNX's node tests only cast between other types)
    g = helper.make_graph([helper.make_node("CastLike", ["X0", "like"], ["Y"])], "castlike_f32",
                          [helper.make_tensor_value_info("X0", TensorProto.FLOAT, [2, 3, 4])],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 3, 4])],
                          [numpy_helper.from_array(np.zeros([1], np.float32), "like")])
    res.append(("CastLike", "castlike_f32",
                helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)], ir_version=8)))
    return res


def main():
    out = sys.argv[1]
    os.makedirs(os.path.join(out, "grad"), exist_ok=True)
    os.makedirs(os.path.join(out, "probe"), exist_ok=True)
    lines = []
    covered = set()
    sys.path.insert(0, GRADCHECK)
    for g in sorted(glob.glob(os.path.join(GRADCHECK, "gen_*.py"))):
        group = os.path.basename(g)[4:-3]
        for name, model in load(g).models():
            op = main_op(model)
            if op is None:
                continue
            p = os.path.join(out, "grad", f"{group}__{name}.onnx")
            onnx.save(model, p)
            lines.append([op, f"{group}/{name}", "grad", p])
            covered.add(op)
    # com.microsoft quantized operators (tests/test_quant_ops.py runs them in whole networks), CastLike
    for op, name, model in quant_models():
        p = os.path.join(out, "grad", f"extra__{name}.onnx")
        onnx.save(model, p)
        lines.append([op, f"extra/{name}", "grad", p])
        covered.add(op)
    # forward-only cases from ONNX's node tests for operators the gradcheck models miss
    per_op = {}
    if os.path.isdir(NODE_DATA):
        for d in sorted(glob.glob(os.path.join(NODE_DATA, "test_*"))):
            if d.endswith("_expanded") or "_expanded_" in os.path.basename(d):
                continue
            mp = os.path.join(d, "model.onnx")
            ds = os.path.join(d, "test_data_set_0")
            if not os.path.isfile(mp) or not os.path.isdir(ds):
                continue
            try:
                m = onnx.load(mp, load_external_data=False)
            except Exception:
                continue
            if len(m.graph.node) != 1 or m.graph.node[0].domain not in ("", "ai.onnx"):
                continue
            op = m.graph.node[0].op_type
            # cnnfx runs float32 and integer tensors only: a case in another type tests nothing
            if any(v.type.tensor_type.elem_type in BAD_TYPES for v in list(m.graph.input) + list(m.graph.output)):
                continue
            if op in covered or per_op.get(op, 0) >= MAX_NODE_CASES:
                continue
            n_in = len(m.graph.input) - len({i.name for i in m.graph.initializer})
            pbs = [os.path.join(ds, f"input_{i}.pb") for i in range(n_in)]
            if not all(os.path.isfile(p) for p in pbs):
                continue
            per_op[op] = per_op.get(op, 0) + 1
            lines.append([op, "node/" + os.path.basename(d), "fwd", mp] + pbs)
    with open(os.path.join(out, "cases.tsv"), "w") as f:
        for l in lines:
            f.write("\t".join(l) + "\n")
    # one probe model per ONNX operator of the default domain (opset 13 where it exists)
    # plus the operators of the cases and operators this onnx package may not know (newer opsets,
    # com.microsoft quantized ones: cnnfx looks them up by op_type)
    probes = []
    arity = {}
    for s in onnx.defs.get_all_schemas_with_history():
        if s.domain in ("", "ai.onnx") and s.name not in arity:
            arity[s.name] = (max(s.min_input, 1), max(s.min_output, 1))
    for op in sorted({l[0] for l in lines} | set(EXTRA_OPS)):
        arity.setdefault(op, (8, 1))
    for name, (n_in, n_out) in sorted(arity.items()):
        ins = [f"x{i}" for i in range(n_in)]
        outs = [f"y{i}" for i in range(n_out)]
        node = helper.make_node(name, ins, outs)
        g = helper.make_graph([node], "probe_" + name,
                              [helper.make_tensor_value_info(i, TensorProto.FLOAT, [1]) for i in ins],
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, [1]) for o in outs])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
        p = os.path.join(out, "probe", name + ".onnx")
        onnx.save(m, p)
        probes.append((name, p))
    with open(os.path.join(out, "probes.tsv"), "w") as f:
        for op, p in sorted(probes):
            f.write(f"{op}\t{p}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
