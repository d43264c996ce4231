#!/usr/bin/python3
"""Every filter gives the same image on --device sim as on --device cpu (issue #11).

`sim` is the simulated device of the backend interface: it runs a subset of operators on memory that
host code cannot read, the rest falls back to the CPU with explicit copies.  Its kernels are the
CPU's, so results must be equal byte for byte (same seed); any missing copy or host access to device
memory crashes the run.  Runs each filter with its offline default model on a real photo (small
settings), and with ImageNet SqueezeNet from ../shared/realm when present (else says skipped).

Usage: test_device_parity.py --cnnfx BUILD/batch/cnnfx [--realm DIR]
"""
import argparse, hashlib, os, subprocess, sys, tempfile

ap = argparse.ArgumentParser()
ap.add_argument("--cnnfx", required=True)
ap.add_argument("--realm", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared",
                                                  "realm"))
A = ap.parse_args()

PHOTO = "/usr/share/darknet/data/dog.jpg"
fails = passed = 0


def check(ok, what):
    global fails, passed
    print(("PASS " if ok else "FAIL ") + what, flush=True)
    if ok:
        passed += 1
    else:
        fails += 1


def digest(d):
    h = {}
    for name in sorted(os.listdir(d)):
        with open(os.path.join(d, name), "rb") as f:
            h[name] = hashlib.sha256(f.read()).hexdigest()[:16]
    return h


def run(tmp, tag, filt, args):
    outs = {}
    for dev in ("cpu", "sim"):
        od = os.path.join(tmp, f"{tag}-{dev}")
        os.makedirs(od)
        cmd = [A.cnnfx, filt, "-q", "--seed", "3", "--device", dev, "-o", od] + args + [PHOTO]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            check(False, f"{tag} on {dev}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
            return
        outs[dev] = digest(od)
    same = outs["cpu"] == outs["sim"] and len(outs["cpu"]) > 0
    check(same, f"{tag}: sim writes the same {len(outs['cpu'])} file(s) as cpu, byte for byte"
          + ("" if same else f" (cpu {outs['cpu']} sim {outs['sim']})"))


with tempfile.TemporaryDirectory() as tmp:
    small = ["--max-pixels", "100000000"]
    run(tmp, "dream (offline model)", "dream", ["--octaves", "1", "--iterations", "3"])
    run(tmp, "style (offline model)", "style", ["--style", "/usr/share/darknet/data/scream.jpg", "--iterations", "3",
                                                "--scales", "1", "--size", "96"])
    run(tmp, "classify (offline model)", "classify", ["--overlay", "gradcam"])
    run(tmp, "fool (offline model)", "fool", ["--iterations", "3"])
    run(tmp, "visualize (offline model)", "visualize", ["--iterations", "3", "--size", "64"])
    sq = os.path.join(A.realm, "squeezenet1_1-tv.onnx")
    if os.path.exists(sq):
        run(tmp, "dream (SqueezeNet)", "dream", ["-m", sq, "--layer", "Concat#4", "--octaves", "1", "--iterations", "2"])
        run(tmp, "classify (SqueezeNet, gradcam)", "classify", ["-m", sq, "--overlay", "gradcam"])
        run(tmp, "fool (SqueezeNet)", "fool", ["-m", sq, "--iterations", "2"])
    else:
        print(f"skipped: SqueezeNet runs ({sq} not found)")
print(f"{passed} passed, {fails} failed")
sys.exit(1 if fails else 0)
