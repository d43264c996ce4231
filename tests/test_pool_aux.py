#!/usr/bin/python3
"""MaxPool aux (saved argmax) vs recomputed argmax: runs test_pool_aux on MaxPool shapes covering the
narrow (uint8) and wide (int32, > 255 taps) aux, fused 2/3-wide rows, the generic tap path, 1-D/3-D,
padding, ceil mode, dilation and the Indices output."""
import argparse, os, subprocess, sys, tempfile
import onnx
from onnx import TensorProto, helper

CASES = [
    ("g3x3s2_ceil", [1, 8, 23, 31], dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    ("g3x3s1_pad1", [2, 5, 12, 17], dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
    ("k2s2", [1, 4, 10, 12], dict(kernel_shape=[2, 2], strides=[2, 2])),
    # the plain 2x2 / stride 2 path (odd sizes drop the last row and column)
    ("k2s2_odd", [3, 5, 15, 13], dict(kernel_shape=[2, 2], strides=[2, 2])),
    ("k2s1_same", [1, 3, 9, 10], dict(kernel_shape=[2, 2], auto_pad="SAME_UPPER")),
    ("k5_generic", [1, 3, 13, 14], dict(kernel_shape=[4, 5], strides=[2, 3], pads=[1, 2, 2, 1])),
    ("dilated", [1, 2, 11, 12], dict(kernel_shape=[2, 3], strides=[1, 2], dilations=[2, 2])),
    ("wide_272", [1, 2, 20, 21], dict(kernel_shape=[16, 17], strides=[2, 2])),
    ("wide_pad", [1, 2, 16, 18], dict(kernel_shape=[16, 16], strides=[3, 3], pads=[2, 3, 1, 2])),
    ("one_d", [2, 3, 19], dict(kernel_shape=[3], strides=[2], pads=[1, 1])),
    ("three_d", [1, 2, 6, 7, 8], dict(kernel_shape=[2, 3, 3], strides=[1, 2, 2], pads=[0, 1, 1, 1, 1, 0])),
    ("big_pad", [1, 2, 5, 6], dict(kernel_shape=[3, 3], strides=[1, 1], pads=[2, 2, 2, 2])),
    # padding wider than the kernel: some windows hold no input at all (Y = 0, no gradient)
    ("empty_windows", [1, 2, 4, 5], dict(kernel_shape=[2, 2], strides=[1, 1], pads=[3, 2, 3, 2])),
    ("empty_windows_wide", [1, 2, 3, 4], dict(kernel_shape=[2, 5], pads=[2, 5, 2, 5])),
]


def model(path, shape, attrs, indices):
    outs = ["Y", "I"] if indices else ["Y"]
    node = helper.make_node("MaxPool", ["X"], outs, **attrs)
    outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)]
    if indices:
        outputs.append(helper.make_tensor_value_info("I", TensorProto.INT64, None))
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, shape)], outputs)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 12)]), path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exe", required=True)
    a = ap.parse_args()
    bad = 0
    with tempfile.TemporaryDirectory() as d:
        for name, shape, attrs in CASES:
            for ind in (False, True):
                if ind and len(shape) != 4:
                    continue
                p = os.path.join(d, f"{name}{'_ind' if ind else ''}.onnx")
                model(p, shape, attrs, ind)
                r = subprocess.run([a.exe, p], capture_output=True, text=True, timeout=60)
                sys.stdout.write(r.stdout)
                sys.stderr.write(r.stderr)
                bad += r.returncode != 0
    print(f"{len(CASES)} shapes, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
