#!/usr/bin/python3
"""Write a tiny feed-forward "style" network for the GIMP checks: RGB 0..255 in and out,
[1,3,H,W] -> [1,3,H,W], a 1x1 convolution that inverts the colours (y = 255 - x), so the
result of the plug-in's fast-style path is known exactly.  Usage: make_fast_style.py OUT.onnx"""
import sys
import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

w = numpy_helper.from_array((-np.eye(3, dtype=np.float32)).reshape(3, 3, 1, 1), "w")
b = numpy_helper.from_array(np.full(3, 255.0, dtype=np.float32), "b")
node = helper.make_node("Conv", ["input", "w", "b"], ["output"], kernel_shape=[1, 1])
g = helper.make_graph([node], "invert_style",
                      [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, "H", "W"])],
                      [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, "H", "W"])],
                      initializer=[w, b])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
m.ir_version = 8
onnx.checker.check_model(m)
onnx.save(m, sys.argv[1])
