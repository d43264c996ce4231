#!/usr/bin/python3
"""Count convolution FLOPs of an ONNX model from its (inferred) shapes.

Usage: /usr/bin/python3 bench/conv_flops.py MODEL.onnx [N,C,H,W]
Prints `conv_gflop_fwd=<x> conv_gflop_fwd_bwd=<y> convs=<n> conv3x3s1_gflop_fwd=<z>`: forward FLOPs are
2*K*(C/group)*kh*kw*OH*OW*N per Conv; fwd+bwd counts the input-gradient convolution too (x2).
"""
import sys

import onnx
from onnx import helper, shape_inference


def conv_flops(path, shape=None):
    m = onnx.load(path)
    if shape:
        dims = m.graph.input[0].type.tensor_type.shape.dim
        for d, v in zip(dims, shape):
            d.ClearField("dim_param")
            d.dim_value = v
    m = shape_inference.infer_shapes(m)
    shapes = {}
    for vi in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    for t in m.graph.initializer:
        shapes[t.name] = list(t.dims)
    total = wino = 0.0
    n = 0
    for node in m.graph.node:
        if node.op_type != "Conv":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        w = shapes[node.input[1]]
        y = shapes[node.output[0]]
        k, cg, kh, kw = w
        f = 2.0 * k * cg * kh * kw * y[0] * y[2] * y[3]
        total += f
        n += 1
        if (kh, kw) == (3, 3) and list(attrs.get("strides", [1, 1])) == [1, 1] and \
                list(attrs.get("dilations", [1, 1])) == [1, 1] and attrs.get("group", 1) == 1:
            wino += f
    return total, n, wino


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: conv_flops.py MODEL.onnx [N,C,H,W]")
    shape = [int(v) for v in sys.argv[2].split(",")] if len(sys.argv) > 2 else None
    total, n, wino = conv_flops(sys.argv[1], shape)
    print("conv_gflop_fwd=%.3f conv_gflop_fwd_bwd=%.3f convs=%d conv3x3s1_gflop_fwd=%.3f" %
          (total * 1e-9, 2 * total * 1e-9, n, wino * 1e-9))


if __name__ == "__main__":
    main()
