#!/usr/bin/python3
"""The session's plan on a dream-like and a style-like network (issue #11): runs test_plan, which
checks the static arena, zero allocations in steady-state steps, cpu == sim exactly, re-planning,
and that sim memory is unreachable from host code.  The networks are exported here with PyTorch
(seeded random weights; what is checked does not depend on the weights)."""
import argparse, os, subprocess, sys, tempfile

import torch
import torch.nn as nn

ap = argparse.ArgumentParser()
ap.add_argument("--exe", required=True)
A = ap.parse_args()


class Inception(nn.Module):
    def __init__(s, c):
        super().__init__()
        s.b1 = nn.Sequential(nn.Conv2d(c, 16, 1), nn.ReLU())
        s.b2 = nn.Sequential(nn.Conv2d(c, 12, 1), nn.ReLU(), nn.Conv2d(12, 16, 3, padding=1), nn.ReLU())
        s.b3 = nn.Sequential(nn.Conv2d(c, 4, 1), nn.ReLU(), nn.Conv2d(4, 8, 5, padding=2), nn.ReLU())
        s.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), nn.Conv2d(c, 8, 1), nn.ReLU())

    def forward(s, x):
        return torch.cat([s.b1(x), s.b2(x), s.b3(x), s.b4(x)], 1)


class Dreamy(nn.Module):  # GoogLeNet's layout in small
    def __init__(s):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv2d(3, 16, 7, 2, 3), nn.ELU(), nn.MaxPool2d(3, 2, ceil_mode=True),
                               nn.Conv2d(16, 24, 1), nn.ReLU(),
                               nn.Conv2d(24, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                               nn.MaxPool2d(3, 2, ceil_mode=True))
        s.i3a = Inception(32)
        s.i3b = Inception(48)

    def forward(s, x):
        a = s.i3a(s.stem(x))
        return a, s.i3b(a)


class Stylish(nn.Module):  # VGG's layout in small, several feature taps
    def __init__(s):
        super().__init__()
        s.c1 = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
        s.c2 = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU())
        s.c3 = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(32, 10))

    def forward(s, x):
        a = s.c1(x)
        b = s.c2(a)
        return a, b, s.c3(b)


torch.manual_seed(1)
fails = 0
with tempfile.TemporaryDirectory() as tmp:
    for name, net, outs in [("dreamy", Dreamy(), ["i3a", "i3b"]), ("stylish", Stylish(), ["r1", "r2", "logits"])]:
        net.eval()
        for mod in net.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 1.5)
        path = os.path.join(tmp, name + ".onnx")
        torch.onnx.export(net, torch.zeros(1, 3, 64, 96), path, input_names=["x"], output_names=outs,
                          opset_version=13)
        print(f"== {name} ({', '.join(outs)})", flush=True)
        r = subprocess.run([A.exe, path, "x", "1,3,64,96"] + outs)
        fails += r.returncode != 0
sys.exit(1 if fails else 0)
