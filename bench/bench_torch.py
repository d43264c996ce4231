#!/usr/bin/python3
"""Time PyTorch (CPU) on the benchmark work: forward, then backward of L = 0.5*||y||^2 down to the
input only (weights frozen, as in `cnnfx bench --grad`).

Usage: /usr/bin/python3 bench/bench_torch.py [--model vgg19_relu5_1|googlenet_inception4c|all]
                                             [--runs N] [--threads T] [--no-grad]
Prints one line per model: `torch MODEL shape=N,C,H,W grad=1 threads=T median_ms=... min_ms=...`.
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_bench_models import MODELS, build  # noqa: E402


def bench(name, runs, grad):
    net = build(name)
    for p in net.parameters():
        p.requires_grad_(False)
    shape = MODELS[name]
    x = torch.empty(shape).uniform_(-1, 1, generator=torch.Generator().manual_seed(1))

    def step():
        if grad:
            xi = x.clone().requires_grad_(True)
            y = net(xi)
            loss = 0.5 * (y * y).sum()
            loss.backward()
            return xi.grad
        with torch.no_grad():
            return net(x)

    step()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="all", choices=["all"] + list(MODELS))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-grad", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    names = list(MODELS) if a.model == "all" else [a.model]
    for name in names:
        med, best = bench(name, a.runs, not a.no_grad)
        print("torch %s shape=%s grad=%d threads=%d median_ms=%.1f min_ms=%.1f" %
              (name, ",".join(map(str, MODELS[name])), 0 if a.no_grad else 1, a.threads, med, best), flush=True)


if __name__ == "__main__":
    main()
