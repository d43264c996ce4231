"""Independent PyTorch reference for the real networks of ../shared/realm (tests/test_realm.py).

`Interp(path)` runs an ONNX graph node by node with torch (float64 by default) straight from the
ONNX weights: Conv / ConvTranspose / Relu / MaxPool / Concat / GlobalAveragePool / Flatten /
InstanceNormalization (as the exporters spell it: ReduceMean, Sub, Pow, Sqrt, Div) / Pad / Tanh
and the shape arithmetic the exporters emit, plus the int8 operators of ONNX Runtime's quantiser
with their integer semantics (QuantizeLinear, QLinearConv with int32 accumulation, QLinearAdd,
QLinearAveragePool, QLinearMatMul, DequantizeLinear): nothing of cnnfx is used.
"""
import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

INT_RANGE = {onnx.TensorProto.INT8: (-128, 127), onnx.TensorProto.UINT8: (0, 255)}


def _attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class Interp:
    def __init__(self, path, dtype=torch.float64):
        self.m = onnx.load(path)
        self.dtype = dtype
        self.init = {}
        self.itype = {}
        for t in self.m.graph.initializer:
            self.init[t.name] = numpy_helper.to_array(t)
            self.itype[t.name] = t.data_type

    def _t(self, v):
        if isinstance(v, torch.Tensor):
            return v
        return torch.from_numpy(np.asarray(v).astype(np.float64)).to(self.dtype)

    def run(self, feeds, want=None):
        """feeds: {name: numpy array}.  Returns {name: torch tensor} of the outputs (and of `want`)."""
        env = dict(self.init)
        env.update(feeds)
        for n in self.m.graph.node:
            a = _attrs(n)
            ins = [env[i] if i else None for i in n.input]
            out = getattr(self, "op_" + n.op_type)(n, a, ins)
            if not isinstance(out, (list, tuple)):
                out = [out]
            for name, v in zip(n.output, out):
                env[name] = v
        names = [o.name for o in self.m.graph.output] + list(want or [])
        return {k: env[k] for k in names}

    # ---- float ops -------------------------------------------------------------------------
    def _conv(self, a, x, w, b):
        x, w = self._t(x), self._t(w)
        b = None if b is None else self._t(b)
        pads = a.get("pads", [0, 0, 0, 0])
        assert a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
        x = F.pad(x, (pads[1], pads[3], pads[0], pads[2]))
        return F.conv2d(x, w, b, stride=a.get("strides", [1, 1]), dilation=a.get("dilations", [1, 1]),
                        groups=a.get("group", 1))

    def op_Conv(self, n, a, i):
        return self._conv(a, i[0], i[1], i[2] if len(i) > 2 else None)

    def op_ConvTranspose(self, n, a, i):
        x, w = self._t(i[0]), self._t(i[1])
        b = self._t(i[2]) if len(i) > 2 and i[2] is not None else None
        s = a.get("strides", [1, 1])
        pads = a.get("pads", [0, 0, 0, 0])
        op = a.get("output_padding", [0, 0])
        assert pads[0] == pads[2] and pads[1] == pads[3]
        return F.conv_transpose2d(x, w, b, stride=s, padding=(pads[0], pads[1]), output_padding=op,
                                  groups=a.get("group", 1), dilation=a.get("dilations", [1, 1]))

    def op_Relu(self, n, a, i):
        return torch.relu(self._t(i[0]))

    def op_Tanh(self, n, a, i):
        return torch.tanh(self._t(i[0]))

    def op_MaxPool(self, n, a, i):
        p = a.get("pads", [0, 0, 0, 0])
        x = F.pad(self._t(i[0]), (p[1], p[3], p[0], p[2]), value=-np.inf)
        return F.max_pool2d(x, a["kernel_shape"], a.get("strides", [1, 1]), ceil_mode=bool(a.get("ceil_mode", 0)))

    def op_GlobalAveragePool(self, n, a, i):
        return self._t(i[0]).mean(dim=(2, 3), keepdim=True)

    def op_Flatten(self, n, a, i):
        x = self._t(i[0])
        ax = a.get("axis", 1)
        return x.reshape(int(np.prod(x.shape[:ax])), -1)

    def op_Softmax(self, n, a, i):
        return torch.softmax(self._t(i[0]), dim=a.get("axis", -1))

    def op_Concat(self, n, a, i):
        if all(isinstance(v, np.ndarray) for v in i):
            return np.concatenate(i, axis=a["axis"])
        return torch.cat([self._t(v) for v in i], dim=a["axis"])

    def _bin(self, i, f):
        if all(isinstance(v, np.ndarray) for v in i):
            return f(i[0], i[1])
        return f(self._t(i[0]), self._t(i[1]))

    def op_Add(self, n, a, i): return self._bin(i, lambda x, y: x + y)
    def op_Sub(self, n, a, i): return self._bin(i, lambda x, y: x - y)
    def op_Mul(self, n, a, i): return self._bin(i, lambda x, y: x * y)
    def op_Div(self, n, a, i):
        if all(isinstance(v, np.ndarray) for v in i) and i[0].dtype.kind == "i":
            return i[0] // i[1]
        return self._bin(i, lambda x, y: x / y)
    def op_Pow(self, n, a, i): return self._bin(i, lambda x, y: x ** y)

    def op_Sqrt(self, n, a, i):
        return torch.sqrt(self._t(i[0]))

    def op_ReduceMean(self, n, a, i):
        return self._t(i[0]).mean(dim=tuple(a["axes"]), keepdim=bool(a.get("keepdims", 1)))

    def op_Constant(self, n, a, i):
        return numpy_helper.to_array(a["value"]) if "value" in a else np.array(a.get("value_float", 0.0))

    def op_ConstantOfShape(self, n, a, i):
        v = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
        return np.full(tuple(int(d) for d in i[0]), v.reshape(-1)[0], dtype=v.dtype)

    def op_Cast(self, n, a, i):
        to = onnx.mapping.TENSOR_TYPE_TO_NP_TYPE[a["to"]]
        return np.asarray(i[0]).astype(to) if isinstance(i[0], np.ndarray) else i[0]

    def op_Reshape(self, n, a, i):
        shape = [int(d) for d in i[1]]
        x = i[0]
        shape = [x.shape[k] if d == 0 else d for k, d in enumerate(shape)]
        return x.reshape(shape)

    def op_Transpose(self, n, a, i):
        x = i[0]
        perm = a.get("perm", list(range(x.ndim))[::-1])
        return np.transpose(x, perm) if isinstance(x, np.ndarray) else x.permute(*perm)

    def op_Slice(self, n, a, i):
        x = i[0]
        starts, ends = [int(v) for v in i[1]], [int(v) for v in i[2]]
        axes = [int(v) for v in i[3]] if len(i) > 3 and i[3] is not None else list(range(len(starts)))
        steps = [int(v) for v in i[4]] if len(i) > 4 and i[4] is not None else [1] * len(starts)
        sl = [slice(None)] * x.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps):
            if st < 0:
                dim = x.shape[ax]
                s = min(s, dim - 1) if s >= 0 else max(s + dim, -1)
                e = e if e >= 0 else e + dim
                e = None if e < 0 else e
                sl[ax] = slice(s, e, st)
            else:
                sl[ax] = slice(s, e, st)
        if isinstance(x, torch.Tensor) and any(st < 0 for st in steps):
            x = x.numpy()
            return torch.from_numpy(np.ascontiguousarray(x[tuple(sl)]))
        return x[tuple(sl)]

    def op_Pad(self, n, a, i):
        x = self._t(i[0])
        p = [int(v) for v in i[1]]
        nd = x.ndim
        tp = []
        for d in reversed(range(nd)):
            tp += [p[d], p[d + nd]]
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        if mode == "constant":
            return F.pad(x, tp)
        return F.pad(x, tp[:4], mode={"reflect": "reflect", "edge": "replicate"}[mode])

    def op_Squeeze(self, n, a, i):
        x = i[0]
        axes = [int(v) for v in i[1]] if len(i) > 1 and i[1] is not None else a.get("axes")
        if axes is None:
            return x.squeeze()
        for ax in sorted([ax % x.ndim for ax in axes], reverse=True):
            x = x.squeeze(ax)
        return x

    # ---- int8 ops (ONNX Runtime semantics) ------------------------------------------------
    def _rng(self, n, k):
        return INT_RANGE.get(self.itype.get(n.input[k]), (0, 255)) if len(n.input) > k and n.input[k] else (0, 255)

    def _zp(self, i, k):
        return self._t(i[k]) if len(i) > k and i[k] is not None else self._t(0.0)

    def _requant(self, v, s, zp, rng):
        return torch.clamp(torch.round(v / s) + zp, rng[0], rng[1])  # torch.round: half to even

    def op_QuantizeLinear(self, n, a, i):
        return self._requant(self._t(i[0]), self._t(i[1]), self._zp(i, 2), self._rng(n, 2))

    def op_DequantizeLinear(self, n, a, i):
        return (self._t(i[0]) - self._zp(i, 2)) * self._t(i[1])

    def op_QLinearConv(self, n, a, i):
        x = self._t(i[0]) - self._t(i[2])
        w = self._t(i[3]) - self._t(i[5]).reshape(-1, 1, 1, 1)
        acc = self._conv(a, x, w, self._t(i[8]) if len(i) > 8 and i[8] is not None else None)  # exact int32 sums
        scale = (self._t(i[1]) * self._t(i[4])).reshape(1, -1, 1, 1)
        return self._requant(acc * scale, self._t(i[6]), self._t(i[7]), self._rng(n, 7))

    def op_QLinearAdd(self, n, a, i):
        va = (self._t(i[0]) - self._zp(i, 2)) * self._t(i[1])
        vb = (self._t(i[3]) - self._zp(i, 5)) * self._t(i[4])
        return self._requant(va + vb, self._t(i[6]), self._zp(i, 7), self._rng(n, 7))

    def op_QLinearAveragePool(self, n, a, i):
        v = (self._t(i[0]) - self._zp(i, 2)) * self._t(i[1])
        p = a.get("pads", [0, 0, 0, 0])
        assert not any(p)
        y = F.avg_pool2d(v, a["kernel_shape"], a.get("strides", a["kernel_shape"]), ceil_mode=bool(a.get("ceil_mode", 0)))
        return self._requant(y, self._t(i[3]), self._zp(i, 4), self._rng(n, 4))

    def op_QLinearMatMul(self, n, a, i):
        va = self._t(i[0]) - self._t(i[2])
        vb = self._t(i[3]) - self._t(i[5])
        return self._requant(va @ vb * self._t(i[1]) * self._t(i[4]), self._t(i[6]), self._t(i[7]), self._rng(n, 7))
