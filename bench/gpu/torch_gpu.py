#!/usr/bin/env python3
"""Issue #15 rows on the GPU with PyTorch: export the ONNX models cnnfx runs and time the same work.

  vgg19_relu5_1          1x3x512x512   forward + input gradient  (bench/export_bench_models.py)
  googlenet_inception4c  1x3x768x1024  forward + input gradient  (bench/export_bench_models.py)
  vgg16                  1x3x224x224   forward                   (torchvision vgg16, seeded weights)
  squeezenet1_1          1x3x224x224   forward                   (torchvision squeezenet1_1, seeded)

Work per step as `cnnfx bench [--grad]`: forward, and for the gradient rows backward of
0.5*||y||^2 to the input only (weights frozen).  Variants: fp32 (TF32 off), tf32, and the best
tuned one: fp16 + channels_last + CUDA graph (cudnn.benchmark on in all).  Timed with CUDA
synchronisation, median of --runs after warm-up.

Usage: torch_gpu.py --export DIR          write DIR/MODEL.onnx (skips existing files)
       torch_gpu.py --time [--runs N]     one line per model and variant: `torch MODEL VARIANT median_ms=X`
Unverified: written without a GPU (see docs/benchmarks.md).
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import export_bench_models as ebm  # noqa: E402

ROWS = [("vgg19_relu5_1", (1, 3, 512, 512), True), ("googlenet_inception4c", (1, 3, 768, 1024), True),
        ("vgg16", (1, 3, 224, 224), False), ("squeezenet1_1", (1, 3, 224, 224), False)]


def build(name):
    if name in ebm.MODELS:
        return ebm.build(name)
    torch.manual_seed(0)
    net = torchvision.models.vgg16(weights=None) if name == "vgg16" else torchvision.models.squeezenet1_1(weights=None)
    return net.eval()


def export(outdir):
    os.makedirs(outdir, exist_ok=True)
    for name, shape, _ in ROWS:
        path = os.path.join(outdir, name + ".onnx")
        if os.path.exists(path):
            continue
        net, x = build(name), torch.zeros(shape)
        kw = dict(opset_version=13, input_names=["input"], output_names=["output"], do_constant_folding=True)
        with torch.no_grad():
            try:
                torch.onnx.export(net, x, path, dynamo=False, **kw)  # torch >= 2.5: the TorchScript exporter
            except TypeError:
                torch.onnx.export(net, x, path, **kw)
        print(f"exported {path}", flush=True)


def timed(step, runs):
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ts)


def make_step(net, x, grad):
    if not grad:
        def step():
            with torch.no_grad():
                return net(x)
        return step

    def step():
        xi = x.detach().requires_grad_(True)
        y = net(xi)
        (0.5 * (y.float() * y.float()).sum()).backward()
        return xi.grad
    return step


def variant(name, shape, grad, kind, runs):
    tf32 = kind != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    net = build(name).cuda()
    for p in net.parameters():
        p.requires_grad_(False)
    x = torch.empty(shape).uniform_(0, 1, generator=torch.Generator().manual_seed(1)).cuda()
    if kind == "fp16+cl+graph":
        net = net.half().to(memory_format=torch.channels_last)
        x = x.half().contiguous(memory_format=torch.channels_last)
        if grad:
            static_x = x.clone().requires_grad_(True)

            def body():
                static_x.grad = None
                y = net(static_x)
                (0.5 * (y.float() * y.float()).sum()).backward()
        else:
            static_x = x

            def body():
                with torch.no_grad():
                    net(static_x)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                body()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            body()
        return timed(g.replay, runs)
    return timed(make_step(net, x, grad), runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", metavar="DIR")
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    if a.export:
        export(a.export)
    if a.time:
        print(f"torch {torch.__version__} cuda {torch.version.cuda} cudnn {torch.backends.cudnn.version()} "
              f"device {torch.cuda.get_device_name(0)}", flush=True)
        for name, shape, grad in ROWS:
            for kind in ("fp32", "tf32", "fp16+cl+graph"):
                try:
                    ms = variant(name, shape, grad, kind, a.runs)
                    print(f"torch {name} {kind} median_ms={ms:.3f}", flush=True)
                except Exception as e:  # one failing variant must not hide the others
                    print(f"torch {name} {kind} failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
