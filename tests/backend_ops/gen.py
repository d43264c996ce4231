#!/usr/bin/python3
"""Cases for tests/test_backend_ops.c (run at test time: gen.py OUTDIR).

Writes into OUTDIR:
  cases.tsv   one case a line: OP <TAB> CASE <TAB> MODE <TAB> MODEL [<TAB> INPUT.pb ...]
              MODE is "grad" (forward + backward at every float input) or "fwd" (forward only).
              Without INPUT.pb files the C program fills every input from its declared shape
              (uniform [-1, 1], [0.5, 1.5] for names ending in "_pos", as `cnnfx check-grad`).
  probes.tsv  OP <TAB> MODEL: a one-node model per ONNX operator (default domain) so that the C
              program can ask cnnfx_model_load which operators the core registers.
Sources: the models of tests/gradcheck/gen_*.py (mode grad) and, for operators that those do not
cover, up to MAX_NODE_CASES data sets of ONNX's node tests (Debian libonnx-testdata, mode fwd).
"""
import glob, importlib.util, os, sys

import onnx
from onnx import helper, TensorProto

HERE = os.path.dirname(os.path.abspath(__file__))
GRADCHECK = os.path.join(HERE, "..", "gradcheck")
NODE_DATA = "/usr/share/libonnx-testdata/data/node"
MAX_NODE_CASES = 3
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
