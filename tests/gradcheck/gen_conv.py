#!/usr/bin/python3
"""Gradient-check models for Conv and ConvTranspose.

X, W and (optionally) B are float graph inputs, so check-grad verifies dX, dW and dB.
"""
import onnx
from onnx import TensorProto, helper


def _conv_out(n, k, s, d, pb, pe):
    return (n + pb + pe - ((k - 1) * d + 1)) // s + 1


def _model(name, op, xshape, wshape, bias, attrs, yshape):
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, xshape),
              helper.make_tensor_value_info("W", TensorProto.FLOAT, wshape)]
    names = ["X", "W"]
    if bias:
        inputs.append(helper.make_tensor_value_info("B", TensorProto.FLOAT, [bias]))
        names.append("B")
    node = helper.make_node(op, names, ["Y"], **attrs)
    out = helper.make_tensor_value_info("Y", TensorProto.FLOAT, yshape)
    g = helper.make_graph([node], name, inputs, [out])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def conv(name, x, w, bias=True, strides=None, pads=None, dil=None, group=1, auto_pad=None):
    nsp = len(x) - 2
    s = strides or [1] * nsp
    d = dil or [1] * nsp
    p = pads or [0] * (2 * nsp)
    attrs = {"group": group}
    if strides: attrs["strides"] = strides
    if pads: attrs["pads"] = pads
    if dil: attrs["dilations"] = dil
    if auto_pad: attrs["auto_pad"] = auto_pad
    y = [x[0], w[0]]
    for i in range(nsp):
        k = w[2 + i]
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            y.append(-(-x[2 + i] // s[i]))
        elif auto_pad == "VALID":
            y.append(_conv_out(x[2 + i], k, s[i], d[i], 0, 0))
        else:
            y.append(_conv_out(x[2 + i], k, s[i], d[i], p[i], p[nsp + i]))
    return name, _model(name, "Conv", x, w, w[0] if bias else 0, attrs, y)


def convt(name, x, w, bias=True, strides=None, pads=None, dil=None, group=1, output_padding=None,
          output_shape=None, auto_pad=None):
    nsp = len(x) - 2
    s = strides or [1] * nsp
    d = dil or [1] * nsp
    p = pads or [0] * (2 * nsp)
    op = output_padding or [0] * nsp
    attrs = {"group": group}
    for k, v in (("strides", strides), ("pads", pads), ("dilations", dil), ("output_padding", output_padding),
                 ("output_shape", output_shape), ("auto_pad", auto_pad)):
        if v: attrs[k] = v
    M = w[1] * group
    y = [x[0], M]
    for i in range(nsp):
        if output_shape:
            y.append(output_shape[i])
        elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            y.append(x[2 + i] * s[i])
        else:
            y.append(s[i] * (x[2 + i] - 1) + op[i] + (w[2 + i] - 1) * d[i] + 1 - p[i] - p[nsp + i])
    return name, _model(name, "ConvTranspose", x, w, M if bias else 0, attrs, y)


def models():
    # --- Conv 2-D
    yield conv("conv3x3_pad1", [1, 3, 7, 9], [5, 3, 3, 3], pads=[1, 1, 1, 1])
    # Winograd takes 3x3 stride-1 layers with >= 16 channels in and out and >= 256 outputs
    yield conv("conv3x3_s1_wino", [1, 16, 17, 19], [24, 16, 3, 3], pads=[1, 1, 1, 1])
    yield conv("conv3x3_s1_nopad_wino", [2, 16, 19, 18], [16, 16, 3, 3])
    yield conv("conv3x3_s1_asym_wino", [1, 16, 18, 21], [16, 16, 3, 3], pads=[0, 2, 1, 0])
    yield conv("conv3x3_s1_groups_wino", [1, 32, 16, 16], [32, 16, 3, 3], group=2, pads=[1, 1, 1, 1])
    yield conv("conv3x3_s1_small", [1, 8, 9, 6], [6, 8, 3, 3], pads=[0, 2, 1, 0])
    yield conv("conv_nobias", [1, 4, 6, 6], [3, 4, 3, 3], bias=False, pads=[1, 1, 1, 1])
    yield conv("conv_batch2", [2, 3, 6, 5], [4, 3, 3, 3], pads=[1, 0, 1, 0])
    yield conv("conv_stride2", [1, 3, 9, 8], [4, 3, 3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    yield conv("conv_stride_asym_pads", [1, 2, 8, 7], [3, 2, 3, 2], strides=[2, 3], pads=[0, 1, 2, 1])
    yield conv("conv_dilation2", [1, 2, 9, 10], [3, 2, 3, 3], dil=[2, 2], pads=[2, 1, 2, 1])
    yield conv("conv_dil_stride", [1, 2, 11, 9], [3, 2, 3, 2], dil=[2, 3], strides=[2, 1], pads=[1, 1, 0, 2])
    yield conv("conv_groups2", [1, 4, 6, 7], [6, 2, 3, 3], group=2, pads=[1, 1, 1, 1])
    yield conv("conv_groups3_stride2", [2, 6, 7, 7], [9, 2, 2, 3], group=3, strides=[2, 2])
    yield conv("conv_depthwise3x3", [1, 5, 8, 9], [5, 1, 3, 3], group=5, pads=[1, 1, 1, 1])
    yield conv("conv_depthwise3x3_s2", [2, 4, 9, 8], [4, 1, 3, 3], group=4, strides=[2, 2], pads=[1, 1, 1, 1])
    yield conv("conv_depthwise_mult2", [1, 3, 7, 7], [6, 1, 3, 3], group=3, pads=[0, 1, 1, 0])
    yield conv("conv_depthwise5x5_dil", [1, 3, 11, 10], [3, 1, 5, 5], group=3, dil=[2, 1], pads=[4, 2, 4, 2])
    yield conv("conv_depthwise_same_upper", [1, 4, 8, 7], [4, 1, 3, 3], group=4, strides=[2, 2],
               auto_pad="SAME_UPPER")
    yield conv("conv_1x1", [1, 6, 5, 7], [4, 6, 1, 1])
    yield conv("conv_1x1_groups", [2, 6, 4, 5], [4, 6 // 2, 1, 1], group=2)
    yield conv("conv_1x1_stride2", [1, 5, 7, 8], [3, 5, 1, 1], strides=[2, 2])
    yield conv("conv_1x1_pad", [1, 3, 4, 5], [2, 3, 1, 1], pads=[1, 0, 0, 1])
    yield conv("conv_same_upper_s2", [1, 3, 7, 8], [4, 3, 3, 3], strides=[2, 2], auto_pad="SAME_UPPER")
    yield conv("conv_same_lower_s2_k4", [1, 2, 8, 7], [3, 2, 4, 4], strides=[2, 2], auto_pad="SAME_LOWER")
    yield conv("conv_same_upper_k2", [1, 2, 6, 5], [3, 2, 2, 2], auto_pad="SAME_UPPER")
    yield conv("conv_valid", [1, 2, 7, 6], [3, 2, 3, 2], strides=[1, 2], auto_pad="VALID")
    yield conv("conv5x5", [1, 3, 9, 8], [4, 3, 5, 5], pads=[2, 2, 2, 2])
    # --- Conv 1-D / 3-D
    yield conv("conv1d", [2, 3, 11], [4, 3, 3], pads=[1, 2], strides=[2])
    yield conv("conv1d_dil_groups", [1, 4, 12], [6, 2, 3], group=2, dil=[2], pads=[2, 2])
    yield conv("conv3d", [1, 2, 5, 6, 5], [3, 2, 3, 3, 3], pads=[1, 1, 1, 1, 1, 1])
    yield conv("conv3d_stride_groups", [1, 4, 6, 5, 7], [4, 2, 2, 3, 3], group=2, strides=[2, 1, 2],
               pads=[0, 1, 1, 1, 0, 0])
    # --- ConvTranspose
    yield convt("convt_basic", [1, 3, 4, 5], [3, 2, 3, 3])
    yield convt("convt_3x3_s1_pad1", [1, 8, 9, 7], [8, 6, 3, 3], pads=[1, 1, 1, 1])
    yield convt("convt_3x3_s1_wino", [1, 16, 17, 18], [16, 16, 3, 3], pads=[1, 0, 1, 2])
    yield convt("convt_stride2_outpad", [1, 3, 4, 5], [3, 4, 3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                output_padding=[1, 1])
    yield convt("convt_stride_asym", [2, 2, 3, 4], [2, 3, 3, 2], strides=[3, 2], pads=[0, 1, 2, 0])
    yield convt("convt_groups2", [1, 4, 4, 4], [4, 3, 3, 3], group=2, strides=[2, 2])
    yield convt("convt_depthwise", [1, 3, 5, 5], [3, 1, 3, 3], group=3, strides=[2, 2], pads=[1, 1, 1, 1])
    yield convt("convt_dilation", [1, 2, 4, 4], [2, 2, 2, 2], dil=[2, 2], bias=False)
    yield convt("convt_output_shape", [1, 2, 3, 3], [2, 3, 3, 3], strides=[3, 2], output_shape=[10, 8])
    yield convt("convt_same_upper", [1, 2, 3, 4], [2, 2, 3, 3], strides=[2, 2], auto_pad="SAME_UPPER")
    yield convt("convt_1x1", [1, 5, 4, 3], [5, 3, 1, 1])
    yield convt("convt1d", [1, 3, 5], [3, 2, 4], strides=[2], pads=[1, 0])
    yield convt("convt3d", [1, 2, 3, 3, 4], [2, 2, 3, 2, 3], strides=[2, 1, 2], pads=[1, 0, 0, 0, 1, 1])


if __name__ == "__main__":
    for n, m in models():
        onnx.checker.check_model(m)
        print(n)
