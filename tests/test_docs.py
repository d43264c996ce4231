#!/usr/bin/env python3
"""docs/filters.md's option tables are generated from the parameter tables
(core/filters/params.c) by `cnnfx man --markdown NAME`: every block between

    <!-- generated: cnnfx man --markdown NAME -->
    ...
    <!-- end generated -->

must equal that command's output, so the docs cannot drift from the flags.  Also checks that every
filter and the common table have a block, and that `cnnfx man` lists every CLI flag.
`tests/test_docs.py --cnnfx build/batch/cnnfx --update` rewrites the blocks."""
import argparse, os, re, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(HERE, "..", "docs", "filters.md")
BLOCK = re.compile(r"(<!-- generated: cnnfx man --markdown (\S+) -->\n)(.*?)(<!-- end generated -->)", re.S)
NAMES = ["common", "dream", "style", "classify", "fool", "visualize"]


def run(cnnfx, *args):
    env = dict(os.environ, LANGUAGE="C", LC_ALL="C.UTF-8", LANG="C.UTF-8")
    env.pop("LC_MESSAGES", None)
    p = subprocess.run([cnnfx, *args], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"FAIL: cnnfx {' '.join(args)} exited {p.returncode}: {p.stderr}")
    return p.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    ap.add_argument("--update", action="store_true")
    a = ap.parse_args()
    text = open(DOC, encoding="utf-8").read()
    found, bad = [], []

    def sub(m):
        name = m.group(2)
        found.append(name)
        want = run(a.cnnfx, "man", "--markdown", name)
        if m.group(3) != want:
            bad.append(name)
        return m.group(1) + want + m.group(4)

    new = BLOCK.sub(sub, text)
    missing = [n for n in NAMES if n not in found]
    if a.update:
        open(DOC, "w", encoding="utf-8").write(new)
        print(f"updated {len(found)} blocks")
        return 0
    fails = []
    if missing:
        fails.append(f"docs/filters.md has no generated block for {', '.join(missing)}")
    if bad:
        fails.append(f"docs/filters.md is out of date for {', '.join(bad)}: run tests/test_docs.py --update")
    # the man page lists every CLI flag of every table
    man = run(a.cnnfx, "man")
    for name in NAMES:
        md = run(a.cnnfx, "man", "--markdown", name)
        for flag in re.findall(r"`--([a-z0-9-]+)", md):
            if "\\-\\-" + flag.replace("-", "\\-") + "\\fR" not in man:
                fails.append(f"cnnfx man lacks --{flag}")
        # and --help of a filter lists them too
        if name != "common":
            h = run(a.cnnfx, name, "--help")
            for flag in re.findall(r"`--([a-z0-9-]+)", md):
                if f"--{flag}" not in h:
                    fails.append(f"cnnfx {name} --help lacks --{flag}")
    for f in fails:
        print("FAIL:", f)
    if not fails:
        print(f"ok: {len(found)} generated blocks match the parameter tables; man and --help list every flag")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
