#!/usr/bin/python3
"""Finite-difference gradient checks for every backward op.

Each tests/gradcheck/gen_*.py exposes models() -> iterable of (name, onnx.ModelProto).
Every model is written to a temporary directory and checked with `cnnfx check-grad`.
"""
import argparse, concurrent.futures as cf, glob, importlib.util, os, subprocess, sys, tempfile

def load(path):
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    ap.add_argument("--only", default=None, help="substring filter on model names")
    ap.add_argument("-j", type=int, default=2)
    a = ap.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    gens = sorted(glob.glob(os.path.join(here, "gen_*.py")))
    import onnx
    tmp = tempfile.mkdtemp(prefix="cnnfx-gradcheck-")
    jobs = []
    for g in gens:
        group = os.path.basename(g)[4:-3]
        for name, model in load(g).models():
            if a.only and a.only not in name:
                continue
            p = os.path.join(tmp, f"{group}__{name}.onnx")
            onnx.save(model, p)
            jobs.append((f"{group}/{name}", p))
    def run(job):
        name, p = job
        try:
            r = subprocess.run([a.cnnfx, "check-grad", p], capture_output=True, text=True, timeout=300)
            return name, r.returncode, r.stdout + r.stderr
        except subprocess.TimeoutExpired:
            return name, None, "timeout"
    passed = failed = 0
    with cf.ThreadPoolExecutor(a.j) as ex:
        for name, rc, out in ex.map(run, jobs):
            if rc == 0:
                passed += 1
                print(f"PASS {name}")
            else:
                failed += 1
                print(f"FAIL {name} (rc={rc})\n  " + out.strip().replace("\n", "\n  "))
    if not jobs:
        print("no gradient-check models found")
        failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
