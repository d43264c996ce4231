#!/usr/bin/python3
"""Before/after pictures of every filter on real, trained networks (../shared/realm):
docs/img/real-*.jpg / .png, used by docs/filters.md ("On real networks") and the README gallery.

    docs/make_real_gallery.py BUILD/batch/cnnfx

Needs ../shared/realm (SqueezeNet 1.1, fst-wave / fst-udnie, the int8 MobileNetV2 and the
CIFAR-10 JPEGs) and darknet's photos (/usr/share/darknet/data).  Every command is printed.
"""
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)
REALM = os.path.join(SRC, "..", "shared", "realm")
OUT = os.path.join(HERE, "img")
PHOTOS = "/usr/share/darknet/data"
SQ = os.path.join(REALM, "squeezenet1_1-tv.onnx")
CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def sh(args):
    print("$", " ".join(args), flush=True)
    subprocess.run(args, check=True)


def side_by_side(paths, out, height=288, captions=None, quality=88):
    ims = [Image.open(p).convert("RGB") for p in paths]
    ims = [im.resize((round(im.width * height / im.height), height), Image.LANCZOS) for im in ims]
    cap = 18 if captions else 0
    W = sum(im.width for im in ims) + 4 * (len(ims) - 1)
    canvas = Image.new("RGB", (W, height + cap), (255, 255, 255))
    x = 0
    d = ImageDraw.Draw(canvas)
    for i, im in enumerate(ims):
        canvas.paste(im, (x, cap))
        if captions:
            d.text((x + 4, 3), captions[i], fill=(0, 0, 0))
        x += im.width + 4
    if out.endswith(".png"):
        canvas.save(out)
    else:
        canvas.save(out, quality=quality)
    print("wrote", out)


def main():
    cnnfx = os.path.abspath(sys.argv[1])
    if not os.path.isdir(REALM):
        sys.exit("../shared/realm missing")
    d = tempfile.mkdtemp(prefix="cnnfx-gallery-")
    try:
        dog = os.path.join(d, "dog.png")
        Image.open(os.path.join(PHOTOS, "dog.jpg")).convert("RGB").resize((384, 288), Image.LANCZOS).save(dog)
        # classify: labels + Grad-CAM
        sh([cnnfx, "classify", "-m", SQ, dog, "-o", f"{d}/cl", "--overlay", "gradcam", "--top", "3"])
        side_by_side([dog, f"{d}/cl/dog.labels.png", f"{d}/cl/dog.heatmap.png"],
                     os.path.join(OUT, "real-classify.jpg"),
                     captions=["photo", "SqueezeNet 1.1: top 3", "Grad-CAM of the top class"])
        sh([cnnfx, "classify", "-m", SQ, dog, "-o", f"{d}/cl2", "--overlay", "gradcam++", "--labels-image", "no"])
        sh([cnnfx, "classify", "-m", SQ, dog, "-o", f"{d}/cl3", "--overlay", "saliency", "--labels-image", "no"])
        side_by_side([f"{d}/cl2/dog.heatmap.png", f"{d}/cl3/dog.heatmap.png"], os.path.join(OUT, "real-heatmaps.jpg"),
                     captions=["Grad-CAM++", "saliency"])
        # dream
        eagle = os.path.join(d, "eagle.png")
        Image.open(os.path.join(PHOTOS, "eagle.jpg")).convert("RGB").resize((384, 256), Image.LANCZOS).save(eagle)
        sh([cnnfx, "dream", "-m", SQ, eagle, "-o", f"{d}/dr", "--layer", "Concat#4", "--octaves", "3",
            "--iterations", "8"])
        side_by_side([eagle, f"{d}/dr/eagle.png"], os.path.join(OUT, "real-dream.jpg"),
                     captions=["photo", "Deep Dream, SqueezeNet 1.1 fire5 (Concat#4)"])
        # fast style on an odd-size photo (773 x 512: padded to the network's stride and cropped back)
        horses = os.path.join(PHOTOS, "horses.jpg")
        for st in ("wave", "udnie"):
            sh([cnnfx, "style", "--fast-model", os.path.join(REALM, f"fst-{st}.onnx"), horses, "-o", f"{d}/st-{st}"])
        side_by_side([horses, f"{d}/st-wave/horses.jpg", f"{d}/st-udnie/horses.jpg"],
                     os.path.join(OUT, "real-style.jpg"), height=256,
                     captions=["photo 773x512", "fast style: wave", "fast style: udnie"])
        # fool: untargeted, eps 2
        dog224 = os.path.join(d, "dog224.png")
        Image.open(os.path.join(PHOTOS, "dog.jpg")).convert("RGB").resize((224, 224), Image.LANCZOS).save(dog224)
        sh([cnnfx, "fool", "-m", SQ, dog224, "-o", f"{d}/fo", "--epsilon", "2"])
        sh([cnnfx, "classify", "-m", SQ, f"{d}/fo/dog224.png", "-o", f"{d}/fo-cl", "--overlay", "none", "--top", "1"])
        sh([cnnfx, "classify", "-m", SQ, dog224, "-o", f"{d}/fo-cl0", "--overlay", "none", "--top", "1"])
        before = open(f"{d}/fo-cl0/dog224.csv").read().split("\n")[1].split(",")
        after = open(f"{d}/fo-cl/dog224.csv").read().split("\n")[1].split(",")
        side_by_side([f"{d}/fo-cl0/dog224.labels.png", f"{d}/fo-cl/dog224.labels.png", f"{d}/fo/dog224.noise.png"],
                     os.path.join(OUT, "real-fool.png"), height=224,
                     captions=[f"{before[3].strip(chr(34))}", f"eps 2/255: {after[3].strip(chr(34))}", "noise x20"])
        # visualize: class model of 'goldfish' and the first layer's filters
        sh([cnnfx, "visualize", "-m", SQ, dog224, "-o", f"{d}/vi", "--class", "goldfish", "--iterations", "150"])
        sh([cnnfx, "visualize", "-m", SQ, dog224, "-o", f"{d}/vf", "--mode", "filters", "--size", "224"])
        side_by_side([f"{d}/vi/dog224.png", f"{d}/vf/dog224.png"], os.path.join(OUT, "real-visualize.png"),
                     height=224, captions=["class 'goldfish'", "conv1 filters"])
        # int8 CIFAR-10 model: one test photo per class, with its prediction
        cif = os.path.join(d, "cifar")
        got = set()
        with tarfile.open(os.path.join(REALM, "cifar10-jpg.tar.gz")) as t:
            for m in t:
                c = m.name.split("/")[-2] if m.isfile() and "/test/" in m.name else None
                if c in CIFAR and c not in got:
                    got.add(c)
                    os.makedirs(cif, exist_ok=True)
                    with open(os.path.join(cif, f"{CIFAR.index(c)}_{c}.jpg"), "wb") as f:
                        f.write(t.extractfile(m).read())
                    if len(got) == 10:
                        break
        mb = os.path.join(d, "mbv2_cifar10_int8.onnx")
        shutil.copy(os.path.join(REALM, "mbv2_cifar10_int8.onnx"), mb)
        with open(os.path.join(d, "c10.labels"), "w") as f:
            f.write("\n".join(CIFAR) + "\n")
        with open(os.path.join(d, "mbv2_cifar10_int8.ini"), "w") as f:
            f.write("[mbv2]\nmean=0.4914;0.4822;0.4465\nstd=0.2470;0.2435;0.2616\ninput_size=32\nlabels=c10.labels\n")
        sh([cnnfx, "classify", "-m", mb, cif, "-o", f"{d}/c10", "--overlay", "none", "--labels-image", "no",
            "--top", "1"])
        files = sorted(os.listdir(cif))
        tile = 96
        canvas = Image.new("RGB", (5 * (tile + 4), 2 * (tile + 30)), (255, 255, 255))
        dr = ImageDraw.Draw(canvas)
        for i, fn in enumerate(files):
            im = Image.open(os.path.join(cif, fn)).convert("RGB").resize((tile, tile), Image.NEAREST)
            x, y = (i % 5) * (tile + 4), (i // 5) * (tile + 30)
            canvas.paste(im, (x, y + 28))
            row = open(os.path.join(d, "c10", fn[:-4] + ".csv")).read().split("\n")[1].split(",")
            dr.text((x + 2, y + 2), f"{row[3].strip(chr(34))} {100 * float(row[4]):.0f}%", fill=(0, 0, 0))
            dr.text((x + 2, y + 14), f"(is {fn[2:-4]})", fill=(90, 90, 90))
        canvas.save(os.path.join(OUT, "real-int8.png"))
        print("wrote", os.path.join(OUT, "real-int8.png"))
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
