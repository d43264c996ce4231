#!/usr/bin/python3
"""Sharding a batch over workers (batch/shard.c) and merging their reports (batch/cmd_report.c).

A folder of small photos (darknet's, shrunk, plus flipped copies, in a sub-folder too) is
classified (offline default model) in N shards, each a separate process, chosen
  - by flag:             --shard K/N
  - by Slurm variables:  SLURM_ARRAY_TASK_ID / _COUNT / _MIN (1-based and 0-based arrays, a
                         stepped array, _COUNT missing, _MIN missing)
  - by Kubernetes:       JOB_COMPLETION_INDEX (0-based) with --shard-count N or CNNFX_SHARD_COUNT
Each way: every photo processed exactly once (one NAME.csv per photo, disjoint), the same split
by every way and on every run, equal to the documented hash (1 + SHA-1(rel)[:8] mod N), the same
when the folder is copied elsewhere with its files created in another order or the files are
given one by one in shuffled order.  The line "shard K/N: M of T inputs" is printed (not with -q).
Bad shards (0/3, 4/3, x/3, JOB_COMPLETION_INDEX without a count, ...) are usage errors (exit 2,
nothing written).  60 tiny images split into 3 and 7 shards: every shard gets some.
`cnnfx report merge` combines the shards' CSV (and JSON) classify reports and fool reports into
one table with the label counts and the fooling success rate; a shard input without output is
listed and makes it exit 1.

Usage: test_shard.py --cnnfx BUILD/batch/cnnfx [--keep]
Prints PASS/FAIL lines and "N passed, M failed"; exit 1 on failure.
"""
import argparse
import csv
import glob
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

from PIL import Image

PHOTOS = "/usr/share/darknet/data"
results = []
SHARD_ENV = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_MAX",
             "SLURM_ARRAY_TASK_STEP", "JOB_COMPLETION_INDEX", "CNNFX_SHARD_COUNT")


def check(ok, name, detail=""):
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'} {name}" + (f" ({detail})" if detail and not ok else ""), flush=True)


def shard_of(rel, n):
    return 1 + int.from_bytes(hashlib.sha1(rel.encode()).digest()[:8], "big") % n


def clean_env(**kw):
    env = {k: v for k, v in os.environ.items() if k not in SHARD_ENV}
    env["OMP_WAIT_POLICY"] = "passive"
    env.update({k: str(v) for k, v in kw.items()})
    return env


def run(cnnfx, args, env=None):
    return subprocess.run([cnnfx] + args, capture_output=True, text=True, env=env or clean_env(), timeout=600)


def reports(out):
    """relative paths (without .csv) of the classify reports under out"""
    got = []
    for d, dirs, fs in os.walk(out):
        dirs[:] = [x for x in dirs if not x.startswith(".")]
        for f in fs:
            if f.endswith(".csv") and not f.startswith("cnnfx-"):
                got.append(os.path.relpath(os.path.join(d, f), out)[:-4])
    return sorted(got)


def make_photos(folder, order_seed=None):
    """9 small photos: 7 darknet ones shrunk + 2 flipped copies in sub/; files created in an order"""
    items = []
    for i, f in enumerate(sorted(glob.glob(os.path.join(PHOTOS, "*.jpg")))):
        im = Image.open(f).convert("RGB")
        im.thumbnail((80, 80))
        items.append((f"p{i:02d}.jpg", im))
        if i < 2:
            items.append((f"sub/f{i:02d}.jpg", im.transpose(Image.FLIP_LEFT_RIGHT)))
    if order_seed is not None:
        random.Random(order_seed).shuffle(items)
    for rel, im in items:
        os.makedirs(os.path.dirname(os.path.join(folder, rel)), exist_ok=True)
        im.save(os.path.join(folder, rel), quality=90)
    return sorted(os.path.splitext(rel)[0] for rel, _ in items)


def split_by(cnnfx, tmp, tag, src, n, arg_env, extra=()):
    """run n shards; arg_env(k) -> (extra args, env); returns ({k: [reports]}, [stderr])"""
    parts, errs = {}, []
    for k in range(1, n + 1):
        args, env = arg_env(k)
        out = os.path.join(tmp, f"{tag}-{k}")
        p = run(cnnfx, ["classify", "-r", *extra, *args, src, "-o", out], env)
        errs.append(p.stderr)
        if p.returncode != 0:
            check(False, f"{tag}: shard {k} exit 0", f"rc={p.returncode}\n{p.stderr}")
        parts[k] = reports(out) if os.path.isdir(out) else []
    return parts, errs


def check_partition(tag, parts, names, ref=None):
    flat = [x for v in parts.values() for x in v]
    check(sorted(flat) == names, f"{tag}: every photo processed exactly once",
          f"{sorted(flat)} vs {names}")
    if ref is not None:
        check(parts == ref, f"{tag}: the same split as --shard K/N", f"{parts} vs {ref}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    cnnfx = a.cnnfx
    tmp = tempfile.mkdtemp(prefix="cnnfx-shard-")
    src = os.path.join(tmp, "photos")
    names = make_photos(src)
    N = 3

    # 1. by flag
    flag, errs = split_by(cnnfx, tmp, "flag", src, N, lambda k: (["--shard", f"{k}/{N}"], None))
    check_partition("--shard K/3", flag, names)
    want = {k: sorted(x for x in names if shard_of(x + ".jpg", N) == k) for k in range(1, N + 1)}
    check(flag == want, "split = 1 + SHA-1(relative path)[:8] mod N (documented hash)", f"{flag} vs {want}")
    check(sum(1 for v in flag.values() if v) >= 2, "the 9 photos spread over the shards", str(flag))
    lines = [re.search(r"^shard (\d+)/(\d+): (\d+) of (\d+) inputs$", e, re.M) for e in errs]
    check(all(m and int(m[1]) == k + 1 and int(m[2]) == N and int(m[3]) == len(flag[k + 1]) and int(m[4]) == len(names)
              for k, m in enumerate(lines)), "prints 'shard K/N: M of T inputs'", str(errs))
    again, _ = split_by(cnnfx, tmp, "flag-again", src, N, lambda k: (["--shard", f"{k}/{N}"], None))
    check(again == flag, "a second run gives the same split")

    # 2. by Slurm array variables
    def slurm(ids, **more):
        return lambda k: ([], clean_env(SLURM_ARRAY_TASK_ID=ids[k - 1], **more))
    s1, _ = split_by(cnnfx, tmp, "slurm1", src, N, slurm([1, 2, 3], SLURM_ARRAY_TASK_COUNT=3, SLURM_ARRAY_TASK_MIN=1,
                                                         SLURM_ARRAY_TASK_MAX=3))
    check_partition("Slurm --array=1-3", s1, names, flag)
    s0, _ = split_by(cnnfx, tmp, "slurm0", src, N, slurm([0, 1, 2], SLURM_ARRAY_TASK_COUNT=3, SLURM_ARRAY_TASK_MIN=0))
    check_partition("Slurm --array=0-2", s0, names, flag)
    s5, _ = split_by(cnnfx, tmp, "slurm5", src, N, slurm([5, 6, 7], SLURM_ARRAY_TASK_MIN=5, SLURM_ARRAY_TASK_MAX=7))
    check_partition("Slurm --array=5-7 without _COUNT", s5, names, flag)
    st, _ = split_by(cnnfx, tmp, "slurmstep", src, N, slurm([10, 12, 14], SLURM_ARRAY_TASK_COUNT=3,
                                                            SLURM_ARRAY_TASK_MIN=10, SLURM_ARRAY_TASK_STEP=2))
    check_partition("Slurm --array=10-14:2", st, names, flag)
    nm, _ = split_by(cnnfx, tmp, "slurmnomin", src, N, slurm([1, 2, 3], SLURM_ARRAY_TASK_COUNT=3))
    check_partition("Slurm ids 1-3 without _MIN", nm, names, flag)
    nm0, _ = split_by(cnnfx, tmp, "slurmnomin0", src, N, slurm([0, 1, 2], SLURM_ARRAY_TASK_COUNT=3))
    check_partition("Slurm ids 0-2 without _MIN", nm0, names)

    # 3. by JOB_COMPLETION_INDEX (Kubernetes indexed Job)
    k8, _ = split_by(cnnfx, tmp, "k8s", src, N, lambda k: (["--shard-count", str(N)],
                                                           clean_env(JOB_COMPLETION_INDEX=k - 1)))
    check_partition("JOB_COMPLETION_INDEX + --shard-count", k8, names, flag)
    k8e, _ = split_by(cnnfx, tmp, "k8senv", src, N, lambda k: ([], clean_env(JOB_COMPLETION_INDEX=k - 1,
                                                                             CNNFX_SHARD_COUNT=N)))
    check_partition("JOB_COMPLETION_INDEX + CNNFX_SHARD_COUNT", k8e, names, flag)

    # 4. stable across file order and location: a copy created in shuffled order, and files one by one
    src2 = os.path.join(tmp, "elsewhere", "copy")
    make_photos(src2, order_seed=7)
    moved, _ = split_by(cnnfx, tmp, "moved", src2, N, lambda k: (["--shard", f"{k}/{N}"], None))
    check(moved == flag, "same split for a copy elsewhere, files created in another order", f"{moved} vs {flag}")
    top = [os.path.join(src, f) for f in os.listdir(src) if f.endswith(".jpg")]
    random.Random(3).shuffle(top)
    ones = {}
    for k in range(1, N + 1):
        out = os.path.join(tmp, f"files-{k}")
        p = run(cnnfx, ["classify", "-q", "--shard", f"{k}/{N}", *top, "-o", out])
        ones[k] = reports(out) if p.returncode == 0 and os.path.isdir(out) else None
    check(ones == {k: [x for x in v if "/" not in x] for k, v in flag.items()},
          "files given one by one, shuffled: same split", f"{ones}")

    # 5. usage errors: exit 2, nothing written
    bad = [(["--shard", "0/3"], None), (["--shard", "4/3"], None), (["--shard", "x/3"], None),
           (["--shard", "3"], None), (["--shard", "1/0"], None), (["--shard", "2/3", "--shard-count", "4"], None),
           (["--shard-count", "3"], None), ([], clean_env(JOB_COMPLETION_INDEX=0)),
           (["--shard-count", "3"], clean_env(JOB_COMPLETION_INDEX=3)),
           ([], clean_env(JOB_COMPLETION_INDEX="x", CNNFX_SHARD_COUNT=3)),
           ([], clean_env(SLURM_ARRAY_TASK_ID=5, SLURM_ARRAY_TASK_COUNT=3, SLURM_ARRAY_TASK_MIN=1)),
           ([], clean_env(SLURM_ARRAY_TASK_ID=2)),
           ([], clean_env(SLURM_ARRAY_TASK_ID=3, SLURM_ARRAY_TASK_COUNT=3, SLURM_ARRAY_TASK_MIN=0,
                          SLURM_ARRAY_TASK_STEP=2))]
    for i, (args, env) in enumerate(bad):
        out = os.path.join(tmp, f"bad-{i}")
        p = run(cnnfx, ["classify", "-r", *args, src, "-o", out], env)
        desc = " ".join(args) + " " + " ".join(f"{k}={v}" for k, v in (env or {}).items() if k in SHARD_ENV)
        check(p.returncode == 2 and not os.path.exists(out) and p.stderr.strip(), f"usage error: {desc.strip()}",
              f"rc={p.returncode} {p.stderr}")
    out = os.path.join(tmp, "all")
    p = run(cnnfx, ["classify", "-r", "--shard", "1/1", src, "-o", out],
            clean_env(SLURM_ARRAY_TASK_ID=2, SLURM_ARRAY_TASK_COUNT=3, SLURM_ARRAY_TASK_MIN=1))
    check(p.returncode == 0 and reports(out) == names, "--shard 1/1 overrides the environment: every input")
    p = run(cnnfx, ["classify", "-r", "-q", "--shard", "1/3", src, "-o", os.path.join(tmp, "quiet")])
    check(p.returncode == 0 and "shard" not in p.stderr, "-q: no shard line", p.stderr)
    p = run(cnnfx, ["classify", "-r", src, "-o", os.path.join(tmp, "noshard")])
    check(p.returncode == 0 and not re.search(r"^shard ", p.stderr, re.M) and
          reports(os.path.join(tmp, "noshard")) == names, "no shard given: every input, no shard line")

    # 6. balance over many names: 60 tiny images in 3 and 7 shards
    many = os.path.join(tmp, "many")
    os.makedirs(many)
    for i in range(60):
        Image.new("RGB", (8, 8), (i * 4, 100, 200 - i * 3)).save(os.path.join(many, f"img_{i:03d}.png"))
    for n in (3, 7):
        counts = []
        for k in range(1, n + 1):
            p = run(cnnfx, ["classify", "--shard", f"{k}/{n}", "--overlay", "none", many, "-o",
                            os.path.join(tmp, f"many{n}-{k}")])
            m = re.search(r"^shard \d+/\d+: (\d+) of 60 inputs$", p.stderr, re.M)
            counts.append(int(m[1]) if m and p.returncode == 0 else -1)
        check(sum(counts) == 60 and min(counts) >= 60 // n // 3, f"60 inputs over {n} shards: all, none empty",
              str(counts))

    # 7. report merge over one output tree written by three shards (flag, Slurm, k8s)
    shared = os.path.join(tmp, "shared")
    envs = [(["--shard", "1/3"], None),
            ([], clean_env(SLURM_ARRAY_TASK_ID=2, SLURM_ARRAY_TASK_COUNT=3, SLURM_ARRAY_TASK_MIN=1)),
            (["--shard-count", "3"], clean_env(JOB_COMPLETION_INDEX=2))]
    ok = all(run(cnnfx, ["classify", "-r", "-q", *args, src, "-o", shared], env).returncode == 0 for args, env in envs)
    check(ok and reports(shared) == names, "three shards (flag, Slurm, k8s) into one output tree: all photos")
    check(sorted(os.listdir(os.path.join(shared, ".cnnfx-shards"))) == ["1-of-3.tsv", "2-of-3.tsv", "3-of-3.tsv"],
          "each shard leaves its input list in .cnnfx-shards/")
    p = run(cnnfx, ["report", "merge", shared])
    check(p.returncode == 0, "report merge: exit 0", p.stdout + p.stderr)
    merged = os.path.join(shared, "cnnfx-report.csv")
    rows = list(csv.DictReader(open(merged))) if os.path.exists(merged) else []
    per = []
    for n in names:
        per += list(csv.DictReader(open(os.path.join(shared, n + ".csv"))))
    check(rows and list(rows[0].keys()) == ["file", "rank", "index", "label", "probability"],
          "merged table has the classify columns")
    check(sorted(map(lambda r: tuple(r.values()), rows)) == sorted(map(lambda r: tuple(r.values()), per)),
          "merged table = every per-image row once", f"{len(rows)} vs {len(per)}")
    top1 = {}
    for r in per:
        if r["rank"] == "1":
            top1[r["label"]] = top1.get(r["label"], 0) + 1
    counted = {m[2]: int(m[1]) for m in re.finditer(r"^\s+(\d+)  (.+)$", p.stdout, re.M)}
    check(counted == top1, "summary: top-1 label counts", f"{counted} vs {top1}")
    check(all(f"shard {k}/3: {len(flag[k])} inputs, {len(flag[k])} done, 0 missing" in p.stdout for k in (1, 2, 3)),
          "summary: every shard complete", p.stdout)
    os.unlink(os.path.join(shared, flag[2][0] + ".csv"))
    p = run(cnnfx, ["report", "merge", shared])
    check(p.returncode == 1 and (flag[2][0] + ".jpg: no output (shard 2/3)") in p.stderr,
          "report merge: a shard input without output is named, exit 1", p.stderr)
    check(run(cnnfx, ["report", "merge", os.path.join(tmp, "nonexistent")]).returncode == 2 and
          run(cnnfx, ["report", "merge"]).returncode == 2, "report merge: usage errors exit 2")

    # JSON reports and fool reports merged too
    jout = os.path.join(tmp, "json")
    ok = all(run(cnnfx, ["classify", "-r", "-q", "--format", "json", "--shard", f"{k}/2", src, "-o", jout]).returncode
             == 0 for k in (1, 2))
    p = run(cnnfx, ["report", "merge", jout])
    jrows = list(csv.DictReader(open(os.path.join(jout, "cnnfx-report.csv")))) if ok and p.returncode == 0 else []
    check(sorted((r["file"], r["rank"], r["label"]) for r in jrows) ==
          sorted((r["file"], r["rank"], r["label"]) for r in per), "JSON reports merged into the same table",
          p.stdout + p.stderr)
    with open(os.path.join(jout, "broken.csv"), "w") as f:
        f.write('file,rank,index,label,probability\n"x.jpg",1,2,"unterminated,0.5\n')
    p = run(cnnfx, ["report", "merge", jout])
    check(p.returncode == 1 and "broken.csv: unterminated quoted field" in p.stderr,
          "report merge: an unreadable report is named, exit 1", p.stderr)
    fout = os.path.join(tmp, "fool")
    fsrc = sorted(glob.glob(os.path.join(src, "p0[0-3].jpg")))
    # two workers with different budgets: epsilon 8 fools the Fashion-MNIST LeNet, epsilon 1 does not (a
    # mixed rate; the CIFAR-10 default is fooled by 1/255 on these photos)
    ok = all(run(cnnfx, ["fool", "-q", "--model", "fashion_lenet", "--epsilon", e, *files, "-o", fout]).returncode == 0
             for e, files in (("8", fsrc[:2]), ("1", fsrc[2:])))
    p = run(cnnfx, ["report", "merge", fout])
    texts = [open(f).read() for f in sorted(glob.glob(os.path.join(fout, "*.fool.txt")))]
    fooled = sum(t.rstrip().endswith(", fooled") for t in texts)
    frows = list(csv.DictReader(open(os.path.join(fout, "cnnfx-fool-report.csv")))) if p.returncode == 0 else []
    rate = re.search(r"fool: (\d+) images, (\d+) fooled, success rate ([0-9.]+)%", p.stdout)
    check(ok and len(texts) == 4 and len(frows) == 4 and sum(r["fooled"] == "yes" for r in frows) == fooled,
          "fool reports merged: one row each, fooled column", p.stdout + p.stderr)
    check(0 < fooled < 4, "fool: a mix of fooled and not fooled", str(texts))
    check(rate and int(rate[1]) == 4 and int(rate[2]) == fooled and abs(float(rate[3]) - 100 * fooled / 4) < 0.05,
          "summary: fooling success rate", p.stdout)

    if a.keep:
        print("kept", tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    n_pass = sum(results)
    print(f"{n_pass} passed, {len(results) - n_pass} failed")
    return 0 if n_pass == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
