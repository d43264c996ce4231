#!/usr/bin/python3
"""Export the benchmark networks to ONNX (opset 13, static shapes, seeded random weights).

  vgg19_relu5_1.onnx        torchvision vgg19().features[:30]   (conv1_1 .. relu5_1), 1x3x512x512
  googlenet_inception4c.onnx torchvision googlenet conv1 .. inception4c (with the max-pools),
                            1x3x768x1024

Usage: /usr/bin/python3 bench/export_bench_models.py [OUTDIR]   (default: bench/models)
Needs torch and torchvision; no network access (weights are random, seeded).
"""
import os
import sys

import torch
import torchvision

MODELS = {
    "vgg19_relu5_1": (1, 3, 512, 512),
    "googlenet_inception4c": (1, 3, 768, 1024),
}


def vgg19_relu5_1():
    return torchvision.models.vgg19(weights=None).features[:30]


class GoogLeNetTo4c(torch.nn.Module):
    """GoogLeNet trunk up to inception_4c (transform_input=False, no aux heads)."""

    def __init__(self):
        super().__init__()
        g = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=False, init_weights=False)
        self.body = torch.nn.Sequential(g.conv1, g.maxpool1, g.conv2, g.conv3, g.maxpool2, g.inception3a,
                                        g.inception3b, g.maxpool3, g.inception4a, g.inception4b, g.inception4c)

    def forward(self, x):
        return self.body(x)


def build(name):
    """The named network in eval mode with seeded random weights (BatchNorm statistics randomised
    too, so that the exported graph is not trivially an identity there)."""
    torch.manual_seed(0)
    net = vgg19_relu5_1() if name == "vgg19_relu5_1" else GoogLeNetTo4c()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def export(name, outdir):
    path = os.path.join(outdir, name + ".onnx")
    x = torch.zeros(MODELS[name])
    with torch.no_grad():
        torch.onnx.export(build(name), x, path, opset_version=13, input_names=["input"], output_names=["output"],
                          do_constant_folding=True)
    return path


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")
    os.makedirs(outdir, exist_ok=True)
    for name in MODELS:
        print(export(name, outdir))


if __name__ == "__main__":
    main()
