#!/usr/bin/python3
"""Every filter on real, published, trained networks (../shared/realm, see its README).

References are computed here from the ONNX weights with PyTorch (tests/realm_ref.py: an
independent node-by-node interpreter, int8 operators with ONNX Runtime's integer semantics);
nothing of cnnfx is used for them.  Photos are darknet's (/usr/share/darknet/data), made small
so that the whole file runs in well under a minute per part.

Parts (--part, one meson test each):
  classify  dog.jpg (224x224) with squeezenet1_1-tv.onnx given as a path and no sidecar: the
            guessed preprocessing (ImageNet, 224) is announced in one line (absent with -q), top-1
            is of the malamute family with the reference probability (+-0.01); the same network
            with a Softmax (+Flatten) appended is recognised as giving probabilities (same
            numbers, not softmaxed twice); a BGR-ordered copy (first convolution's input channels
            reversed) with bgr=true in its sidecar gives the same, and so does a float16 copy of
            its weights; --top above the class count fails clearly; dream on a model with fully
            connected layers fails clearly at any size and works at its fixed size;
            --style with --fast-model fails clearly.
  int8      200 CIFAR-10 (JPEG) test photos (20 per class, extracted from the tarball) through
            mbv2_cifar10_int8.onnx (QLinearConv/QLinearAdd/...): accuracy >= 75% and within 1 point
            of the reference interpreter's on the same photos; >= 95% per-photo agreement.
  cam       Grad-CAM, Grad-CAM++ and saliency on dog.jpg (384x288): the hottest region (heat
            map smoothed over 1/12 of the width) lies in the dog's box (x 65-155, y 110-270).
  dream     squeezenet, layer Concat#4, 1 octave, no jitter, 1..4 steps on a real photo: the
            layer's mean squared activation (reference interpreter) rises step after step and by
            >= 10% overall; the result is not noise (8x-downscaled it stays within 20 dB PSNR
            of the photo) but did change.
  fool      squeezenet: untargeted eps=2 and targeted (tabby, eps=4) succeed as judged by the
            reference on the 8-bit PNG written; L-inf <= eps.
  style     fst-wave / fst-udnie on odd-size photos (387x258 crop, 101x75): equal to the
            reference (input padded by edge replication to a multiple of 4, output cropped)
            within 1/255 on average.
Skips (exit 77, "skipped: ...") when ../shared/realm is missing.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import numpy as np
import onnx
import torch
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from realm_ref import Interp  # noqa: E402

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REALM = os.environ.get("CNNFX_REALM", os.path.join(SRC, "..", "shared", "realm"))
PHOTOS = "/usr/share/darknet/data"
LABELS = os.path.join(SRC, "weights", "imagenet1k.labels")
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
MALAMUTE = {248, 249, 250}  # Eskimo dog, malamute, Siberian husky
results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'} {name}" + (f" ({detail})" if detail else ""), flush=True)


def run(args, ok=True):
    p = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if ok and p.returncode != 0:
        print("command failed:", " ".join(args), "\n", p.stdout, p.stderr, flush=True)
    return p


def load_rgb(path):
    return np.asarray(Image.open(path).convert("RGB"), np.float64) / 255.0


def imagenet_x(rgb):
    return ((rgb - MEAN) / STD).transpose(2, 0, 1)[None]


def photo(name, size, d):
    p = os.path.join(d, f"{os.path.splitext(name)[0]}_{size[0]}x{size[1]}.png")
    Image.open(os.path.join(PHOTOS, name)).convert("RGB").resize(size, Image.BILINEAR).save(p)
    return p


class Squeeze:
    def __init__(self):
        self.path = os.path.join(REALM, "squeezenet1_1-tv.onnx")
        self.ref = Interp(self.path)

    def probs(self, png, want=None):
        out = self.ref.run({"input": imagenet_x(load_rgb(png))}, want)
        return torch.softmax(out["logits"], 1)[0].numpy(), out


def read_csv(path):
    rows = [l.split(",") for l in open(path).read().strip().split("\n")[1:]]
    return [(int(r[2]), float(r[-1])) for r in rows]


# ---- parts ------------------------------------------------------------------------------

def part_classify(cnnfx, d):
    sq = Squeeze()
    dog = photo("dog.jpg", (224, 224), d)
    ref, _ = sq.probs(dog)
    p = run([cnnfx, "classify", "-m", sq.path, dog, "-o", f"{d}/c1", "--overlay", "none", "--labels-image", "no"])
    lines = [l for l in p.stderr.splitlines() if l.startswith("model ")]
    check("classify runs with a model path and no sidecar", p.returncode == 0, p.stderr.strip()[-300:] if p.returncode else "")
    check("one line names the model and the guessed preprocessing and how to change it",
          len(lines) == 1 and sq.path in lines[0] and "guessed" in lines[0] and "224x224" in lines[0]
          and "--mean" in lines[0] and ".ini" in lines[0], lines)
    top = read_csv(f"{d}/c1/" + os.path.basename(dog)[:-4] + ".csv") if p.returncode == 0 else [(-1, 0)]
    check("dog.jpg top-1 is of the malamute family", top[0][0] in MALAMUTE, top[:3])
    check("top-1 probability equals the reference", abs(top[0][1] - ref[top[0][0]]) < 0.01 and
          top[0][0] == int(ref.argmax()), f"cnnfx {top[0][1]:.4f}, reference {ref.max():.4f} class {ref.argmax()}")
    p = run([cnnfx, "classify", "-q", "-m", sq.path, dog, "-o", f"{d}/c1q", "--overlay", "none"])
    check("-q: no model line", p.returncode == 0 and not any(l.startswith("model ") for l in p.stderr.splitlines()),
          p.stderr[-200:])
    # Softmax-output model (the ONNX zoo's Caffe2 models end in Softmax), via Flatten
    m = onnx.load(sq.path)
    g = m.graph
    out = g.output[0].name
    g.node.append(onnx.helper.make_node("Softmax", [out], ["prob_sm"], axis=1))
    g.node.append(onnx.helper.make_node("Flatten", ["prob_sm"], ["prob"], axis=1))
    g.output[0].name = "prob"
    sm = os.path.join(d, "sq_softmax.onnx")
    onnx.save(m, sm)
    p = run([cnnfx, "classify", "-m", sm, "--labels", LABELS, dog, "-o", f"{d}/c2", "--overlay", "gradcam",
             "--labels-image", "no"])
    top2 = read_csv(f"{d}/c2/" + os.path.basename(dog)[:-4] + ".csv") if p.returncode == 0 else [(-1, 0)]
    check("Softmax output recognised: same probability, not softmaxed twice",
          top2[0][0] == top[0][0] and abs(top2[0][1] - top[0][1]) < 1e-3, f"{top2[:2]} vs {top[:2]}")
    check("Softmax output: the summary says probabilities", "output probabilities" in p.stderr, "" if p.returncode == 0 else p.stderr[-300:])
    # BGR-ordered copy, said in a sidecar
    m = onnx.load(sm)
    for t in m.graph.initializer:
        if t.name == m.graph.node[0].input[1]:
            w = onnx.numpy_helper.to_array(t)[:, ::-1].copy()
            t.CopyFrom(onnx.numpy_helper.from_array(w, t.name))
    bgr = os.path.join(d, "sq_bgr.onnx")
    onnx.save(m, bgr)
    with open(os.path.join(d, "sq_bgr.ini"), "w") as f:
        f.write("[sq_bgr]\nbgr=true\nmean=0.406;0.456;0.485\nstd=0.225;0.224;0.229\ninput_size=224\n"
                f"labels={LABELS}\n")
    p = run([cnnfx, "classify", "-m", bgr, dog, "-o", f"{d}/c3", "--overlay", "none", "--labels-image", "no"])
    top3 = read_csv(f"{d}/c3/" + os.path.basename(dog)[:-4] + ".csv") if p.returncode == 0 else [(-1, 0)]
    check("BGR model with bgr=true in its sidecar: same result", top3[0][0] == top[0][0] and
          abs(top3[0][1] - top[0][1]) < 1e-3 and "sq_bgr.ini" in p.stderr, f"{top3[:2]}")
    # the same network stored in half precision (float16 initializers + Cast, as fp16 exports are)
    m = onnx.load(sq.path)
    casts = []
    for t in m.graph.initializer:
        if t.data_type == onnx.TensorProto.FLOAT:
            a = onnx.numpy_helper.to_array(t).astype(np.float16)
            name = t.name
            t.CopyFrom(onnx.numpy_helper.from_array(a, name + "_f16"))
            casts.append(onnx.helper.make_node("Cast", [name + "_f16"], [name], to=onnx.TensorProto.FLOAT))
    nodes = casts + list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    h16 = os.path.join(d, "sq_f16.onnx")
    onnx.save(m, h16)
    p = run([cnnfx, "classify", "-m", h16, dog, "-o", f"{d}/c7", "--overlay", "none", "--labels-image", "no"])
    top7 = read_csv(f"{d}/c7/" + os.path.basename(dog)[:-4] + ".csv") if p.returncode == 0 else [(-1, 0)]
    check("float16 weights: same top-1 and probability (+-0.01)", top7[0][0] == top[0][0] and
          abs(top7[0][1] - top[0][1]) < 0.01, f"{top7[:2]}" if p.returncode == 0 else p.stderr.strip()[-300:])
    # cnnfx train writes the sidecar beside the model it writes; -m then finds it
    rs = os.path.join(d, "rs.onnx")
    p = run([cnnfx, "train", "--arch", "random-style", "--seed", "1", "-q", "-o", rs])
    side = open(os.path.join(d, "rs.ini")).read() if os.path.exists(os.path.join(d, "rs.ini")) else ""
    check("cnnfx train writes MODEL.ini beside the model", p.returncode == 0 and "[model]" in side and
          "style_layers=" in side and "mean=" in side, side[:200])
    p = run([cnnfx, "dream", "-m", rs, "--octaves", "1", "--iterations", "1", dog, "-o", f"{d}/c8"])
    check("... and a filter run with -m MODEL.onnx uses it", p.returncode == 0 and "rs.ini" in p.stderr,
          p.stderr.strip()[-300:])
    # clear errors
    p = run([cnnfx, "classify", "-m", sq.path, dog, "-o", f"{d}/c4", "--top", "100", "--overlay", "none"], ok=False)
    check("--top within the table's range still works", p.returncode == 0, "" if p.returncode == 0 else p.stderr[-200:])
    tiny = os.path.join(d, "c10.onnx")
    shutil.copy(os.path.join(REALM, "mbv2_cifar10_int8.onnx"), tiny)
    p = run([cnnfx, "classify", "-m", tiny, dog, "-o", f"{d}/c5", "--top", "11", "--overlay", "none"], ok=False)
    check("--top larger than the class count: clear error", p.returncode != 0 and "10 classes" in p.stderr,
          p.stderr.strip().splitlines()[-1][-200:])
    # dream on a model with fully connected layers: a clear error at any size, works at its fixed size
    r = np.random.default_rng(0)
    init = [onnx.numpy_helper.from_array(r.normal(0, 0.1, (4, 3, 3, 3)).astype(np.float32), "w"),
            onnx.numpy_helper.from_array(r.normal(0, 0.01, (10, 4 * 94 * 94)).astype(np.float32), "g"),
            onnx.numpy_helper.from_array(np.zeros(10, np.float32), "b")]
    nodes = [onnx.helper.make_node("Conv", ["input", "w"], ["c"]), onnx.helper.make_node("Relu", ["c"], ["r"]),
             onnx.helper.make_node("Flatten", ["r"], ["f"]),
             onnx.helper.make_node("Gemm", ["f", "g", "b"], ["logits"], transB=1)]
    g = onnx.helper.make_graph(nodes, "fc", [onnx.helper.make_tensor_value_info("input", 1, [1, 3, 96, 96])],
                               [onnx.helper.make_tensor_value_info("logits", 1, [1, 10])], init)
    fc = os.path.join(d, "fc.onnx")
    mfc = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 13)])
    mfc.ir_version = 7
    onnx.save(mfc, fc)
    p = run([cnnfx, "dream", "-m", fc, "--layer", "logits", "--octaves", "1", "--iterations", "1", dog, "-o",
             f"{d}/d1"], ok=False)
    check("dream on a fully connected layer at any size: clear error", p.returncode == 1 and
          "cannot run at any image size" in p.stderr and "--input-size" in p.stderr, p.stderr.strip()[-300:])
    with open(os.path.join(d, "fc.ini"), "w") as f:
        f.write("[fc]\ninput_size=96\n")
    p = run([cnnfx, "dream", "-q", "-m", fc, "--layer", "logits", "--octaves", "1", "--iterations", "1", dog, "-o",
             f"{d}/d2"])
    check("dream on it with input_size=96 in its sidecar: works", p.returncode == 0, p.stderr.strip()[-300:])
    p = run([cnnfx, "dream", "-q", "-m", "fashion_lenet", "--octaves", "1", "--iterations", "2", dog, "-o",
             f"{d}/d3"])
    check("dream -m fashion_lenet works (fixed 28x28 input: resized)", p.returncode == 0, p.stderr.strip()[-300:])
    p = run([cnnfx, "style", "--fast-model", os.path.join(REALM, "fst-wave.onnx"), "--style", dog, dog, "-o",
             f"{d}/c6"], ok=False)
    check("--style with --fast-model: clear error", p.returncode == 2 and "--fast-model" in p.stderr and
          "--style" in p.stderr, p.stderr.strip().splitlines()[-1][-200:])


CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def part_int8(cnnfx, d):
    per = 20
    photos = os.path.join(d, "cifar")
    got = {c: 0 for c in CIFAR}
    with tarfile.open(os.path.join(REALM, "cifar10-jpg.tar.gz")) as t:
        for m in t:
            if not m.isfile() or "/test/" not in m.name:
                continue
            c = m.name.split("/")[-2]
            if c not in got or got[c] >= per:
                continue
            got[c] += 1
            os.makedirs(os.path.join(photos, c), exist_ok=True)
            with open(os.path.join(photos, c, os.path.basename(m.name)), "wb") as f:
                f.write(t.extractfile(m).read())
            if all(v >= per for v in got.values()):
                break
    check("200 CIFAR-10 test photos extracted", sum(got.values()) == 10 * per, got)
    model = os.path.join(d, "mbv2.onnx")
    shutil.copy(os.path.join(REALM, "mbv2_cifar10_int8.onnx"), model)
    with open(os.path.join(d, "c10.labels"), "w") as f:
        f.write("\n".join(CIFAR) + "\n")
    mean, std = np.array([0.4914, 0.4822, 0.4465]), np.array([0.2470, 0.2435, 0.2616])
    with open(os.path.join(d, "mbv2.ini"), "w") as f:
        f.write("[mbv2]\nmean=0.4914;0.4822;0.4465\nstd=0.2470;0.2435;0.2616\ninput_size=32\nlabels=c10.labels\n")
    p = run([cnnfx, "classify", "-q", "-m", model, "-r", photos, "-o", f"{d}/out", "--overlay", "none",
             "--labels-image", "no", "--top", "1"])
    check("int8 model runs on all photos", p.returncode == 0, p.stderr[-300:])
    ref = Interp(model)
    files = [(c, f) for c in CIFAR for f in sorted(os.listdir(os.path.join(photos, c)))]
    xs = np.stack([((load_rgb(os.path.join(photos, c, f)) - mean) / std).transpose(2, 0, 1) for c, f in files])
    refs = ref.run({"input.1": xs})[ref.m.graph.output[0].name].reshape(len(files), -1).argmax(1).tolist()
    n = ok = ok_ref = agree = 0
    for (c, f), r in zip(files, refs):
        if True:
            csvp = os.path.join(d, "out", c, f[:-4] + ".csv")
            mine = read_csv(csvp)[0][0] if os.path.exists(csvp) else -1
            n += 1
            ok += mine == CIFAR.index(c)
            ok_ref += r == CIFAR.index(c)
            agree += mine == r
    acc, acc_ref = ok / n, ok_ref / n
    check("int8 accuracy >= 75%", acc >= 0.75, f"{100 * acc:.1f}%")
    check("int8 accuracy within 1 point of the reference interpreter", abs(acc - acc_ref) <= 0.01 + 1e-9,
          f"cnnfx {100 * acc:.1f}%, reference {100 * acc_ref:.1f}%")
    check("int8 per-photo agreement >= 95%", agree / n >= 0.95, f"{agree}/{n}")
    # every filter runs on the int8 model (gradients pass straight through the rounding)
    one = os.path.join(photos, "cat", sorted(os.listdir(os.path.join(photos, "cat")))[0])
    big = os.path.join(d, "cat96.png")
    Image.open(one).convert("RGB").resize((96, 96), Image.BICUBIC).save(big)
    runs = {
        "classify gradcam": ["classify", "--overlay", "gradcam"], "classify saliency": ["classify", "--overlay", "saliency"],
        "dream": ["dream", "--layer", "QLinearConv#12", "--octaves", "1", "--iterations", "2"],
        "fool": ["fool", "--epsilon", "8"], "visualize class": ["visualize", "--iterations", "20"],
        "visualize filters": ["visualize", "--mode", "filters"],
        "visualize activations": ["visualize", "--mode", "activations"],
        "style": ["style", "--style", big, "--style-layers", "QLinearConv#4", "--content-layers", "QLinearConv#8",
                  "--iterations", "3", "--size", "64"],
    }
    for k, (name, args) in enumerate(runs.items()):
        p = run([cnnfx, args[0], "-q", "-m", model, *args[1:], big, "-o", os.path.join(d, f"f{k}")])
        check(f"int8 model: {name} runs", p.returncode == 0 and os.listdir(os.path.join(d, f"f{k}")),
              p.stderr.strip()[-300:])


def part_cam(cnnfx, d):
    sq = os.path.join(REALM, "squeezenet1_1-tv.onnx")
    dog = photo("dog.jpg", (384, 288), d)
    box = (65, 155, 110, 270)
    for method in ["gradcam", "gradcam++", "saliency"]:
        od = os.path.join(d, method)
        p = run([cnnfx, "classify", "-q", "-m", sq, dog, "-o", od, "--overlay", method, "--colormap", "gray",
                 "--opacity", "1", "--labels-image", "no"])
        hp = os.path.join(od, os.path.basename(dog)[:-4] + ".heatmap.png")
        if p.returncode != 0 or not os.path.exists(hp):
            check(f"{method}: heat map written", False, p.stderr[-300:])
            continue
        h = np.asarray(Image.open(hp).convert("L"), np.float64)
        k = 32
        ii = np.pad(h, ((k // 2, k // 2), (k // 2, k // 2))).cumsum(0).cumsum(1)
        sm = ii[k:, k:] - ii[:-k, k:] - ii[k:, :-k] + ii[:-k, :-k]
        y, x = np.unravel_index(np.argmax(sm), sm.shape)
        inside = box[0] <= x <= box[1] and box[2] <= y <= box[3]
        frac = h[box[2]:box[3], box[0]:box[1]].sum() / max(h.sum(), 1e-9)
        check(f"{method}: hottest region on the dog", inside, f"at x={x} y={y}, {100 * frac:.0f}% of the heat in the "
              f"box ({100 * (box[1] - box[0]) * (box[3] - box[2]) / h.size:.0f}% of the area)")


def part_dream(cnnfx, d):
    sq = Squeeze()
    img = photo("eagle.jpg", (256, 192), d)
    concat = [n for n in sq.ref.m.graph.node if n.op_type == "Concat"][3].output[0]
    acts = []
    x0 = load_rgb(img)
    for it in [0, 1, 2, 3, 4]:
        if it == 0:
            out = img
        else:
            od = os.path.join(d, f"it{it}")
            p = run([cnnfx, "dream", "-q", "-m", sq.path, img, "-o", od, "--layer", "Concat#4", "--octaves", "1",
                     "--iterations", str(it), "--jitter", "0", "--step", "1.5"])
            out = os.path.join(od, os.path.basename(img))
            if p.returncode != 0:
                check("dream runs", False, p.stderr[-300:])
                return
        _, o = sq.probs(out, [concat])
        acts.append(float((o[concat] ** 2).mean()))
    rising = all(b > a for a, b in zip(acts, acts[1:]))
    check("dream: the layer's activation rises step after step", rising, " ".join(f"{a:.3f}" for a in acts))
    check("dream: by >= 10% over 4 steps", acts[-1] >= 1.1 * acts[0], f"{acts[-1] / acts[0]:.2f}x")
    x = load_rgb(os.path.join(d, "it4", os.path.basename(img)))
    small = lambda a: a.reshape(24, 8, 32, 8, 3).mean((1, 3))  # noqa: E731
    mse = ((small(x) - small(x0)) ** 2).mean()
    psnr = 10 * np.log10(1 / max(mse, 1e-12))
    diff = np.abs(x - x0).mean() * 255
    check("dream: the result is not noise (8x-downscaled PSNR >= 20 dB) and did change",
          psnr >= 20 and diff >= 1.0, f"PSNR {psnr:.1f} dB, mean change {diff:.1f}/255")


def part_fool(cnnfx, d):
    sq = Squeeze()
    dog = photo("dog.jpg", (224, 224), d)
    before, _ = sq.probs(dog)
    check("fool: the reference sees a malamute-family dog first", int(before.argmax()) in MALAMUTE, before.argmax())
    x0 = np.asarray(Image.open(dog).convert("RGB"), np.int32)
    for eps, target in [(2, None), (4, 281)]:
        od = os.path.join(d, f"fool{eps}")
        args = [cnnfx, "fool", "-q", "-m", sq.path, dog, "-o", od, "--epsilon", str(eps)]
        if target is not None:
            args += ["--target", str(target)]
        p = run(args)
        out = os.path.join(od, os.path.basename(dog))
        if p.returncode != 0 or not os.path.exists(out):
            check(f"fool eps={eps}: runs", False, p.stderr[-300:])
            continue
        x = np.asarray(Image.open(out).convert("RGB"), np.int32)
        after, _ = sq.probs(out)
        linf = int(np.abs(x - x0).max())
        what = f"untargeted eps={eps}" if target is None else f"targeted (tabby) eps={eps}"
        ok = (int(after.argmax()) != int(before.argmax())) if target is None else int(after.argmax()) == target
        check(f"fool {what}: succeeds after the 8-bit save (reference)", ok,
              f"reference top-1 {before.argmax()} -> {after.argmax()} ({after.max():.2f})")
        check(f"fool {what}: L-inf <= eps", linf <= eps, f"{linf}/255")


def part_style(cnnfx, d):
    src = Image.open(os.path.join(PHOTOS, "horses.jpg")).convert("RGB")
    cases = [("fst-wave", src.crop((200, 120, 587, 378))), ("fst-udnie", src.resize((101, 75), Image.BILINEAR))]
    for name, im in cases:
        path = os.path.join(d, f"{name}_{im.size[0]}x{im.size[1]}.png")
        im.save(path)
        model = os.path.join(REALM, name + ".onnx")
        od = os.path.join(d, name)
        p = run([cnnfx, "style", "-q", "--fast-model", model, path, "-o", od])
        out = os.path.join(od, os.path.basename(path))
        if p.returncode != 0:
            check(f"{name} on a {im.size[0]}x{im.size[1]} photo: runs", False, p.stderr[-300:])
            continue
        x = np.asarray(im, np.float32).transpose(2, 0, 1)[None]
        H, W = x.shape[2:]
        xp = np.pad(x, ((0, 0), (0, 0), (0, -H % 4), (0, -W % 4)), mode="edge")
        ref = Interp(model, torch.float32)
        y = ref.run({"input": xp})["output"][0].numpy()[:, :H, :W].transpose(1, 2, 0)
        y8 = np.clip(np.round(np.clip(y, 0, 255)), 0, 255)
        mine = np.asarray(Image.open(out).convert("RGB"), np.float64)
        err = np.abs(mine - y8).mean()
        check(f"{name} on an odd-size {W}x{H} photo equals the PyTorch reference within 1/255 on average",
              mine.shape == y8.shape and err <= 1.0, f"mean |diff| {err:.3f}/255, max {np.abs(mine - y8).max():.0f}")


PARTS = {"classify": part_classify, "int8": part_int8, "cam": part_cam, "dream": part_dream, "fool": part_fool,
         "style": part_style}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    ap.add_argument("--part", choices=sorted(PARTS), action="append")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    if not os.path.isdir(REALM):
        print("skipped: ../shared/realm missing (real networks, see the project notes)")
        return 77
    if not os.path.isdir(PHOTOS):
        print(f"skipped: {PHOTOS} missing (darknet photos, Debian package darknet)")
        return 77
    d = tempfile.mkdtemp(prefix="cnnfx-realm-")
    try:
        for part in a.part or sorted(PARTS):
            os.makedirs(os.path.join(d, part), exist_ok=True)
            PARTS[part](a.cnnfx, os.path.join(d, part))
    finally:
        if a.keep:
            print("kept", d)
        else:
            shutil.rmtree(d, ignore_errors=True)
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    sys.exit(main())
