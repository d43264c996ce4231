#!/usr/bin/python3
"""`cnnfx train --ensemble N`: N networks of one recipe with seeds SEED, SEED+1, ... and one file whose
logits are the mean of theirs.

On a tiny ImageFolder (10 classes, 2 training and 1 test PNG each; cifar-tiny-gelu, 2 epochs):
- the members OUT.net1.onnx, OUT.net2.onnx (with sidecars) differ (other seeds), and OUT.onnx is one
  graph: the first member's layers under their own names (Grad-CAM / dream layers stay valid), the
  second's prefixed "net2.", a Sum and a Mul by 1/2;
- `cnnfx classify` of OUT.onnx (with the 6-view test-time augmentation of its sidecar) gives
  softmax(mean_k log p_k), p_k the members' classify probabilities: the mean of the logits;
- the accuracy the run prints and writes into the sidecar is what classify gets on the test photos;
- `cnnfx train --from OUT.onnx` (transfer learning) fine-tunes the first network;
- --ensemble with --resume, or 0, is refused; a member that fails stops the run without OUT.onnx.
- kill -9 during the second member (after its second checkpoint), then the same command again: the
  first member is kept, the second continues from its checkpoint, and every file has the bytes of
  an uninterrupted run; with another recipe (--lr), or the same one after a photo was added, the
  same folder trains anew.
"""
import argparse, json, os, re, shutil, subprocess, sys, tempfile

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tiny_folder import make_tiny_folder  # noqa: E402

results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(("PASS " if ok else "FAIL ") + name + (": " + detail if detail else ""), flush=True)


def classify(cnnfx, model, img, out):
    r = subprocess.run([cnnfx, "classify", "-m", model, "--top", "10", "--overlay", "none", "--labels-image", "no",
                        "--format", "json", img, "-o", out], capture_output=True, text=True)
    if r.returncode:
        return None
    rep = json.load(open(os.path.join(out, os.path.splitext(os.path.basename(img))[0] + ".json")))
    p = np.zeros(10)
    for e in rep["top"]:
        p[e["index"]] = e["prob"]
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnnfx-ensemble-") as tmp:
        root = os.path.join(tmp, "data")
        make_tiny_folder(root, np.random.default_rng(0), structured=True)
        out = os.path.join(tmp, "ens.onnx")
        cmd = [a.cnnfx, "train", "--data", root, "--arch", "cifar-tiny-gelu", "--epochs", "2", "--batch-size", "10",
               "--lr", "0.05", "--tta-translate", "--bn-recalibrate", "20", "--seed", "7", "--ensemble", "2", "-o", out]
        r = subprocess.run(cmd, capture_output=True, text=True)
        check("--ensemble 2 run", r.returncode == 0, (r.stdout + r.stderr)[-500:] if r.returncode else "")
        if r.returncode:
            print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
            return 1
        n1, n2 = os.path.join(tmp, "ens.net1.onnx"), os.path.join(tmp, "ens.net2.onnx")
        check("members and sidecars written", all(os.path.exists(p) for p in
                                                   (n1, n2, n1[:-5] + ".ini", n2[:-5] + ".ini", out[:-5] + ".ini")))
        seeds = re.findall(r"training cifar-tiny-gelu: .*seed (\d+)", r.stderr)
        check("members trained with seeds 7 and 8", seeds == ["7", "8"], str(seeds))
        w1 = {t.name: numpy_helper.to_array(t) for t in onnx.load(n1).graph.initializer}
        w2 = {t.name: numpy_helper.to_array(t) for t in onnx.load(n2).graph.initializer}
        check("the members differ", any(not np.array_equal(w1[k], w2[k]) for k in w1 if k.endswith("conv1.weight")))
        em = onnx.load(out)
        names = {t.name for t in em.graph.initializer}
        ops = [n.op_type for n in em.graph.node]
        check("one graph: member 1's names, member 2's prefixed net2., Sum and Mul",
              set(w1) <= names and {"net2." + k for k in w2} <= names and ops[-2:] == ["Sum", "Mul"] and
              em.graph.output[0].name == "logits" and any(n.output[0] == "b3.gelu2" for n in em.graph.node),
              f"last ops {ops[-2:]}")
        ew = {t.name: numpy_helper.to_array(t) for t in em.graph.initializer}
        check("member weights copied exactly", all(np.array_equal(ew[k], w1[k]) for k in w1) and
              all(np.array_equal(ew["net2." + k], w2[k]) for k in w2))
        ini = open(out[:-5] + ".ini").read()
        check("sidecar: tta, Grad-CAM and dream layers of member 1",
              "tta=flip-translate" in ini and "cam_layer=b3.gelu2" in ini and "dream_layers=b2.gelu2" in ini)

        # classify: softmax of the mean of the members' (6-view) logits
        worst, right = 0.0, 0
        for c in range(10):
            img = os.path.join(root, "test", f"c{c}", "0.png")
            p = [classify(a.cnnfx, m, img, os.path.join(tmp, f"cls{i}_{c}")) for i, m in enumerate((n1, n2, out))]
            if any(v is None for v in p):
                worst = 1.0
                break
            z = 0.5 * (np.log(p[0]) + np.log(p[1]))
            want = np.exp(z - z.max())
            want /= want.sum()
            worst = max(worst, float(np.abs(p[2] - want).max()))
            right += int(np.argmax(p[2]) == c)
        check("classify(ensemble) = softmax(mean of the members' logits)", worst < 2e-4, f"max diff {worst:.2e}")
        m = re.search(r"ensemble of 2: test loss [0-9.]+  test acc ([0-9.]+)", r.stdout)
        acc = float(m.group(1)) if m else -1
        check("the printed accuracy is classify's on the 10 test photos", abs(acc - right / 10) < 1e-9,
              f"printed {acc}, classify {right}/10")
        check("the sidecar holds that accuracy", f"Held-out accuracy {acc:.4f} on 10 images" in ini)

        # transfer learning from the ensemble fine-tunes its first network
        tl = os.path.join(tmp, "tl.onnx")
        r = subprocess.run([a.cnnfx, "train", "--from", out, "--data", root, "--epochs", "1", "--batch-size", "10",
                            "-o", tl], capture_output=True, text=True)
        ok = r.returncode == 0 and "is an ensemble: its first network is fine-tuned" in r.stderr
        check("--from an ensemble: runs, says it takes the first network", ok, (r.stdout + r.stderr)[-300:])
        if ok:
            tn = {t.name for t in onnx.load(tl).graph.initializer}
            tw = {t.name: numpy_helper.to_array(t) for t in onnx.load(tl).graph.initializer}
            check("(the result is the first network: no net2., its stem unchanged)",
                  not any(k.startswith("net2.") for k in tn) and np.array_equal(tw["whiten.weight"], w1["whiten.weight"]))

        # refusals, and a failing member leaves no OUT.onnx
        for extra, what in ((["--resume", n1], "--resume"), (["--ensemble", "0"], "0")):
            r = subprocess.run(cmd[:-2] + extra + ["-o", os.path.join(tmp, "x.onnx")], capture_output=True, text=True)
            check(f"--ensemble with {what} is refused", r.returncode == 2 and "--ensemble" in r.stderr, r.stderr[-200:])
        one = os.path.join(tmp, "one")
        for split in ("train", "test"):  # one class: the first member fails
            os.makedirs(os.path.join(one, split, "a"))
            os.link(os.path.join(root, "test", "c0", "0.png"), os.path.join(one, split, "a", "0.png"))
        bad = os.path.join(tmp, "bad.onnx")
        r = subprocess.run([a.cnnfx, "train", "--data", one, "--arch", "cifar-tiny-gelu", "--ensemble", "2", "-o", bad],
                           capture_output=True, text=True)
        check("a member that fails: an error, no OUT.onnx",
              r.returncode == 1 and "class count 1" in r.stderr and not os.path.exists(bad), r.stderr[-200:])
        kill_and_continue(a.cnnfx, root, tmp)
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


def kill_and_continue(cnnfx, root, tmp):
    def cmd(d, lr="0.05"):
        return [cnnfx, "train", "--data", root, "--arch", "cifar-tiny-gelu", "--epochs", "40", "--batch-size", "10",
                "--lr", lr, "--bn-recalibrate", "20", "--seed", "3", "--ensemble", "2", "--checkpoint-every", "1",
                "-o", os.path.join(d, "e.onnx")]
    ref, cut = os.path.join(tmp, "ref"), os.path.join(tmp, "cut")
    os.makedirs(ref)
    os.makedirs(cut)
    r = subprocess.run(cmd(ref), capture_output=True, text=True)
    check("uninterrupted --ensemble 2 --checkpoint-every 1", r.returncode == 0 and
          not os.path.exists(os.path.join(ref, "e.ensemble")), r.stderr[-300:])
    p = subprocess.Popen(cmd(cut), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen = 0
    for line in p.stderr:
        if line.startswith("checkpoint ") and "e.net2.ckpt.onnx" in line:
            seen += 1
            if seen == 2:
                p.kill()  # SIGKILL: no cleanup runs
                break
    p.wait()
    left = sorted(os.listdir(cut))
    check("killed during network 2: network 1 and network 2's checkpoint on disk, no e.onnx",
          p.returncode == -9 and "e.net1.onnx" in left and "e.net2.ckpt.onnx" in left and "e.onnx" not in left and
          "e.ensemble" in left, f"rc {p.returncode}, {left}")
    recipe = open(os.path.join(cut, "e.ensemble")).read()
    check("the recipe names the data's fingerprint", "data_sha256=" in recipe and
          len(recipe.split("data_sha256=")[1].strip()) == 64, recipe[-120:])
    r = subprocess.run(cmd(cut), capture_output=True, text=True)
    ok = r.returncode == 0 and "continuing an interrupted run" in r.stderr
    check("the same command again: continues", ok, r.stderr[-400:])
    check("(network 1 kept, network 2 from its checkpoint)",
          "network 1 of 2: " in r.stderr and "finished before; kept" in r.stderr and
          "from " + os.path.join(cut, "e.net2.ckpt.onnx") in r.stderr and r.stderr.count("training cifar-tiny-gelu") == 1,
          r.stderr[-600:])
    same = ok and all(open(os.path.join(ref, f), "rb").read() == open(os.path.join(cut, f), "rb").read()
                      for f in ("e.onnx", "e.net1.onnx", "e.net2.onnx"))
    check("the continued run's files have the uninterrupted run's bytes", same)
    check("done: no e.ensemble left", not os.path.exists(os.path.join(cut, "e.ensemble")))
    # another recipe in a folder with an interrupted run: nothing of the old run is kept
    open(os.path.join(cut, "e.ensemble"), "w").write("cnnfx train --ensemble 2: some other recipe\n")
    r = subprocess.run(cmd(cut, lr="0.04"), capture_output=True, text=True)
    check("another recipe: both networks trained anew", r.returncode == 0 and "kept" not in r.stderr and
          "continuing" not in r.stderr and r.stderr.count("training cifar-tiny-gelu") == 2, r.stderr[-400:])
    # the same command after the photos changed: the interrupted run's networks saw other data
    open(os.path.join(cut, "e.ensemble"), "w").write(recipe)
    extra = os.path.join(root, "train", "c0", "zz-added.png")
    shutil.copyfile(os.path.join(root, "train", "c0", sorted(os.listdir(os.path.join(root, "train", "c0")))[0]), extra)
    try:
        r = subprocess.run(cmd(cut), capture_output=True, text=True)
    finally:
        os.unlink(extra)
    check("the same command on changed photos: both networks trained anew", r.returncode == 0 and
          "kept" not in r.stderr and "continuing" not in r.stderr and
          r.stderr.count("training cifar-tiny-gelu") == 2, r.stderr[-400:])


if __name__ == "__main__":
    sys.exit(main())
