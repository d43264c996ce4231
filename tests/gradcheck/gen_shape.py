#!/usr/bin/python3
"""Gradient-check models for the shape and linalg groups (core/ops/shape.c + core/cpu/shape.c, core/ops/linalg.c + core/cpu/linalg.c).

models() yields (name, onnx.ModelProto): small graphs whose float graph inputs are all checked
by `cnnfx check-grad`; int64 helper inputs (shapes, axes, pads, indices) are initializers.
"""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT


def _model(name, nodes, inputs, outputs, inits=(), opset=13):
    g = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, F, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, F, None) for n in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def i64(*v):
    return np.array(v, dtype=np.int64)


def single(name, op, inputs, inits=(), opset=13, outputs=("y",), node_inputs=None, **attrs):
    ins = node_inputs if node_inputs is not None else [n for n, _ in inputs] + [k for k, _ in inits]
    node = helper.make_node(op, ins, list(outputs), **attrs)
    return name, _model(name, [node], inputs, list(outputs), inits, opset)


def models():
    # ---- Concat / Split
    yield single("concat_axis1", "Concat", [("a", [2, 3, 4]), ("b", [2, 1, 4]), ("c", [2, 2, 4])], axis=1)
    yield single("concat_axis_neg1", "Concat", [("a", [2, 3]), ("b", [2, 5])], axis=-1)
    yield single("concat_axis0_opset7", "Concat", [("a", [1, 3]), ("b", [2, 3])], opset=7, axis=0)
    yield single("split_input", "Split", [("x", [2, 7, 3])], [("split", i64(2, 4, 1))], outputs=("y0", "y1", "y2"),
                 axis=1)
    yield single("split_attr_opset11", "Split", [("x", [6, 2])], opset=11, outputs=("y0", "y1"), split=[1, 5])
    yield single("split_equal", "Split", [("x", [2, 6])], outputs=("y0", "y1", "y2"), axis=-1)
    # one output unused: its gradient is absent
    yield "split_partial", _model("split_partial", [
        helper.make_node("Split", ["x"], ["y0", "y1"], axis=0),
        helper.make_node("Flatten", ["y1"], ["z"], axis=0),
    ], [("x", [4, 3])], ["z"])

    # ---- Flatten / Reshape / Squeeze / Unsqueeze
    yield single("flatten_axis2", "Flatten", [("x", [2, 3, 4, 5])], axis=2)
    yield single("flatten_axis0", "Flatten", [("x", [2, 3, 4])], axis=0)
    yield single("reshape_zero_neg", "Reshape", [("x", [2, 3, 4])], [("shape", i64(0, -1, 2))])
    yield single("reshape_allowzero", "Reshape", [("x", [2, 3, 4])], [("shape", i64(4, 3, 2))], opset=14,
                 allowzero=1)
    yield single("squeeze_input", "Squeeze", [("x", [1, 3, 1, 4])], [("axes", i64(0, -2))])
    yield single("squeeze_attr_opset11", "Squeeze", [("x", [3, 1, 4])], opset=11, axes=[1])
    yield single("squeeze_all", "Squeeze", [("x", [1, 3, 1, 4])])
    yield single("unsqueeze_input", "Unsqueeze", [("x", [3, 4])], [("axes", i64(0, -1))])
    yield single("unsqueeze_attr_opset11", "Unsqueeze", [("x", [3, 4])], opset=11, axes=[1])

    # ---- Transpose
    yield single("transpose_nchw_nhwc", "Transpose", [("x", [2, 3, 4, 5])], perm=[0, 2, 3, 1])
    yield single("transpose_default", "Transpose", [("x", [3, 4, 5])])
    yield single("transpose_big_tiles", "Transpose", [("x", [37, 41])], perm=[1, 0])
    yield single("transpose_6d_pixelshuffle", "Transpose", [("x", [1, 2, 2, 2, 3, 3])], perm=[0, 1, 4, 2, 5, 3])

    # ---- Slice
    yield single("slice_steps", "Slice", [("x", [6, 7, 5])],
                 [("starts", i64(1, -1, 0)), ("ends", i64(6, -8, 100)), ("axes", i64(0, 1, 2)),
                  ("steps", i64(2, -2, 1))])
    yield single("slice_default_axes", "Slice", [("x", [5, 6])], [("starts", i64(1, 2)), ("ends", i64(-1, 1000))])
    yield single("slice_neg_axis_clamp", "Slice", [("x", [4, 9])],
                 [("starts", i64(-100)), ("ends", i64(-3)), ("axes", i64(-1))])
    yield single("slice_reverse", "Slice", [("x", [4, 5])],
                 [("starts", i64(-1)), ("ends", i64(-(2**63))), ("axes", i64(1)), ("steps", i64(-1))])
    yield single("slice_opset9_attrs", "Slice", [("x", [4, 6])], opset=9, starts=[1, 0], ends=[3, -1], axes=[0, 1])

    # ---- Gather (scatter-add backward: repeated and negative indices)
    yield single("gather_axis0_repeat", "Gather", [("x", [5, 3])], [("idx", i64(0, 4, -1, 0, 2))], axis=0)
    yield single("gather_axis1_2d", "Gather", [("x", [2, 5, 3])], [("idx", np.array([[1, 1], [-5, 3]], np.int64))],
                 axis=1)
    yield single("gather_scalar_idx", "Gather", [("x", [3, 4])], [("idx", np.array(2, np.int64))], axis=-1)

    # ---- Pad
    yield single("pad_constant_value_input", "Pad", [("x", [1, 2, 3, 4]), ("value", [])],
                 [("pads", i64(0, 0, 1, 2, 0, 1, 2, 0))], node_inputs=["x", "pads", "value"], mode="constant")
    yield single("pad_constant_negative", "Pad", [("x", [3, 5])], [("pads", i64(1, -2, -1, 3))], mode="constant")
    yield single("pad_reflect", "Pad", [("x", [1, 2, 4, 5])], [("pads", i64(0, 0, 3, 2, 0, 0, 2, 4))],
                 mode="reflect")
    yield single("pad_reflect_3d", "Pad", [("x", [2, 3, 4])], [("pads", i64(1, 2, 0, 2, 1, 3))], mode="reflect")
    yield single("pad_edge", "Pad", [("x", [1, 2, 3, 4])], [("pads", i64(0, 1, 2, 3, 0, 2, 1, 2))], mode="edge")
    yield single("pad_reflect_opset10_attr", "Pad", [("x", [1, 1, 4, 4])], opset=10, mode="reflect",
                 pads=[0, 0, 2, 2, 0, 0, 2, 2])
    yield single("pad_constant_opset2_attr", "Pad", [("x", [2, 3])], opset=2, pads=[1, 0, 0, 2], value=1.5)
    yield single("pad_edge_axes_opset18", "Pad", [("x", [2, 3, 4])], [("pads", i64(1, 2, 3, 0)),
                                                                       ("axes", i64(-1, 0))],
                 node_inputs=["x", "pads", "", "axes"], opset=18, mode="edge")

    # ---- ReduceMean
    yield single("reducemean_hw_keep", "ReduceMean", [("x", [2, 3, 4, 5])], axes=[2, 3])
    yield single("reducemean_c_nokeep", "ReduceMean", [("x", [2, 3, 4])], axes=[1], keepdims=0)
    yield single("reducemean_all", "ReduceMean", [("x", [2, 3, 4])], keepdims=0)
    yield single("reducemean_neg_axes", "ReduceMean", [("x", [2, 3, 4, 5])], axes=[-1, 1])
    yield single("reducemean_opset18_input", "ReduceMean", [("x", [3, 4, 5])], [("axes", i64(0, 2))], opset=18,
                 keepdims=0)
    yield single("reducemean_opset18_noop", "ReduceMean", [("x", [3, 4])], opset=18, noop_with_empty_axes=1)

    # ---- Expand
    yield single("expand_bcast", "Expand", [("x", [3, 1])], [("shape", i64(2, 3, 4))])
    yield single("expand_shape_smaller", "Expand", [("x", [2, 1, 3])], [("shape", i64(4, 1))])

    # ---- Shape-computation chain as exported by PyTorch: flatten via Shape/Gather/Unsqueeze/Concat/Reshape
    yield "pytorch_flatten_chain", _model("pytorch_flatten_chain", [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax0"], ["nu"]),
        helper.make_node("Concat", ["nu", "minus1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ], [("x", [2, 3, 4])], ["y"], [("zero", np.array(0, np.int64)), ("ax0", i64(0)), ("minus1", i64(-1))])
    yield "constantofshape_expand", _model("constantofshape_expand", [
        helper.make_node("Shape", ["x"], ["s"], start=1),
        helper.make_node("ConstantOfShape", ["s"], ["ones"],
                         value=helper.make_tensor("v", F, [1], [2.0])),
        helper.make_node("Unsqueeze", ["ones", "ax0"], ["ones3"]),
        helper.make_node("Expand", ["x", "eshape"], ["e"]),
        helper.make_node("Concat", ["e", "ones3"], ["y"], axis=0),
    ], [("x", [1, 3, 4])], ["y"], [("ax0", i64(0)), ("eshape", i64(2, 1, 1))], opset=15)

    # ---- Bigger tensors (> 32768 elements) so the parallel and tiled code paths are checked too
    B = [2, 8, 48, 50]
    yield single("big_transpose", "Transpose", [("x", B)], perm=[0, 2, 3, 1])
    yield single("big_transpose_back", "Transpose", [("x", [2, 48, 50, 8])], perm=[0, 3, 1, 2])
    yield single("big_pad_reflect", "Pad", [("x", B)], [("pads", i64(0, 0, 5, 7, 0, 0, 6, 4))], mode="reflect")
    yield single("big_pad_edge", "Pad", [("x", B)], [("pads", i64(0, 1, 2, 3, 0, 0, 1, 2))], mode="edge")
    yield single("big_slice", "Slice", [("x", B)], [("starts", i64(-3, 1)), ("ends", i64(0, 49)),
                                                    ("axes", i64(2, 3)), ("steps", i64(-2, 3))])
    yield single("big_concat", "Concat", [("a", B), ("b", [2, 3, 48, 50])], axis=1)
    yield single("big_gather", "Gather", [("x", B)], [("idx", i64(3, 1, 1, -1))], axis=1)
    yield single("big_gather_axis0", "Gather", [("x", [6, 40, 200])], [("idx", i64(5, 0, 5))], axis=0)
    yield single("big_reducemean_c", "ReduceMean", [("x", B)], axes=[1])
    yield single("big_reducemean_hw", "ReduceMean", [("x", B)], axes=[2, 3], keepdims=0)
    yield single("big_expand", "Expand", [("x", [1, 8, 1, 50])], [("shape", i64(2, 8, 48, 50))])
    yield single("big_split", "Split", [("x", B)], [("split", i64(20, 28))], outputs=("y0", "y1"), axis=2)

    # ---- Gemm: all operands (A, B weights, C bias) are checked
    for ta in (0, 1):
        for tb in (0, 1):
            a = [4, 3] if ta else [3, 4]
            b = [5, 4] if tb else [4, 5]
            yield single(f"gemm_ta{ta}_tb{tb}", "Gemm", [("a", a), ("b", b), ("c", [5])], transA=ta, transB=tb,
                         alpha=0.7, beta=1.3)
    yield single("gemm_c_matrix", "Gemm", [("a", [3, 4]), ("b", [4, 5]), ("c", [3, 5])], beta=0.5)
    yield single("gemm_c_column", "Gemm", [("a", [3, 4]), ("b", [4, 5]), ("c", [3, 1])])
    yield single("gemm_c_scalar", "Gemm", [("a", [3, 4]), ("b", [4, 5]), ("c", [])], beta=2.0)
    yield single("gemm_c_row2d", "Gemm", [("a", [3, 4]), ("b", [5, 4]), ("c", [1, 5])], transB=1)
    yield single("gemm_no_c", "Gemm", [("a", [3, 4]), ("b", [4, 5])], alpha=2.0)

    # ---- MatMul
    yield single("matmul_2d", "MatMul", [("a", [3, 4]), ("b", [4, 5])])
    yield single("matmul_3d_x_2d", "MatMul", [("a", [2, 3, 4]), ("b", [4, 5])])
    yield single("matmul_batched", "MatMul", [("a", [2, 3, 4]), ("b", [2, 4, 5])])
    yield single("matmul_broadcast", "MatMul", [("a", [2, 1, 3, 4]), ("b", [3, 4, 2])])
    yield single("matmul_2d_x_3d", "MatMul", [("a", [3, 4]), ("b", [2, 4, 5])])
    yield single("matmul_1d_x_2d", "MatMul", [("a", [4]), ("b", [4, 5])])
    yield single("matmul_3d_x_1d", "MatMul", [("a", [2, 3, 4]), ("b", [4])])
    yield single("matmul_1d_x_1d", "MatMul", [("a", [4]), ("b", [4])])


if __name__ == "__main__":
    for n, m in models():
        print(n, len(m.graph.node))
