#!/usr/bin/python3
"""Gradient-check models for the resize group (core/ops/resize.c, core/cpu/resize.c): Resize and Upsample.

models() yields (name, onnx.ModelProto): small graphs whose float graph input X is checked by
`cnnfx check-grad`; roi / scales / sizes are initializers (they carry no gradient).  Every name
starts with "resize_" so that `tests/gradcheck/run.py --only resize` selects exactly these.
"""
import os
import sys

import numpy as np
from onnx import helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_shape import _model, i64  # noqa: E402  (the shared model builders)


def f32(*v):
    return np.array(v, dtype=np.float32)


EMPTY = np.zeros([0], np.float32)


def resize(name, shape, scales=None, sizes=None, roi=None, opset=13, **attrs):
    """Resize(X, roi, scales, sizes) with the given constants ('' for absent optional inputs)."""
    inits, ins = [], ["x"]
    if opset >= 11:
        if roi is not None:
            inits.append(("roi", roi))
            ins.append("roi")
        else:
            ins.append("")
        if scales is not None:
            inits.append(("scales", scales))
            ins.append("scales")
        elif sizes is not None:
            ins.append("")
        if sizes is not None:
            inits.append(("sizes", sizes))
            ins.append("sizes")
    else:  # Resize-10: (X, scales)
        inits.append(("scales", scales))
        ins.append("scales")
    node = helper.make_node("Resize", ins, ["y"], **attrs)
    return name, _model(name, [node], [("x", shape)], ["y"], inits, opset)


def upsample(name, shape, scales, opset, **attrs):
    if opset < 9:
        node = helper.make_node("Upsample", ["x"], ["y"], scales=[float(s) for s in scales], **attrs)
        return name, _model(name, [node], [("x", shape)], ["y"], [], opset)
    node = helper.make_node("Upsample", ["x", "scales"], ["y"], **attrs)
    return name, _model(name, [node], [("x", shape)], ["y"], [("scales", np.asarray(scales, np.float32))], opset)


def models():
    S = [1, 2, 3, 4]
    # ---- nearest: every nearest_mode, several coordinate transformations, up and down
    yield resize("resize_nearest_up_scales", S, scales=f32(1, 1, 2, 3), mode="nearest")
    yield resize("resize_nearest_down_scales", [1, 2, 5, 7], scales=f32(1, 1, 0.6, 0.5), mode="nearest")
    yield resize("resize_nearest_sizes_ceil_half_pixel", S, sizes=i64(1, 2, 7, 5), mode="nearest",
                 nearest_mode="ceil")
    yield resize("resize_nearest_sizes_floor_align_corners", S, sizes=i64(1, 2, 5, 9), mode="nearest",
                 coordinate_transformation_mode="align_corners", nearest_mode="floor")
    yield resize("resize_nearest_prefer_ceil_asymmetric", S, sizes=i64(1, 2, 8, 3), mode="nearest",
                 coordinate_transformation_mode="asymmetric", nearest_mode="round_prefer_ceil")
    yield resize("resize_nearest_tf_half_pixel_for_nn_opset11", [1, 1, 4, 5], sizes=i64(1, 1, 3, 7), roi=EMPTY,
                 opset=11, mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn")
    yield resize("resize_nearest_channels_axis", [2, 5, 3], scales=f32(1, 1.6, 1), mode="nearest")
    # ---- linear (n-linear) with each coordinate transformation
    yield resize("resize_linear_up_half_pixel", S, scales=f32(1, 1, 2, 2.5), mode="linear")
    yield resize("resize_linear_down_half_pixel", [1, 2, 6, 7], scales=f32(1, 1, 0.5, 0.6), mode="linear")
    yield resize("resize_linear_align_corners_up", S, sizes=i64(1, 2, 7, 8), mode="linear",
                 coordinate_transformation_mode="align_corners")
    yield resize("resize_linear_align_corners_down", [1, 2, 7, 8], scales=f32(1, 1, 0.6, 0.5), mode="linear",
                 coordinate_transformation_mode="align_corners")
    yield resize("resize_linear_pytorch_half_pixel", [1, 2, 5, 6], sizes=i64(1, 2, 3, 1), mode="linear",
                 coordinate_transformation_mode="pytorch_half_pixel")
    yield resize("resize_linear_asymmetric", S, scales=f32(1, 1, 1.5, 2), mode="linear",
                 coordinate_transformation_mode="asymmetric")
    yield resize("resize_linear_trilinear_3d", [1, 2, 3, 4, 3], scales=f32(1, 1, 2, 0.75, 1.5), mode="linear")
    yield resize("resize_linear_1d", [7], sizes=i64(12), mode="linear")
    yield resize("resize_linear_all_axes", [2, 3, 4], scales=f32(1.5, 2, 0.5), mode="linear")
    # ---- cubic
    yield resize("resize_cubic_up", S, scales=f32(1, 1, 2, 1.5), mode="cubic")
    yield resize("resize_cubic_down", [1, 2, 8, 7], scales=f32(1, 1, 0.5, 0.7), mode="cubic")
    yield resize("resize_cubic_exclude_outside", [1, 2, 5, 6], scales=f32(1, 1, 1.8, 0.6), mode="cubic",
                 cubic_coeff_a=-0.5, exclude_outside=1)
    yield resize("resize_cubic_align_corners", S, sizes=i64(1, 2, 6, 7), mode="cubic",
                 coordinate_transformation_mode="align_corners")
    yield resize("resize_cubic_asymmetric", S, scales=f32(1, 1, 2, 2), mode="cubic",
                 coordinate_transformation_mode="asymmetric")
    # ---- tf_crop_and_resize (outputs outside the crop are the constant extrapolation value)
    yield resize("resize_tf_crop_linear_extrapolate", [1, 1, 5, 6], sizes=i64(1, 1, 4, 5),
                 roi=f32(0, 0, -0.2, 0.1, 1, 1, 0.7, 1.3), mode="linear",
                 coordinate_transformation_mode="tf_crop_and_resize", extrapolation_value=3.0)
    yield resize("resize_tf_crop_nearest_scales", [1, 2, 6, 6], scales=f32(1, 1, 1.5, 2),
                 roi=f32(0, 0, 0.2, 0.1, 1, 1, 0.8, 0.9), mode="nearest",
                 coordinate_transformation_mode="tf_crop_and_resize")
    # ---- opset 18 / 19 attributes
    yield resize("resize_antialias_linear_down", [1, 2, 9, 10], scales=f32(1, 1, 0.4, 0.55), opset=18,
                 mode="linear", antialias=1)
    yield resize("resize_antialias_cubic_down", [1, 2, 9, 10], sizes=i64(1, 2, 4, 3), opset=18, mode="cubic",
                 antialias=1)
    yield resize("resize_antialias_cubic_exclude_outside", [1, 1, 11, 8], scales=f32(0.3, 0.7), opset=18,
                 mode="cubic", antialias=1, exclude_outside=1, cubic_coeff_a=-0.5, axes=[2, 3])
    yield resize("resize_axes_keep_not_larger", [1, 2, 4, 6], sizes=i64(7, 7), opset=18, mode="linear",
                 axes=[2, 3], keep_aspect_ratio_policy="not_larger")
    yield resize("resize_axes_keep_not_smaller", [1, 2, 4, 6], sizes=i64(3, 2), opset=18, mode="cubic",
                 axes=[-1, -2], keep_aspect_ratio_policy="not_smaller")
    yield resize("resize_half_pixel_symmetric", [1, 2, 4, 5], scales=f32(1, 1, 1.7, 0.7), opset=19, mode="linear",
                 coordinate_transformation_mode="half_pixel_symmetric")
    # ---- Resize-10 and Upsample (asymmetric)
    yield resize("resize_opset10_nearest", S, scales=f32(1, 1, 2, 1.5), opset=10, mode="nearest")
    yield resize("resize_opset10_linear_down", [1, 2, 6, 5], scales=f32(1, 1, 0.5, 0.6), opset=10, mode="linear")
    yield upsample("resize_upsample7_nearest", S, [1, 1, 2, 3], 7, mode="nearest")
    yield upsample("resize_upsample7_linear", S, [1, 1, 2, 2], 7, mode="linear")
    yield upsample("resize_upsample9_nearest", S, [1, 1, 1.5, 2], 9, mode="nearest")
    yield upsample("resize_upsample9_linear", S, [1, 1, 3, 2.5], 9, mode="linear")
    # ---- a chain: the gradient of one resize feeds the backward of the next
    yield "resize_chain_nearest_then_cubic", _model("resize_chain_nearest_then_cubic", [
        helper.make_node("Resize", ["x", "", "s1"], ["t"], mode="nearest"),
        helper.make_node("Resize", ["t", "", "s2"], ["y"], mode="cubic"),
    ], [("x", [1, 2, 3, 4])], ["y"], [("s1", f32(1, 1, 2, 2)), ("s2", f32(1, 1, 0.7, 0.6))])
    # ---- bigger tensors (> 32768 elements): the parallel row / chunked paths
    B = [2, 8, 24, 30]
    yield resize("resize_big_nearest_up2", B, scales=f32(1, 1, 2, 2), mode="nearest",
                 coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    yield resize("resize_big_linear_up", B, scales=f32(1, 1, 2, 2), mode="linear")
    yield resize("resize_big_linear_align_corners", B, sizes=i64(2, 8, 37, 41), mode="linear",
                 coordinate_transformation_mode="align_corners")
    yield resize("resize_big_cubic_down", [1, 4, 90, 100], scales=f32(1, 1, 0.5, 0.45), mode="cubic")
    yield resize("resize_big_single_plane", [1, 1, 150, 260], scales=f32(1, 1, 1.5, 0.8), mode="linear")
    yield resize("resize_big_antialias", [1, 2, 120, 130], scales=f32(1, 1, 0.25, 0.3), opset=18, mode="linear",
                 antialias=1)
    yield upsample("resize_big_upsample9_nearest", [1, 16, 20, 24], [1, 1, 2, 2], 9, mode="nearest")


if __name__ == "__main__":
    for n, m in models():
        print(n, len(m.graph.node))
