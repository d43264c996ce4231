#!/usr/bin/python3
"""Run ONNX's own operator conformance tests (Debian libonnx-testdata) through
`cnnfx check-onnx`.

Every test directory is run (one process each, so a crash is caught and named):
  * the tests listed in tests/node_tests_*.txt must PASS;
  * every other test must end with exit 0 or 1 and a PASS/FAIL line per data set, never a crash
    or a hang; of these, a PASS counts as passed, a clear "not supported" refusal is counted as
    skipped (printed in one "skipped:" line), and a wrong result is a failure unless the test
    is listed in tests/node_known_wrong.txt (printed as XFAIL, not counted as passed).
"""
import re
import argparse, concurrent.futures as cf, glob, os, subprocess, sys

DATA = "/usr/share/libonnx-testdata/data"

def run(cnnfx, d, timeout):
    try:
        p = subprocess.run([cnnfx, "check-onnx", d], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return d, None, "timeout"
    return d, p.returncode, p.stdout + p.stderr

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    ap.add_argument("--lists", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--all", action="store_true", help="also run pytorch-converted/pytorch-operator/simple")
    ap.add_argument("-j", type=int, default=2)
    a = ap.parse_args()
    required = {}
    for f in sorted(glob.glob(os.path.join(a.lists, "node_tests_*.txt"))):
        for line in open(f):
            line = line.split("#")[0].strip()
            if line:
                required[line if "/" in line else "node/" + line] = os.path.basename(f)
    dirs = sorted(glob.glob(os.path.join(DATA, "node", "test_*")))
    if a.all:
        for sub in ("pytorch-converted", "pytorch-operator", "simple"):
            dirs += sorted(glob.glob(os.path.join(DATA, sub, "test_*")))
    rel = lambda d: os.path.relpath(d, DATA)
    missing = [r for r in required if not os.path.isdir(os.path.join(DATA, r))]
    passed = failed = 0
    supported = 0
    skipped = []
    known_wrong = set()
    kw = os.path.join(a.lists, "node_known_wrong.txt")
    if os.path.exists(kw):
        for line in open(kw):
            line = line.split("#")[0].strip()
            if line:
                known_wrong.add(line if "/" in line else "node/" + line)
    with cf.ThreadPoolExecutor(a.j) as ex:
        for d, rc, out in ex.map(lambda d: run(a.cnnfx, d, 120), dirs):
            r = rel(d)
            crash = rc is None or rc not in (0, 1) or not any(l.startswith(("PASS ", "FAIL ")) for l in out.splitlines())
            if crash:
                failed += 1
                print(f"FAIL {r}: crash/hang (rc={rc})\n{out[-2000:]}")
                continue
            if rc == 0:
                supported += 1
            # exit 1 without a value / shape / type mismatch = refused with a message (unsupported
            # operator or type, sequence / optional inputs); a mismatch is a wrong result
            wrong = re.search(r"values differ|shape .*, expected|data type .*, expected|outputs?.*missing", out)
            unsupported = rc == 1 and wrong is None
            if r in required:
                if rc == 0:
                    passed += 1
                else:
                    failed += 1
                    print(f"FAIL {r} (required by {required[r]}):\n  " + out.strip().replace("\n", "\n  ")[:2000])
            elif rc == 0:
                passed += 1
            elif unsupported:
                skipped.append(r)
            elif r in known_wrong:
                print(f"XFAIL {r} (listed in node_known_wrong.txt): " + out.strip().splitlines()[-1][:300])
            else:
                failed += 1
                print(f"FAIL {r}: wrong result\n  " + out.strip().replace("\n", "\n  ")[:2000])
    for r in missing:
        failed += 1
        print(f"FAIL {r}: listed but not found in {DATA}")
    if skipped:
        print(f"skipped: {len(skipped)} tests use operators / types cnnfx refuses with a message "
              f"(e.g. {', '.join(skipped[:5])})")
    print(f"node tests: {len(dirs)} run, {supported} pass fully, {len(required)} required")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0

if __name__ == "__main__":
    sys.exit(main())
