#!/usr/bin/python3
"""Gradient-check models for pooling and normalisation ops (core/ops/pool.c + core/cpu/pool.c, core/ops/norm.c + core/cpu/norm.c).

Max pools get `X + P` as input, where P is a constant initializer holding a random permutation of
well-separated values (spacing 2.5 > the width of X's range): no two values of a window come
within the finite-difference step of each other, so the argmax never flips during the check.
BatchNormalization / InstanceNormalization parameters are float graph inputs (checked too); the
BN variance input is named *_pos so that it gets positive values.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_rng = np.random.RandomState(1234)


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _model(name, nodes, inputs, outputs, inits=(), opset=13):
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _separated(shape):
    n = int(np.prod(shape))
    vals = (_rng.permutation(n).astype(np.float32) * 2.5).reshape(shape)
    return numpy_helper.from_array(vals, "P")


def _pool(name, op, xshape, opset=13, separate=None, n_out=1, **attrs):
    if separate is None:
        separate = op in ("MaxPool", "GlobalMaxPool")
    nodes, inits = [], []
    src = "X"
    if separate:
        inits.append(_separated(xshape))
        nodes.append(helper.make_node("Add", ["X", "P"], ["XP"]))
        src = "XP"
    outs = ["Y"] + (["I"] if n_out > 1 else [])
    nodes.append(helper.make_node(op, [src], outs, **attrs))
    outputs = [_vi("Y", None)]
    if n_out > 1:
        outputs.append(helper.make_tensor_value_info("I", TensorProto.INT64, None))
    return name, _model(name, nodes, [_vi("X", xshape)], outputs, inits, opset)


def _bn(name, xshape, opset, **attrs):
    C = xshape[1] if attrs.get("spatial", 1) else None
    pshape = [C] if C is not None else xshape[1:]
    node = helper.make_node("BatchNormalization", ["X", "scale", "B", "mean", "var_pos"], ["Y"], **attrs)
    ins = [_vi("X", xshape), _vi("scale", pshape), _vi("B", pshape), _vi("mean", pshape), _vi("var_pos", pshape)]
    return name, _model(name, [node], ins, [_vi("Y", None)], opset=opset)


def _single(name, op, xname, xshape, extra_inputs=(), opset=13, **attrs):
    ins = [_vi(xname, xshape)] + [_vi(n, s) for n, s in extra_inputs]
    node = helper.make_node(op, [xname] + [n for n, _ in extra_inputs], ["Y"], **attrs)
    return name, _model(name, [node], ins, [_vi("Y", None)], opset=opset)


def models():
    # ---- MaxPool
    yield _pool("maxpool_2x2_s2", "MaxPool", [2, 3, 8, 8], kernel_shape=[2, 2], strides=[2, 2])
    yield _pool("maxpool_3x3_s2_pad1", "MaxPool", [1, 2, 9, 7], kernel_shape=[3, 3], strides=[2, 2],
                pads=[1, 1, 1, 1])
    yield _pool("maxpool_3x3_s1_overlap", "MaxPool", [1, 2, 6, 7], kernel_shape=[3, 3], strides=[1, 1])
    yield _pool("maxpool_ceil", "MaxPool", [1, 2, 7, 8], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    yield _pool("maxpool_pads_asym", "MaxPool", [1, 2, 6, 6], kernel_shape=[3, 2], strides=[2, 1],
                pads=[0, 1, 2, 0])
    yield _pool("maxpool_dilations", "MaxPool", [1, 2, 8, 9], kernel_shape=[2, 3], strides=[1, 2],
                dilations=[2, 2], pads=[1, 1, 1, 1])
    yield _pool("maxpool_same_upper", "MaxPool", [1, 2, 7, 7], kernel_shape=[3, 3], strides=[2, 2],
                auto_pad="SAME_UPPER")
    yield _pool("maxpool_same_lower", "MaxPool", [1, 2, 6, 5], kernel_shape=[2, 2], auto_pad="SAME_LOWER")
    yield _pool("maxpool_indices", "MaxPool", [1, 2, 6, 6], n_out=2, kernel_shape=[2, 2], strides=[2, 2])
    yield _pool("maxpool_1d", "MaxPool", [2, 3, 11], kernel_shape=[3], strides=[2], pads=[1, 1])
    yield _pool("maxpool_3d", "MaxPool", [1, 2, 5, 6, 5], kernel_shape=[2, 3, 2], strides=[2, 1, 2],
                pads=[0, 1, 1, 1, 1, 0])
    yield _pool("maxpool_opset8", "MaxPool", [1, 2, 6, 6], opset=8, kernel_shape=[2, 2], strides=[2, 2])
    # more than 255 taps per window: the saved argmax is int32 instead of uint8
    yield _pool("maxpool_wide_window", "MaxPool", [1, 2, 18, 19], kernel_shape=[16, 17], strides=[2, 2])
    # ---- AveragePool
    yield _pool("avgpool_2x2_s2", "AveragePool", [2, 3, 8, 8], kernel_shape=[2, 2], strides=[2, 2])
    yield _pool("avgpool_3x3_s1_pad1", "AveragePool", [1, 2, 7, 6], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    yield _pool("avgpool_3x3_pad_include", "AveragePool", [1, 2, 7, 6], kernel_shape=[3, 3],
                pads=[1, 2, 1, 0], strides=[2, 1], count_include_pad=1)
    yield _pool("avgpool_ceil", "AveragePool", [1, 2, 7, 8], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    yield _pool("avgpool_ceil_include_pad", "AveragePool", [1, 2, 8, 7], kernel_shape=[3, 2], strides=[2, 2],
                pads=[1, 0, 1, 1], ceil_mode=1, count_include_pad=1)
    yield _pool("avgpool_same_upper", "AveragePool", [1, 2, 7, 7], kernel_shape=[3, 3], strides=[2, 2],
                auto_pad="SAME_UPPER")
    yield _pool("avgpool_same_lower_include", "AveragePool", [1, 2, 6, 5], kernel_shape=[2, 3],
                auto_pad="SAME_LOWER", count_include_pad=1)
    yield _pool("avgpool_big_stride", "AveragePool", [1, 1, 11, 13], kernel_shape=[5, 5], strides=[3, 3])
    yield _pool("avgpool_1d", "AveragePool", [2, 2, 12], kernel_shape=[4], strides=[3], pads=[2, 1])
    yield _pool("avgpool_3d", "AveragePool", [1, 2, 5, 5, 6], kernel_shape=[2, 2, 3], strides=[1, 2, 2],
                pads=[1, 0, 1, 0, 1, 1])
    yield _pool("avgpool_opset7", "AveragePool", [1, 2, 6, 6], opset=7, kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                count_include_pad=1)
    # ---- global pools
    yield _pool("globalavgpool", "GlobalAveragePool", [2, 3, 5, 7])
    yield _pool("globalavgpool_3d", "GlobalAveragePool", [1, 2, 3, 4, 5])
    yield _pool("globalmaxpool", "GlobalMaxPool", [2, 3, 5, 7])
    yield _pool("globalmaxpool_1d", "GlobalMaxPool", [2, 2, 9])
    # ---- BatchNormalization (inference form)
    yield _bn("batchnorm_opset15", [2, 3, 4, 5], 15, epsilon=1e-3)
    yield _bn("batchnorm_opset14", [2, 4, 3, 3], 14)
    yield _bn("batchnorm_opset9", [3, 2, 5], 9)
    yield _bn("batchnorm_opset7", [2, 3, 4, 4], 7, epsilon=0.01)
    yield _bn("batchnorm_opset7_per_activation", [2, 3, 2, 2], 7, spatial=0)
    yield _bn("batchnorm_2d_input", [4, 5], 15)
    # ---- LRN
    for size in (3, 5):
        yield _single(f"lrn_size{size}", "LRN", "X", [2, 7, 3, 4], alpha=0.8, beta=0.75, bias=1.5, size=size)
    yield _single("lrn_size4_beta06", "LRN", "X", [1, 6, 3, 3], alpha=0.5, beta=0.6, bias=1.0, size=4)
    yield _single("lrn_size2_beta05", "LRN", "X", [1, 5, 2, 3], alpha=1.0, beta=0.5, bias=2.0, size=2)
    # ---- InstanceNormalization
    yield _single("instancenorm", "InstanceNormalization", "X", [2, 3, 4, 5], [("scale", [3]), ("B", [3])],
                  opset=6, epsilon=1e-3)
    yield _single("instancenorm_1d", "InstanceNormalization", "X", [2, 4, 7], [("scale", [4]), ("B", [4])],
                  opset=6)
    # ---- LpNormalization / MeanVarianceNormalization
    yield _single("lpnorm_p2_axis1", "LpNormalization", "X", [2, 4, 3], axis=1, p=2, opset=1)
    yield _single("lpnorm_p2_last", "LpNormalization", "X", [3, 5], opset=1)
    yield _single("lpnorm_p1", "LpNormalization", "X_pos", [3, 4], axis=0, p=1, opset=1)
    yield _single("mvn_default_axes", "MeanVarianceNormalization", "X", [2, 3, 3, 4])
    yield _single("mvn_axes_23", "MeanVarianceNormalization", "X", [2, 3, 4, 5], axes=[2, 3])
