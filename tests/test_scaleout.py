#!/usr/bin/python3
"""The scale-out recipes of docs/scale-out.md, run or validated as written there.

Each recipe is a fenced code block holding a line "# recipe: NAME".
  kubernetes  parsed (python3-yaml), linted (yamllint, when installed), checked for what an indexed
              Job running cnnfx needs (batch/v1 Job, DNS-1123 name, completionMode Indexed,
              completions >= 1, parallelism <= completions, restartPolicy Never/OnFailure, containers
              with name and image, a cnnfx filter command with -o and no fixed --shard,
              CNNFX_SHARD_COUNT == completions, volume mounts naming declared volumes); then the
              container's command is run here once per completion index with the manifest's env and
              JOB_COMPLETION_INDEX (/data mapped to a temporary folder): every photo exactly once.
  parallel    the GNU parallel lines run as written (/data mapped); every photo once, merge exit 0
              (skipped visibly when GNU parallel is not installed).
  xargs       the same with xargs.
The Slurm recipe is run by tests/test_slurm.sh on a real slurmctld/slurmd.

Usage: test_scaleout.py --cnnfx BUILD/batch/cnnfx --docs docs/scale-out.md
Prints PASS/FAIL/SKIP lines and "N passed, M failed"; exit 1 on failure.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

from PIL import Image

results = []


def check(ok, name, detail=""):
    results.append(bool(ok))
    print(f"{'PASS' if ok else 'FAIL'} {name}" + (f" ({detail})" if detail and not ok else ""), flush=True)


def recipes(md):
    """{name: text} of the fenced blocks with a '# recipe: NAME' line"""
    out = {}
    for m in re.finditer(r"^```[a-z]*\n(.*?)^```", open(md).read(), re.M | re.S):
        r = re.search(r"^# recipe: (\w+)", m[1], re.M)
        if r:
            out[r[1]] = m[1]
    return out


def make_photos(folder):
    os.makedirs(os.path.join(folder, "sub"))
    names = []
    for i in range(10):
        rel = f"sub/s{i}.png" if i % 3 == 0 else f"img{i}.png"
        Image.new("RGB", (24 + i, 20), (20 * i, 120, 255 - 20 * i)).save(os.path.join(folder, rel))
        names.append(os.path.splitext(rel)[0])
    return sorted(names)


def reports(out):
    return sorted(os.path.relpath(os.path.join(d, f), out)[:-4] for d, ds, fs in os.walk(out)
                  for f in fs if f.endswith(".csv") and not f.startswith("cnnfx-") and ".cnnfx-shards" not in d)


def env_base(cnnfx):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "JOB_COMPLETION", "CNNFX_SHARD"))}
    env["PATH"] = os.path.dirname(os.path.abspath(cnnfx)) + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env["OMP_WAIT_POLICY"] = "passive"
    return env


DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
FILTERS = {"dream", "style", "classify", "fool", "visualize"}


def test_kubernetes(text, cnnfx, tmp):
    import yaml
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    check(len(docs) == 1, "kubernetes: one YAML document", str(len(docs)))
    job = docs[0] if docs else {}
    if shutil.which("yamllint"):
        p = subprocess.run(["yamllint", "-d", "{extends: default, rules: {line-length: {max: 120}, "
                            "document-start: disable, comments: {min-spaces-from-content: 1}}}", "-"],
                           input=text, capture_output=True, text=True)
        check(p.returncode == 0, "kubernetes: yamllint clean", p.stdout + p.stderr)
    else:
        print("SKIP kubernetes: yamllint (skipped: yamllint not installed)")
    spec = job.get("spec", {})
    tspec = spec.get("template", {}).get("spec", {})
    cons = tspec.get("containers") or []
    check(job.get("apiVersion") == "batch/v1" and job.get("kind") == "Job", "kubernetes: batch/v1 Job")
    check(bool(DNS1123.match(str(job.get("metadata", {}).get("name", "")))), "kubernetes: DNS-1123 name")
    check(spec.get("completionMode") == "Indexed", "kubernetes: completionMode Indexed")
    n = spec.get("completions")
    check(isinstance(n, int) and n >= 1 and isinstance(spec.get("parallelism", 1), int) and
          1 <= spec.get("parallelism", 1) <= n, "kubernetes: completions >= 1, parallelism <= completions")
    check(tspec.get("restartPolicy") in ("Never", "OnFailure"), "kubernetes: restartPolicy Never or OnFailure")
    check(len(cons) == 1 and all(c.get("name") and c.get("image") and DNS1123.match(c["name"]) for c in cons),
          "kubernetes: one container with a name and an image")
    c = cons[0] if cons else {}
    cmd = list(c.get("command", [])) + list(c.get("args", []))
    check(len(cmd) > 2 and os.path.basename(cmd[0]) == "cnnfx" and cmd[1] in FILTERS and "-o" in cmd and
          not any(a.startswith("--shard") and not a.startswith("--shard-count") for a in cmd),
          "kubernetes: command runs a cnnfx filter with -o and no fixed --shard", str(cmd))
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    count = env.get("CNNFX_SHARD_COUNT")
    if "--shard-count" in cmd:
        count = cmd[cmd.index("--shard-count") + 1]
    check(isinstance(count, str) and count == str(n), "kubernetes: CNNFX_SHARD_COUNT (a string) == completions",
          f"{count!r} vs {n}")
    vols = {v.get("name") for v in tspec.get("volumes", [])}
    mounts = c.get("volumeMounts", [])
    check(all(m.get("name") in vols and str(m.get("mountPath", "")).startswith("/") for m in mounts),
          "kubernetes: every volume mount names a declared volume")
    res = c.get("resources", {})
    check(all(k in ("requests", "limits") for k in res), "kubernetes: resources has only requests/limits")

    # run it: one process per completion index, as the pods would (the /data volume -> tmp/data)
    data = os.path.join(tmp, "k8s", "data")
    names = make_photos(os.path.join(data, "photos"))
    mount = mounts[0]["mountPath"] if mounts else "/data"
    argv = [a.replace(mount, data) if a.startswith(mount) else a for a in cmd]
    counts = []
    for idx in range(n if isinstance(n, int) else 0):
        e = env_base(cnnfx)
        e.update({k: str(v) for k, v in env.items()})
        e["OMP_NUM_THREADS"] = "1"
        e["JOB_COMPLETION_INDEX"] = str(idx)
        p = subprocess.run(argv, capture_output=True, text=True, env=e, timeout=300)
        m = re.search(r"^shard (\d+)/(\d+): (\d+) of \d+ inputs$", p.stderr, re.M)
        counts.append(int(m[3]) if p.returncode == 0 and m and int(m[1]) == idx + 1 and m[2] == str(n) else None)
    check(counts and None not in counts and sum(counts) == len(names),
          f"kubernetes: {n} pods (JOB_COMPLETION_INDEX 0..{n - 1}) took shards 1..{n}, all inputs", str(counts))
    out = os.path.join(data, "out")
    check(reports(out) == names, "kubernetes: every photo processed exactly once", str(reports(out)))


def test_shell(name, text, cnnfx, tmp):
    data = os.path.join(tmp, name, "data")
    names = make_photos(os.path.join(data, "photos"))
    script = text.replace("/data/", data + "/")
    p = subprocess.run(["sh", "-e", "-c", script], capture_output=True, text=True, env=env_base(cnnfx), timeout=300)
    out = os.path.join(data, "out")
    check(p.returncode == 0, f"{name}: the recipe runs (exit 0, merge included)", p.stdout + p.stderr)
    check(reports(out) == names, f"{name}: every photo processed exactly once", str(reports(out)))
    lists = sorted(os.listdir(os.path.join(out, ".cnnfx-shards"))) if os.path.isdir(os.path.join(out, ".cnnfx-shards")) else []
    check(lists == [f"{k}-of-4.tsv" for k in range(1, 5)], f"{name}: four shards ran", str(lists))
    check(os.path.exists(os.path.join(out, "cnnfx-report.csv")) and "0 missing" in p.stdout,
          f"{name}: merged report written", p.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    ap.add_argument("--docs", required=True)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    r = recipes(a.docs)
    check(set(r) >= {"slurm", "kubernetes", "parallel", "xargs"}, "docs/scale-out.md has the four recipes",
          str(sorted(r)))
    tmp = tempfile.mkdtemp(prefix="cnnfx-scaleout-")
    try:
        import yaml  # noqa: F401
        have_yaml = True
    except ImportError:
        have_yaml = False
    if "kubernetes" in r and have_yaml:
        test_kubernetes(r["kubernetes"], a.cnnfx, tmp)
    elif not have_yaml:
        check(False, "kubernetes: python3-yaml installed (apt-get install python3-yaml)")
    if "xargs" in r:
        test_shell("xargs", r["xargs"], a.cnnfx, tmp)
    if "parallel" in r:
        v = subprocess.run(["parallel", "--version"], capture_output=True, text=True) if shutil.which("parallel") else None
        if v and "GNU parallel" in v.stdout:
            test_shell("parallel", r["parallel"], a.cnnfx, tmp)
        else:
            print("SKIP parallel recipe (skipped: GNU parallel not installed; apt-get install parallel)")
    if a.keep:
        print("kept", tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    n_pass = sum(results)
    print(f"{n_pass} passed, {len(results) - n_pass} failed")
    return 0 if n_pass == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
