#!/usr/bin/python3
"""Gradient-check models for elementwise ops and activations.

Add Sub Mul Div Pow PRelu Sum Identity Dropout Cast (core/ops/elementwise.c, core/cpu/elementwise.c) and
Relu LeakyRelu Elu Selu Sigmoid Tanh HardSigmoid HardSwish Softplus Softsign Mish
ThresholdedRelu Exp Log Sqrt Neg Abs Reciprocal Erf Gelu Clip Softmax LogSoftmax
(core/ops/activation.c, core/cpu/activation.c).

Float operands are graph inputs (so their gradients are checked, broadcast reductions
included).  Ops with kinks get their input from `spread`: X_pos (uniform [0.5, 1.5]) mapped
elementwise by a*x+b into chosen intervals that stay clear of the kinks, so central
differences never straddle a non-differentiable point.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT


def _vi(name, shape, t=F):
    return helper.make_tensor_value_info(name, t, shape)


def _model(name, nodes, inputs, outputs, inits=(), opset=13):
    g = helper.make_graph(nodes, name, [_vi(n, s) for n, s in inputs], [_vi(n, s) for n, s in outputs],
                          initializer=list(inits))
    return name, helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _const(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def spread(shape, intervals, out="S"):
    """Nodes/initializers mapping X_pos in [0.5, 1.5] to values in the given intervals (cycled)."""
    n = int(np.prod(shape))
    a = np.empty(n, np.float32)
    b = np.empty(n, np.float32)
    for i in range(n):
        lo, hi = intervals[i % len(intervals)]
        a[i] = hi - lo
        b[i] = lo - 0.5 * (hi - lo)
    inits = [_const("sp_a", a.reshape(shape)), _const("sp_b", b.reshape(shape))]
    nodes = [helper.make_node("Mul", ["X_pos", "sp_a"], ["sp_m"]), helper.make_node("Add", ["sp_m", "sp_b"], [out])]
    return nodes, inits


def binary(name, op, a, b, out, an="A", bn="B", opset=13):
    return _model(name, [helper.make_node(op, [an, bn], ["Y"])], [(an, a), (bn, b)], [("Y", out)], opset=opset)


def unary(name, op, shape, opset=13, inp="X", **attrs):
    return _model(name, [helper.make_node(op, [inp], ["Y"], **attrs)], [(inp, shape)], [("Y", shape)], opset=opset)


def unary_spread(name, op, shape, intervals, opset=13, **attrs):
    nodes, inits = spread(shape, intervals)
    nodes.append(helper.make_node(op, ["S"], ["Y"], **attrs))
    return _model(name, nodes, [("X_pos", shape)], [("Y", shape)], inits, opset=opset)


SIGNED = [(-1.0, -0.1), (0.1, 1.0)]


def models():
    s4 = [2, 3, 4, 5]
    # --- Add / Sub / Mul / Div with broadcasting
    for op in ("Add", "Sub", "Mul"):
        lo = op.lower()
        yield binary(f"{lo}_same", op, s4, s4, s4)
        yield binary(f"{lo}_bias", op, s4, [1, 3, 1, 1], s4)
        yield binary(f"{lo}_chan3d", op, s4, [3, 1, 1], s4)
        yield binary(f"{lo}_scalar", op, s4, [], s4)
        yield binary(f"{lo}_scalar_left", op, [], s4, s4)
        yield binary(f"{lo}_lastdim", op, s4, [5], s4)
        yield binary(f"{lo}_both", op, [3, 1, 5], [4, 1], [3, 4, 5])
        yield binary(f"{lo}_rows", op, [2, 3, 1, 5], [1, 1, 4, 1], [2, 3, 4, 5])
    yield binary("div_same", "Div", s4, s4, s4, bn="B_pos")
    yield binary("div_bias", "Div", s4, [1, 3, 1, 1], s4, bn="B_pos")
    yield binary("div_scalar", "Div", s4, [], s4, bn="B_pos")
    yield binary("div_num_bcast", "Div", [1, 3, 1, 1], s4, s4, bn="B_pos")
    yield binary("div_both", "Div", [3, 1, 5], [4, 1], [3, 4, 5], bn="B_pos")
    # larger tensors: parallel broadcast and reduction paths
    yield binary("add_bias_big", "Add", [2, 8, 48, 48], [1, 8, 1, 1], [2, 8, 48, 48])
    yield binary("mul_bias_big", "Mul", [2, 8, 48, 48], [1, 8, 1, 1], [2, 8, 48, 48])
    yield binary("mul_plane_big", "Mul", [2, 8, 48, 48], [1, 1, 48, 48], [2, 8, 48, 48])
    yield binary("sub_scalar_big", "Sub", [2, 8, 48, 48], [], [2, 8, 48, 48])
    yield binary("add_lastdim_big", "Add", [4, 96, 100], [100], [4, 96, 100])
    # same tensor on both sides (gradient accumulation)
    yield _model("mul_self", [helper.make_node("Mul", ["X", "X"], ["Y"])], [("X", s4)], [("Y", s4)])
    # --- Pow (gradient w.r.t. the base; exponent is a constant)
    for nm, e in (("sq", 2.0), ("sqrt", 0.5), ("gen", 2.7), ("neg", -1.3)):
        yield _model(f"pow_{nm}", [helper.make_node("Pow", ["X_pos", "E"], ["Y"])], [("X_pos", s4)], [("Y", s4)],
                     [_const("E", np.float32(e))])
    yield _model("pow_vec", [helper.make_node("Pow", ["X_pos", "E"], ["Y"])], [("X_pos", s4)], [("Y", s4)],
                 [_const("E", np.array([1.5, 2.0, 3.0, 0.5, -0.7], np.float32))])
    yield _model("pow_int_exp", [helper.make_node("Pow", ["X", "E"], ["Y"])], [("X", s4)], [("Y", s4)],
                 [_const("E", np.int64(3))], opset=15)
    # --- PRelu (slope gradient too)
    for nm, sl in (("chan", [3, 1, 1]), ("scalar", [1]), ("last", [5]), ("full", s4)):
        nodes, inits = spread(s4, SIGNED)
        nodes.append(helper.make_node("PRelu", ["S", "slope"], ["Y"]))
        yield _model(f"prelu_{nm}", nodes, [("X_pos", s4), ("slope", sl)], [("Y", s4)], inits)
    nodes, inits = spread(s4, SIGNED)
    nodes.append(helper.make_node("PRelu", ["S", "slope"], ["Y"]))
    yield _model("prelu_opset6_chan", nodes, [("X_pos", s4), ("slope", [3])], [("Y", s4)], inits, opset=6)
    # --- Sum
    yield _model("sum_three_bcast", [helper.make_node("Sum", ["A", "B", "C"], ["Y"])],
                 [("A", [2, 3, 4]), ("B", [3, 1]), ("C", [4])], [("Y", [2, 3, 4])])
    yield _model("sum_one", [helper.make_node("Sum", ["A"], ["Y"])], [("A", s4)], [("Y", s4)])
    yield _model("sum_two_same", [helper.make_node("Sum", ["A", "B"], ["Y"])], [("A", s4), ("B", s4)], [("Y", s4)])
    # --- Identity / Dropout / Cast
    yield unary("identity", "Identity", s4)
    yield _model("dropout13_ratio", [helper.make_node("Dropout", ["X", "r"], ["Y"])], [("X", s4)], [("Y", s4)],
                 [_const("r", np.float32(0.3))])
    yield _model("dropout13_mask", [helper.make_node("Dropout", ["X"], ["Y", "M"])], [("X", s4)], [("Y", s4)])
    yield unary("dropout10_attr", "Dropout", s4, opset=10, ratio=0.4)
    yield unary("cast_float", "Cast", s4, to=TensorProto.FLOAT)
    # --- activations with kinks: inputs kept away from them
    yield unary_spread("relu", "Relu", s4, SIGNED)
    yield unary_spread("leakyrelu", "LeakyRelu", s4, SIGNED, alpha=0.1)
    yield unary_spread("leakyrelu_default", "LeakyRelu", s4, SIGNED)
    yield unary_spread("leakyrelu_negalpha", "LeakyRelu", s4, SIGNED, alpha=-0.3)
    yield unary_spread("elu", "Elu", s4, [(-2.0, -0.1), (0.1, 1.5)])
    yield unary_spread("elu_alpha", "Elu", s4, [(-2.0, -0.1), (0.1, 1.5)], alpha=0.4)
    yield unary_spread("selu", "Selu", s4, [(-2.0, -0.1), (0.1, 1.5)])
    yield unary_spread("selu_attrs", "Selu", s4, [(-2.0, -0.1), (0.1, 1.5)], alpha=2.0, gamma=3.0)
    yield unary_spread("hardsigmoid", "HardSigmoid", s4, [(-4.0, -2.7), (-2.3, 2.3), (2.7, 4.0)])
    yield unary_spread("hardsigmoid_attrs", "HardSigmoid", s4, [(-2.0, -1.1), (-0.9, 0.9), (1.1, 2.0)],
                       alpha=0.5, beta=0.5)
    yield unary_spread("hardswish", "HardSwish", s4, [(-4.5, -3.2), (-2.8, 2.8), (3.2, 4.5)], opset=14)
    yield unary_spread("thresholdedrelu", "ThresholdedRelu", s4, [(-1.0, 0.9), (1.1, 2.0)], opset=10)
    yield unary_spread("abs", "Abs", s4, SIGNED)
    yield unary_spread("relu_big", "Relu", [2, 8, 48, 48], SIGNED)
    # Clip: opset 6 attributes, opset 11+ optional inputs
    clipiv = [(-2.5, -1.5), (-0.8, 0.8), (1.5, 2.5)]
    yield unary_spread("clip_attrs6", "Clip", s4, clipiv, opset=6, min=-1.0, max=1.0)
    for nm, ins, vals in (("minmax", ["S", "lo", "hi"], (-1.0, 1.0)), ("min_only", ["S", "lo"], (-1.0, None)),
                          ("max_only", ["S", "", "hi"], (None, 1.0)), ("none", ["S"], (None, None))):
        nodes, inits = spread(s4, clipiv)
        nodes.append(helper.make_node("Clip", ins, ["Y"]))
        if vals[0] is not None: inits.append(_const("lo", np.float32(vals[0])))
        if vals[1] is not None: inits.append(_const("hi", np.float32(vals[1])))
        yield _model(f"clip13_{nm}", nodes, [("X_pos", s4)], [("Y", s4)], inits)
    # --- smooth activations
    for op in ("Sigmoid", "Tanh", "Softplus", "Softsign", "Exp", "Neg", "Erf"):
        yield unary(op.lower(), op, s4)
    yield unary("mish", "Mish", s4, opset=18)
    # Gelu (opset 20): exact (erf) and tanh, over [-6, 6] (both tails of the CDF)
    yield unary_spread("gelu", "Gelu", s4, [(-6.0, -2.0), (-2.0, 2.0), (2.0, 6.0)], opset=20)
    yield unary_spread("gelu_tanh", "Gelu", s4, [(-6.0, -2.0), (-2.0, 2.0), (2.0, 6.0)], opset=20,
                       approximate="tanh")
    yield unary("gelu_big", "Gelu", [2, 8, 48, 48], opset=20)
    yield unary("tanh_big", "Tanh", [2, 8, 48, 48])
    yield unary("sigmoid_big", "Sigmoid", [2, 8, 48, 48])
    for op in ("Log", "Sqrt", "Reciprocal"):
        yield unary(op.lower(), op, s4, inp="X_pos")
    # --- Softmax / LogSoftmax
    for op in ("Softmax", "LogSoftmax"):
        lo = op.lower()
        yield unary(f"{lo}_o11_axis1", op, [2, 3, 4], opset=11, axis=1)
        yield unary(f"{lo}_o11_default", op, [2, 3, 4], opset=11)
        yield unary(f"{lo}_o11_axis0", op, [2, 3, 4], opset=11, axis=0)
        yield unary(f"{lo}_o13_axis1", op, [2, 3, 4], axis=1)
        yield unary(f"{lo}_o13_default", op, [2, 3, 4])
        yield unary(f"{lo}_o13_axis0", op, [2, 3, 4], axis=0)
        yield unary(f"{lo}_o13_neg2", op, [2, 3, 4, 5], axis=-2)
        yield unary(f"{lo}_o13_chan_wide", op, [2, 4, 9, 10], axis=1)
        yield unary(f"{lo}_o13_big", op, [2, 16, 40, 40], axis=1)
        yield unary(f"{lo}_o13_rows_big", op, [64, 1000])
