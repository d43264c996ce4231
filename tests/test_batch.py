#!/usr/bin/python3
"""Batch robustness of the filter commands (the CLI contract in shared/INTERFACE.md):

  a folder with good PNG/JPEG files (8- and 16-bit, alpha, a sub-folder), a corrupt file,
  an empty file and a text file -> good ones done, bad ones reported as "<path>: <reason>",
  exit 1, inputs byte-identical, outputs mirror the tree, no partial/temporary files;
  a second run resumes (skips finished outputs); --overwrite redoes them; usage errors
  exit 2 with nothing processed; Ctrl-C leaves no partial file.
"""
import argparse, hashlib, os, shutil, signal, struct, subprocess, sys, tempfile, time, zlib

passed = failed = 0


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"PASS {what}")
    else:
        failed += 1
        print(f"FAIL {what} {detail}")


def png_bytes(w, h, channels, depth, seed):
    """A PNG written by hand (no PIL needed)."""
    import random
    r = random.Random(seed)
    ctype = {3: 2, 4: 6}[channels]
    raw = bytearray()
    bpc = depth // 8
    for y in range(h):
        raw.append(0)
        for x in range(w):
            for c in range(channels):
                v = (x * 255 // max(1, w - 1) + y * 3 + c * 40 + r.randrange(8)) % 256
                if c == 3:
                    v = 255 if x < w // 2 else 128
                raw += bytes([v] * bpc) if bpc == 2 else bytes([v])
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")


def tree_hash(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def png_info(path):
    d = open(path, "rb").read(33)
    w, h, depth, ctype = struct.unpack(">IIBB", d[16:26])
    return w, h, depth, ctype


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    a = ap.parse_args()
    cnnfx = a.cnnfx
    tmp = tempfile.mkdtemp(prefix="cnnfx-batch-")
    src = os.path.join(tmp, "photos")
    os.makedirs(os.path.join(src, "sub"))
    open(os.path.join(src, "rgba8.png"), "wb").write(png_bytes(40, 30, 4, 8, 1))
    open(os.path.join(src, "sub", "rgb16.png"), "wb").write(png_bytes(33, 47, 3, 16, 2))
    shutil.copy("/usr/share/darknet/data/dog.jpg", os.path.join(src, "dog.jpg"))
    open(os.path.join(src, "corrupt.jpg"), "wb").write(b"\xff\xd8\xff\xe0" + os.urandom(3000))
    open(os.path.join(src, "empty.png"), "wb").close()
    open(os.path.join(src, "notes.txt"), "w").write("not an image\n")
    before = tree_hash(src)
    out = os.path.join(tmp, "out")
    env = dict(os.environ, OMP_WAIT_POLICY="passive")

    # classify (fast, default offline model) over the folder, recursively
    p = subprocess.run([cnnfx, "classify", "-r", "-q", src, "-o", out], capture_output=True, text=True, env=env,
                       timeout=600)
    check(p.returncode == 1, "exit 1 when some inputs fail", f"rc={p.returncode}\n{p.stderr}")
    err = p.stderr
    for bad in ("corrupt.jpg", "empty.png"):
        check(any(l.startswith(os.path.join(src, bad) + ": ") for l in err.splitlines()),
              f"{bad} reported as '<path>: <reason>'", err)
    # not an image by name or content: skipped with a count (issue 10), not a failure
    check(not any(l.startswith(os.path.join(src, "notes.txt") + ": ") for l in err.splitlines()),
          "notes.txt skipped, not reported as a failure", err)
    for good in ("rgba8", "sub/rgb16", "dog"):
        check(os.path.exists(os.path.join(out, good + ".csv")), f"{good} classified (report written)",
              str(os.listdir(out)))
    check(os.path.exists(os.path.join(out, "sub", "rgb16.heatmap.png")), "heat map mirrors the input tree")
    check(tree_hash(src) == before, "inputs byte-identical")
    leftovers = [f for d, _, fs in os.walk(out) for f in fs if f.startswith(".") or f.endswith(".tmp")]
    check(not leftovers, "no temporary or partial files", str(leftovers))
    check(not os.path.exists(os.path.join(out, "corrupt.csv")) and not os.path.exists(os.path.join(out, "empty.csv")),
          "nothing written for bad inputs")

    # resume: a second run skips finished outputs and leaves them untouched
    stamp = os.stat(os.path.join(out, "dog.csv")).st_mtime_ns
    time.sleep(0.02)
    p = subprocess.run([cnnfx, "classify", "-r", "-q", src, "-o", out], capture_output=True, text=True, env=env,
                       timeout=600)
    check(p.returncode == 1 and os.stat(os.path.join(out, "dog.csv")).st_mtime_ns == stamp,
          "second run resumes (finished outputs skipped)", p.stderr)
    p = subprocess.run([cnnfx, "classify", "-q", "--overwrite", os.path.join(src, "dog.jpg"), "-o", out],
                       capture_output=True, text=True, env=env, timeout=600)
    check(p.returncode == 0 and os.stat(os.path.join(out, "dog.csv")).st_mtime_ns != stamp, "--overwrite redoes",
          p.stderr)

    # image outputs keep depth and alpha (dream, tiny settings)
    dout = os.path.join(tmp, "dream")
    p = subprocess.run([cnnfx, "dream", "-r", "-q", "--octaves", "1", "--iterations", "1", src, "-o", dout],
                       capture_output=True, text=True, env=env, timeout=600)
    check(p.returncode == 1, "dream: exit 1 with bad inputs present", p.stderr)
    if os.path.exists(os.path.join(dout, "sub", "rgb16.png")):
        check(png_info(os.path.join(dout, "sub", "rgb16.png"))[2] == 16, "16-bit PNG stays 16-bit")
        check(png_info(os.path.join(dout, "rgba8.png"))[3] == 6, "alpha kept (RGBA out)")
        check(open(os.path.join(dout, "dog.jpg"), "rb").read(3) == b"\xff\xd8\xff", "JPEG in -> JPEG out")
    else:
        check(False, "dream outputs written", p.stderr)

    # usage errors: exit 2, nothing processed
    u = os.path.join(tmp, "usage")
    for args in (["classify", src], ["classify", "--top", "0", src, "-o", u], ["dream", "--octaves", "x", src, "-o", u],
                 ["nosuchfilter", src, "-o", u]):
        p = subprocess.run([cnnfx] + args, capture_output=True, text=True, env=env, timeout=60)
        check(p.returncode == 2 and not os.path.exists(u), f"usage error exits 2: {' '.join(args[:2])}",
              f"rc={p.returncode} {p.stderr}")

    # Ctrl-C in the middle: no partial file, exit non-zero, inputs intact
    big = os.path.join(tmp, "big")
    os.makedirs(big)
    shutil.copy("/usr/share/darknet/data/horses.jpg", os.path.join(big, "horses.jpg"))
    iout = os.path.join(tmp, "int")
    proc = subprocess.Popen([cnnfx, "dream", "-q", "--octaves", "3", "--iterations", "50", big, "-o", iout],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    try:
        _, e = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, e = proc.communicate()
    files = [f for d, _, fs in os.walk(iout) for f in fs] if os.path.exists(iout) else []
    check(proc.returncode != 0 and not files, "Ctrl-C leaves no partial output", f"rc={proc.returncode} {files} {e[-500:]}")

    shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0  # nothing checked is a failure


if __name__ == "__main__":
    sys.exit(main())
