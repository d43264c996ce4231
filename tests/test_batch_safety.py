#!/usr/bin/python3
"""Batch safety of the filter commands (issue 10): never touch an input, never lose or stall a
result, bounded memory and time on hostile files, honest answers.

    /usr/bin/python3 tests/test_batch_safety.py --cnnfx BUILD/batch/cnnfx [--src SOURCE_DIR] [--only NAME]

One check per item; each prints PASS/FAIL, the last line is "N passed, M failed" (exit 1 on a
failure).  Peak memory is read from os.wait4() of each child; under a sanitizer build the memory
thresholds are skipped (printed as "skipped: ...").
"""
import argparse, hashlib, http.server, io, json, os, pty, re, select, shutil, signal, socket, struct
import subprocess, sys, tempfile, threading, time, zlib

passed = failed = 0
A = None
SANITIZED = False
ENV = dict(os.environ, OMP_WAIT_POLICY="passive", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
for k in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
    ENV.pop(k, None)
ENV["no_proxy"] = ENV["NO_PROXY"] = "*"
DOG = "/usr/share/darknet/data/dog.jpg"


def check(cond, what, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"PASS {what}")
    else:
        failed += 1
        print(f"FAIL {what} {str(detail)[-1500:]}")
    sys.stdout.flush()


def sanitized():
    try:
        out = subprocess.run(["ldd", A.cnnfx], capture_output=True, text=True).stdout
    except OSError:
        return False
    return "libasan" in out or "libubsan" in out


def run(args, timeout=120, env=None, cwd=None):
    """(rc, stdout, stderr, peak RSS in MiB, seconds)."""
    t = time.time()
    def lim():  # a runaway allocation fails instead of exhausting the machine
        import resource
        if not SANITIZED:
            resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
    p = subprocess.Popen([A.cnnfx] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or ENV, cwd=cwd,
                         preexec_fn=lim)
    out, err = [], []
    def rd(f, acc):
        acc.append(f.read())
    ts = [threading.Thread(target=rd, args=(p.stdout, out)), threading.Thread(target=rd, args=(p.stderr, err))]
    for th in ts:
        th.start()
    deadline = time.time() + timeout
    status = None
    while status is None:
        pid, st, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            status = st
            break
        if time.time() > deadline:
            p.kill()
            pid, st, ru = os.wait4(p.pid, 0)
            status = -9999
            break
        time.sleep(0.02)
    for th in ts:
        th.join()
    p.returncode = 0  # reaped by wait4
    rc = status if status == -9999 else (os.waitstatus_to_exitcode(status))
    e = err[0].decode(errors="replace")
    marks = [m for m in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "-CRITICAL **") if m in e]
    if marks:
        check(False, f"no sanitizer report / GLib critical: cnnfx {' '.join(args[:1])}", e)
    return rc, out[0].decode(errors="replace"), e, ru.ru_maxrss / 1024, time.time() - t


def tree_hash(root):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            if os.path.islink(p):
                continue
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def png(w, h, ctype=2, depth=8, seed=0):
    ch = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
    raw = bytearray()
    for y in range(h):
        raw.append(0)
        for x in range(w):
            for c in range(ch):
                v = (x * 255 // max(1, w - 1) + y * 5 + c * 60 + seed * 17) % 256
                raw += bytes([v, v]) if depth == 16 else bytes([v])
    return png_raw(w, h, ctype, depth, zlib.compress(bytes(raw)))


def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)


def png_raw(w, h, ctype, depth, idat, extra=b""):
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0)) + extra +
            chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def pil():
    try:
        from PIL import Image
        return Image
    except ImportError:
        return None


def jpeg(path, w, h, mode="RGB", exif=None, progressive=False, quality=90):
    Image = pil()
    im = Image.new(mode, (w, h))
    px = im.load()
    for y in range(h):
        for x in range(w):
            v = (x * 3 + y * 2) % 256
            px[x, y] = v if mode == "L" else (v, (v * 7) % 256, 255 - v)
    kw = {"quality": quality, "progressive": progressive}
    if exif is not None:
        kw["exif"] = exif
    im.save(path, "JPEG", **kw)


def exif_orientation(o):
    """A minimal little-endian TIFF block with one Orientation entry, prefixed with Exif\\0\\0."""
    return b"Exif\x00\x00" + b"II*\x00\x08\x00\x00\x00" + b"\x01\x00" + struct.pack("<HHIHH", 0x0112, 3, 1, o, 0) + b"\x00" * 4


def new_dir(name):
    d = os.path.join(A.tmp, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def leftovers(root):
    return [os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs
            if re.match(r"^\..+\.[A-Za-z0-9]{6}$", f) or f.endswith(".cnnfx-claim")]


QUICK_DREAM = ["--octaves", "1", "--iterations", "1"]

# ---- cases ---------------------------------------------------------------------------------


def t_output_is_input():
    d = new_dir("same")
    shutil.copy(DOG, os.path.join(d, "a.jpg"))
    open(os.path.join(d, "b.png"), "wb").write(png(40, 30))
    before = tree_hash(d)
    sty = os.path.join(A.tmp, "style.png")
    open(sty, "wb").write(png(32, 32, seed=9))
    for filt, extra in (("dream", QUICK_DREAM), ("fool", []), ("style", ["--iterations", "1", "--style", sty])):
        for ow in ([], ["--overwrite"]):
            rc, out, err, _, _ = run([filt, "-q"] + extra + ow + [d, "-o", d], timeout=300)
            check(tree_hash(d) == {**before, **{k: v for k, v in tree_hash(d).items() if k not in before}},
                  f"{filt} {' '.join(ow)} -o INPUT_DIR: inputs byte-identical", err)
            if filt in ("dream", "style"):
                check(rc == 1 and "would replace the input" in err, f"{filt} {' '.join(ow)} -o INPUT_DIR: refused, says why",
                      f"rc={rc} {err}")
    # a symlinked output: OUT/a.jpg -> the input
    o = new_dir("symout")
    os.symlink(os.path.join(d, "a.jpg"), os.path.join(o, "a.jpg"))
    rc, out, err, _, _ = run(["dream", "-q", "--overwrite"] + QUICK_DREAM + [os.path.join(d, "a.jpg"), "-o", o])
    check(tree_hash(d).get("a.jpg") == before["a.jpg"] and rc == 1 and "would replace" in err,
          "output symlinked to the input: refused, input intact", f"rc={rc} {err}")
    # symlinks planted at a side output's and at the claim's name, pointing at the input
    o2 = new_dir("symout2")
    os.symlink(os.path.join(d, "a.jpg"), os.path.join(o2, ".a.csv.cnnfx-claim"))
    os.symlink(os.path.join(d, "b.png"), os.path.join(o2, "a.heatmap.jpg"))
    rc, out, err, _, _ = run(["classify", "-q", "--overwrite", os.path.join(d, "a.jpg"), os.path.join(d, "b.png"), "-o", o2])
    check(tree_hash(d).get("a.jpg") == before["a.jpg"] and tree_hash(d).get("b.png") == before["b.png"] and rc == 1
          and "would replace" in err, "symlinked side output and claim: inputs intact, refused", f"rc={rc} {err}")
    # the output folder is a symlink to the input folder
    link = os.path.join(A.tmp, "outlink")
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(d, link)
    rc, out, err, _, _ = run(["dream", "-q", "--overwrite"] + QUICK_DREAM + [d, "-o", link])
    check(tree_hash(d).get("a.jpg") == before["a.jpg"] and tree_hash(d).get("b.png") == before["b.png"] and rc == 1,
          "output folder symlinked to the input folder: inputs intact", f"rc={rc} {err}")


def t_output_inside_input():
    d = new_dir("inside")
    os.makedirs(os.path.join(d, "sub"))
    shutil.copy(DOG, os.path.join(d, "a.jpg"))
    open(os.path.join(d, "sub", "b.png"), "wb").write(png(30, 20))
    before = tree_hash(d)
    out = os.path.join(d, "out")
    for i in range(2):
        rc, o, err, _, _ = run(["classify", "-r", "-q", "--overwrite", d, "-o", out])
        check(rc == 0, f"-r with -o INPUT/out, run {i + 1}: exit 0", f"rc={rc} {err}")
    files = sorted(os.path.relpath(os.path.join(dd, f), out) for dd, _, fs in os.walk(out) for f in fs)
    check(not any(f.startswith("out/") or ".heatmap.heatmap" in f for f in files),
          "outputs are never read back as inputs (no out/out, no .heatmap.heatmap)", files)
    check({k: v for k, v in tree_hash(d).items() if not k.startswith("out/")} == before, "inputs byte-identical")
    # output folder == input folder, run twice: earlier outputs are not inputs
    d2 = new_dir("inside2")
    shutil.copy(DOG, os.path.join(d2, "a.jpg"))
    for i in range(2):
        rc, o, err, _, _ = run(["classify", "-r", "-q", "--overwrite", d2, "-o", d2])
    names = sorted(os.listdir(d2))
    check(rc == 0 and not any(".heatmap.heatmap" in n or ".labels.heatmap" in n for n in names),
          "output folder = input folder, twice: earlier outputs not re-processed", f"rc={rc} {names} {err}")


def t_twins():
    d = new_dir("twins")
    shutil.copy(DOG, os.path.join(d, "pic.jpg"))
    open(os.path.join(d, "pic.png"), "wb").write(png(40, 30))
    before = tree_hash(d)
    o = os.path.join(A.tmp, "twins-out")
    shutil.rmtree(o, ignore_errors=True)
    rc, out, err, _, _ = run(["classify", "-q", d, "-o", o])
    csvs = sorted(f for f in os.listdir(o) if f.endswith(".csv")) if os.path.isdir(o) else []
    check(rc == 0 and len(csvs) == 2, "pic.jpg + pic.png: two reports, none lost", f"rc={rc} {csvs} {err}")
    srcs = set()
    for c in csvs:
        srcs |= {l.split(",")[0].strip('"') for l in open(os.path.join(o, c)).read().splitlines()[1:]}
    check(srcs == {os.path.join(d, "pic.jpg"), os.path.join(d, "pic.png")}, "each report is for its own input", srcs)
    rc, out, err, _, _ = run(["classify", "-q", "--overwrite", d, "-o", o])
    csvs2 = sorted(f for f in os.listdir(o) if f.endswith(".csv"))
    check(rc == 0 and csvs2 == csvs, "--overwrite: still two reports (stable names)", f"{csvs2} {err}")
    fo = os.path.join(A.tmp, "twins-fool")
    shutil.rmtree(fo, ignore_errors=True)
    rc, out, err, _, _ = run(["fool", "-q", d, "-o", fo])
    pngs = sorted(f for f in os.listdir(fo) if f.endswith(".png") and ".noise" not in f) if os.path.isdir(fo) else []
    check(rc == 0 and len(pngs) == 2, "fool pic.jpg + pic.png: two adversarial images", f"rc={rc} {pngs} {err}")
    check(tree_hash(d) == before, "twins: inputs byte-identical")


def t_resume_half_done():
    d = new_dir("half")
    shutil.copy(DOG, os.path.join(d, "p34.jpg"))
    o = os.path.join(A.tmp, "half-out")
    shutil.rmtree(o, ignore_errors=True)
    rc, out, err, _, _ = run(["classify", "-q", d, "-o", o])
    check(rc == 0, "first run", err)
    os.unlink(os.path.join(o, "p34.csv"))  # as after kill -9 / full disk before the report
    stale = os.path.join(o, ".p34.heatmap.jpg.Ab12Cd")
    open(stale, "wb").write(b"partial")
    users = os.path.join(o, ".p34.heatmap.jpg.backup")  # looks like one, but is the user's
    open(users, "wb").write(b"mine")
    rc, out, err, _, _ = run(["classify", "-q", d, "-o", o])
    check(rc == 0 and os.path.exists(os.path.join(o, "p34.csv")), "half-done item (side outputs, no report) is redone",
          f"rc={rc} {err}")
    check(not os.path.exists(stale), "stale temporary .NAME.XXXXXX removed")
    check(os.path.exists(users), "a user's hidden .NAME.backup is left alone")
    os.unlink(users)
    check(not leftovers(o), "no temporary or claim files left", leftovers(o))
    # a dead worker's claim is free again; a live worker's claim is respected
    import fcntl
    os.unlink(os.path.join(o, "p34.csv"))
    claim = os.path.join(o, ".p34.csv.cnnfx-claim")
    open(claim, "w").close()
    rc, out, err, _, _ = run(["classify", "-q", d, "-o", o])
    check(rc == 0 and os.path.exists(os.path.join(o, "p34.csv")) and not os.path.exists(claim),
          "a stale claim (dead worker) is taken over", f"rc={rc} {err}")
    os.unlink(os.path.join(o, "p34.csv"))
    fd = os.open(claim, os.O_RDONLY | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    rc, out, err, _, _ = run(["classify", d, "-o", o])
    check(rc == 0 and not os.path.exists(os.path.join(o, "p34.csv")) and "another worker" in err,
          "an item claimed by a live worker is left to it", f"rc={rc} {err}")
    os.close(fd)
    os.unlink(claim)


def t_kill9_resume():
    d = new_dir("kill")
    Image = pil()
    for i in range(6):
        shutil.copy(DOG, os.path.join(d, f"p{i}.jpg"))
    before = tree_hash(d)
    o = os.path.join(A.tmp, "kill-out")
    shutil.rmtree(o, ignore_errors=True)
    args = ["dream", "-q", "--octaves", "2", "--iterations", "4", d, "-o", o]
    p = subprocess.Popen([A.cnnfx] + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    time.sleep(2.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    rc, out, err, _, _ = run(args, timeout=600)
    outs = sorted(f for f in os.listdir(o) if f.endswith(".jpg"))
    ok = rc == 0 and len(outs) == 6
    if ok and Image:
        for f in outs:
            try:
                Image.open(os.path.join(o, f)).load()
            except Exception as e:  # noqa
                ok = False
    check(ok, "kill -9, then resume: every output complete", f"rc={rc} {outs} {err}")
    check(not leftovers(o), "kill -9, then resume: no temporary or claim files", leftovers(o))
    check(tree_hash(d) == before, "kill -9: inputs byte-identical")


def t_two_workers():
    d = new_dir("workers")
    for i in range(8):
        open(os.path.join(d, f"w{i}.png"), "wb").write(png(160, 120, seed=i))
    o = os.path.join(A.tmp, "workers-out")
    shutil.rmtree(o, ignore_errors=True)
    args = [A.cnnfx, "dream", "--octaves", "1", "--iterations", "20", d, "-o", o]
    ps = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV) for _ in range(2)]
    res = [p.communicate(timeout=600) for p in ps]
    errs = [r[1].decode(errors="replace") for r in res]
    done = sum(len(re.findall(r" -> ", e)) for e in errs)
    check(all(p.returncode == 0 for p in ps) and not any("exists" in e for e in errs),
          "two workers on one output folder: both exit 0, no 'File exists'", errs)
    check(done == 8 and len([f for f in os.listdir(o) if f.endswith(".png")]) == 8,
          "two workers split the work (each item done once)", f"done={done} {errs}")


def t_bombs():
    d = new_dir("bombs")
    # PNG: 65500x65500 header, tiny body
    open(os.path.join(d, "huge.png"), "wb").write(png_raw(65500, 65500, 2, 8, zlib.compress(b"\0" * 1000)))
    # PNG zlib bomb: 20000x20000 grey, zeros
    co = zlib.compressobj(9)
    row = b"\0" * 20001
    parts = [co.compress(row) for _ in range(20000)] + [co.flush()]
    open(os.path.join(d, "zbomb.png"), "wb").write(png_raw(20000, 20000, 0, 8, b"".join(parts)))
    # progressive JPEG declaring 30000x30000
    if pil():
        b = io.BytesIO()
        pil().new("RGB", (16, 16), (200, 10, 10)).save(b, "JPEG", progressive=True)
        j = bytearray(b.getvalue())
        i = j.find(b"\xff\xc2")
        j[i + 5:i + 9] = struct.pack(">HH", 30000, 30000)
        open(os.path.join(d, "prog.jpg"), "wb").write(bytes(j))
        b = io.BytesIO()
        pil().new("RGB", (16, 16), (10, 200, 10)).save(b, "JPEG")
        j = bytearray(b.getvalue())
        i = j.find(b"\xff\xc0")
        j[i + 5:i + 9] = struct.pack(">HH", 65500, 65500)
        open(os.path.join(d, "huge.jpg"), "wb").write(bytes(j))
    limit = 3 << 30
    env = dict(ENV)
    for f in sorted(os.listdir(d)):
        p = os.path.join(d, f)
        def lim():
            import resource
            if not sanitized():
                resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
        t = time.time()
        proc = subprocess.Popen([A.cnnfx, "classify", "-q", p, "-o", os.path.join(A.tmp, "bombs-out")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=lim)
        out, err = proc.communicate(timeout=120)
        _, _, ru = 0, 0, None
        err = err.decode(errors="replace")
        check(proc.returncode == 1 and err.startswith(p + ": ") and ("Mpx" in err or "max-memory" in err),
              f"bomb {f}: refused per file with the reason", f"rc={proc.returncode} {err}")
        check(time.time() - t < 30, f"bomb {f}: quick ({time.time() - t:.1f}s)")
    # peak memory of the worst one, measured with wait4
    for f in sorted(os.listdir(d)):
        rc, out, err, rss, secs = run(["classify", "-q", os.path.join(d, f), "-o", os.path.join(A.tmp, "bombs-out")])
        if sanitized():
            print(f"skipped: peak memory of {f} (sanitizer build)")
        else:
            check(rss < 600, f"bomb {f}: peak RSS {rss:.0f} MiB < 600 MiB", err)
    # --max-pixels: a 3000x2000 image is refused below its size and accepted with the default
    big = os.path.join(d, "..", "mp.png")
    open(big, "wb").write(png(300, 200))
    rc, out, err, _, _ = run(["classify", "-q", "--max-pixels", "50000", big, "-o", os.path.join(A.tmp, "mp-out")])
    check(rc == 1 and "max-pixels" in err, "--max-pixels lowers the limit", f"rc={rc} {err}")
    rc, out, err, _, _ = run(["classify", "-q", "--max-pixels", "60000", big, "-o", os.path.join(A.tmp, "mp-out")])
    check(rc == 0, "--max-pixels above the size: accepted", f"rc={rc} {err}")
    # decoding counts against the memory bound: --max-pixels raised, a 400 Mpx bomb still refused
    # before allocating (4.5 GiB of pixels > the 2 GiB default)
    rc, out, err, rss, secs = run(["classify", "-q", "--max-pixels", "500000000", os.path.join(d, "zbomb.png"), "-o",
                                   os.path.join(A.tmp, "mp-out")])
    check(rc == 1 and "max-memory" in err and secs < 20 and (sanitized() or rss < 600),
          "decoding counts against --max-memory (bomb under a raised --max-pixels)", f"rc={rc} {rss:.0f}MiB {err}")


def t_dct_scaling():
    if not pil():
        print("skipped: DCT scaling (no PIL)")
        return
    d = new_dir("dct")
    p = os.path.join(d, "big.jpg")
    im = pil().new("RGB", (4000, 3000), (120, 140, 160))
    im.save(p, "JPEG", quality=80)
    small = os.path.join(d, "small.png")
    open(small, "wb").write(png(40, 30))
    rc0, _, e0, rss0, _ = run(["classify", "-q", "--overlay", "none", "--labels-image", "no", small, "-o", os.path.join(A.tmp, "dct-out")])
    rc, out, err, rss, _ = run(["classify", "-q", "--overlay", "none", "--labels-image", "no", p, "-o", os.path.join(A.tmp, "dct-out")])
    check(rc == 0 and rc0 == 0, "classify --overlay none of a 12 Mpx JPEG", err + e0)
    if sanitized():
        print("skipped: DCT scaling memory (sanitizer build)")
    else:
        check(rss - rss0 < 60, f"classify at the network size decodes reduced (extra RSS {rss - rss0:.0f} MiB < 60)")
    # the scores do not depend on what else is written: with a heat map or labels image (full-size
    # decode for those) the network still reads the reduced decode (a photo: probabilities differ
    # by a point or more between a full-size and a reduced decode)
    # (340x255: just big enough for a 1/2-scale decode at 4x the 32x32 input, 255 = 2*128 - 1)
    for size in ((2400, 1800), (340, 255)):
        ph = os.path.join(d, "eagle.jpg")
        pil().open("/usr/share/darknet/data/eagle.jpg").convert("RGB").resize(size, pil().BICUBIC).save(ph, quality=90)
        csvs = {}
        for ov, lab in (("none", "no"), ("gradcam", "no"), ("saliency", "yes"), ("none", "yes")):
            od = os.path.join(A.tmp, f"dct-{size[0]}-{ov}-{lab}")
            rc, out, err, _, _ = run(["classify", "-q", "--top", "10", "--overlay", ov, "--labels-image", lab, ph, "-o", od])
            csvs[(ov, lab)] = open(os.path.join(od, "eagle.csv")).read() if rc == 0 else err
            if ov != "none" and rc == 0:
                got = pil().open(os.path.join(od, "eagle.heatmap.jpg")).size
                check(got == size, f"{size}: --overlay {ov}: heat map drawn over the full-size photo", got)
        base = csvs[("none", "no")]
        check(base.count("\n") == 11 and all(v == base for v in csvs.values()),
              f"classify of a {size} JPEG: the same ten probabilities with any --overlay / --labels-image", csvs)


def t_symlink_loops():
    d = new_dir("loops")
    os.makedirs(os.path.join(d, "a", "b"))
    open(os.path.join(d, "a", "x.png"), "wb").write(png(20, 20))
    open(os.path.join(d, "a", "b", "y.png"), "wb").write(png(20, 20, seed=3))
    os.symlink("..", os.path.join(d, "a", "b", "up"))
    os.symlink("../..", os.path.join(d, "a", "b", "up2"))
    os.symlink(".", os.path.join(d, "a", "self"))
    o = os.path.join(A.tmp, "loops-out")
    shutil.rmtree(o, ignore_errors=True)
    rc, out, err, rss, secs = run(["classify", "-r", d, "-o", o], timeout=60)
    n = len(re.findall(r" -> ", err))
    check(rc == 0 and n == 2 and secs < 60, f"-r over symlink loops ends, each photo once ({n} done)", f"rc={rc} {err[-800:]}")


class Trickle(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.5)
        except OSError:
            pass


def t_fetch_trickle():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    d = new_dir("fetch")
    man = os.path.join(d, "models.ini")
    open(man, "w").write("[cnnfx-manifest]\nversion=1\n\n[slow]\ntitle=slow\nuse=test\nlicense=none\n"
                         f"urls=http://127.0.0.1:{srv.server_address[1]}/slow.onnx\nsize=1000\nsha256=" + "0" * 64 + "\n")
    env = dict(ENV, CNNFX_DATA_DIR=os.path.join(d, "data"), CNNFX_MODELS_MANIFEST=man,
               CNNFX_FETCH_MIN_SPEED="100", CNNFX_FETCH_STALL_SECONDS="2", CNNFX_FETCH_GRACE_SECONDS="2")
    t = time.time()
    try:
        p = subprocess.run([A.cnnfx, "models", "fetch", "slow"], capture_output=True, text=True, env=env, timeout=30)
        rc, err = p.returncode, p.stderr
    except subprocess.TimeoutExpired:
        rc, err = None, "still running after 30 s"
    check(rc == 1 and time.time() - t < 20 and "timed out" in err,
          f"fetch from a trickling server gives up ({time.time() - t:.1f}s)", f"rc={rc} {err}")
    srv.shutdown()


def t_info_bounded():
    try:
        import numpy as np, onnx
        from onnx import helper, TensorProto, numpy_helper
    except ImportError:
        print("skipped: info bound (no onnx)")
        return
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 20, 20])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    sc = numpy_helper.from_array(np.array([1, 1, 800, 800], np.float32), "scales")
    roi = numpy_helper.from_array(np.array([], np.float32), "roi")
    n = helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="nearest")
    m = helper.make_model(helper.make_graph([n], "g", [x], [y], [roi, sc]), opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    p = os.path.join(A.tmp, "resize800.onnx")
    onnx.save(m, p)
    rc, out, err, rss, secs = run(["info", p], timeout=60)
    check(rc in (0, 1) and secs < 10 and "output  y" in out, f"info on a Resize x800 model: bounded ({secs:.1f}s)", err)
    if not sanitized():
        check(rss < 1024, f"info on a Resize x800 model: peak RSS {rss:.0f} MiB < 1024", err)


def t_truncated_jpeg():
    d = new_dir("trunc")
    data = open(DOG, "rb").read()
    p = os.path.join(d, "cut.jpg")
    open(p, "wb").write(data[:len(data) // 3])
    rc, out, err, _, _ = run(["classify", "-q", p, "-o", os.path.join(A.tmp, "trunc-out")])
    check(rc == 1 and err.startswith(p + ": ") and "truncated" in err, "truncated JPEG: failed with the reason", f"rc={rc} {err}")
    q = os.path.join(d, "noeoi.jpg")  # every pixel present, only the end marker missing: fine
    open(q, "wb").write(data[:-2])
    rc, out, err, _, _ = run(["classify", "-q", q, "-o", os.path.join(A.tmp, "trunc-out")])
    check(rc == 0, "JPEG missing only its end marker still loads", f"rc={rc} {err}")


def t_json_names():
    d = new_dir("json")
    names = ["фото é.png", "q\"uote\\.png"]
    for n in names:
        open(os.path.join(d, n), "wb").write(png(20, 20))
    bad = os.path.join(d.encode(), b"bad\xff\xfe.png")
    open(bad, "wb").write(png(20, 20))
    o = os.path.join(A.tmp, "json-out")
    shutil.rmtree(o, ignore_errors=True)
    rc, out, err, _, _ = run(["classify", "-q", "--format", "json", d, "-o", o])
    ok, det = rc == 0, f"rc={rc} {err}"
    found = []
    for f in os.listdir(o.encode()):
        if f.endswith(b".json"):
            raw = open(os.path.join(o.encode(), f), "rb").read()
            try:
                j = json.loads(raw.decode("utf-8"))
                found.append(j["file"])
            except Exception as e:  # noqa
                ok, det = False, f"{f!r}: {e}: {raw[:200]!r}"
    check(ok and len(found) == 3, "JSON reports of non-ASCII / non-UTF-8 names are valid UTF-8 JSON", det)
    check(any(x.endswith("фото é.png") for x in found) and any(x.endswith('q"uote\\.png') for x in found),
          "JSON keeps the names readable", found)


def t_double_dash():
    d = new_dir("dash")
    open(os.path.join(d, "-a.png"), "wb").write(png(20, 20))
    rc, out, err, _, _ = run(["classify", "-q", "-o", "out", "--", "-a.png"], cwd=d)
    check(rc == 0 and os.path.exists(os.path.join(d, "out", "-a.csv")), "`-- -a.png` is an input", f"rc={rc} {err}")


def t_not_images():
    d = new_dir("notimg")
    os.makedirs(os.path.join(d, "sub"))
    open(os.path.join(d, "sub", "README.txt"), "w").write("hello\n")
    open(os.path.join(d, "notes.md"), "w").write("# notes\n")
    open(os.path.join(d, "a.png"), "wb").write(png(20, 20))
    o = os.path.join(A.tmp, "notimg-out")
    rc, out, err, _, _ = run(["classify", "-r", d, "-o", o])
    check(rc == 0 and "2 skipped (not images)" in err, "README.txt under -r: skipped with a count, exit 0", f"rc={rc} {err}")
    open(os.path.join(d, "corrupt.jpg"), "wb").write(b"\xff\xd8\xff\xe0" + b"\x13" * 500)
    rc, out, err, _, _ = run(["classify", "-r", "-q", d, "-o", o])
    check(rc == 1 and os.path.join(d, "corrupt.jpg") + ": " in err, "a corrupt .jpg stays an error", f"rc={rc} {err}")


def t_gray_16bit_exif():
    Image = pil()
    if not Image:
        print("skipped: grey/16-bit/EXIF (no PIL)")
        return
    d = new_dir("gray")
    open(os.path.join(d, "g.png"), "wb").write(png(40, 30, ctype=0))
    jpeg(os.path.join(d, "gj.jpg"), 40, 30, mode="L")
    jpeg(os.path.join(d, "ex.jpg"), 40, 30, exif=exif_orientation(6))
    o = os.path.join(A.tmp, "gray-out")
    shutil.rmtree(o, ignore_errors=True)
    rc, out, err, _, _ = run(["dream", "-q"] + QUICK_DREAM + [d, "-o", o])
    check(rc == 0, "dream on grey inputs", err)
    if rc == 0:
        check(Image.open(os.path.join(o, "g.png")).mode == "L", "grey PNG in -> grey PNG out", Image.open(os.path.join(o, "g.png")).mode)
        check(Image.open(os.path.join(o, "gj.jpg")).mode == "L", "grey JPEG in -> grey JPEG out")
        ex = Image.open(os.path.join(o, "ex.jpg"))
        e = ex.getexif()
        check(ex.size == (30, 40) and len(e) > 0 and e.get(0x0112) == 1,
              "EXIF kept in the JPEG output, orientation reset to 1", f"{ex.size} {dict(e)}")
    fo = os.path.join(A.tmp, "gray-fool")
    shutil.rmtree(fo, ignore_errors=True)
    rc, out, err, _, _ = run(["fool", "-q", os.path.join(d, "g.png"), os.path.join(d, "ex.jpg"), "-o", fo])
    check(rc == 0 and Image.open(os.path.join(fo, "g.png")).mode in ("L", "LA") and
          Image.open(os.path.join(fo, "g.noise.png")).mode in ("L", "LA"), "fool on grey: grey image, grey noise", err)
    if rc == 0:
        check(Image.open(os.path.join(fo, "ex.png")).getexif().get(0x0112) == 1, "EXIF kept in PNG output (eXIf)")
    so = os.path.join(A.tmp, "gray-16")
    shutil.rmtree(so, ignore_errors=True)
    rc, out, err, _, _ = run(["dream", "-q", "--16bit"] + QUICK_DREAM + [os.path.join(d, "ex.jpg"), "-o", so])
    p16 = os.path.join(so, "ex.png")
    check(rc == 0 and os.path.exists(p16) and open(p16, "rb").read(25)[24] == 16,
          "--16bit with a JPEG input: 16-bit PNG output (NAME.png)", f"rc={rc} {os.listdir(so) if os.path.isdir(so) else ''} {err}")


def t_progress_tty():
    d = new_dir("tty")
    for i in range(3):
        open(os.path.join(d, f"t{i}.png"), "wb").write(png(48, 40, seed=i))
    o = os.path.join(A.tmp, "tty-out")
    shutil.rmtree(o, ignore_errors=True)
    pid, fd = pty.fork()
    if pid == 0:
        os.execve(A.cnnfx, [A.cnnfx, "classify", d, "-o", o], ENV)
    buf = b""
    while True:
        try:
            r, _, _ = select.select([fd], [], [], 60)
            if not r:
                break
            chunk_ = os.read(fd, 4096)
        except OSError:
            break
        if not chunk_:
            break
        buf += chunk_
    os.waitpid(pid, 0)
    # render like a terminal: \r goes to column 0, ESC[K erases to the end, \n ends a line
    lines, cur, col = [], [], 0
    s = buf.decode(errors="replace")
    i = 0
    while i < len(s):
        ch = s[i]
        if s.startswith("\x1b[K", i):
            cur = cur[:col]
            i += 3
            continue
        if ch == "\r":
            col = 0
        elif ch == "\n":
            lines.append("".join(cur))
            cur, col = [], 0
        else:
            if col < len(cur):
                cur[col] = ch
            else:
                cur.append(ch)
            col += 1
        i += 1
    bad = [l for l in lines if re.search(r"\[[#-]{5,}\]", l)]
    results = [l for l in lines if re.search(r"t\d\.png: ", l)]
    check(not bad and len(results) == 3, "tty: result lines above one clean progress bar", f"bad={bad} lines={lines}")


def t_clang_fuzz_build():
    src = A.src
    clang = shutil.which("clang")
    if not clang or not src:
        print("skipped: clang fuzz-build flags (no clang or --src)")
        return
    inc = subprocess.run(["pkg-config", "--cflags", "glib-2.0", "openblas"], capture_output=True, text=True).stdout.split()
    p = subprocess.run([clang, "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter",
                        "-fopenmp", "-O1", "-fsanitize=address,undefined", "-I" + os.path.join(src, "core")] + inc +
                       ["-c", os.path.join(src, "core", "cpu", "elementwise.c"), "-o", os.path.join(A.tmp, "ew.o")],
                       capture_output=True, text=True)
    check(p.returncode == 0, "clang -O1 -Werror (the -Dfuzz=true flags) compiles core/cpu/elementwise.c", p.stderr[-800:])


CASES = [t_output_is_input, t_output_inside_input, t_twins, t_resume_half_done, t_kill9_resume, t_two_workers,
         t_bombs, t_dct_scaling, t_symlink_loops, t_fetch_trickle, t_info_bounded, t_truncated_jpeg, t_json_names,
         t_double_dash, t_not_images, t_gray_16bit_exif, t_progress_tty, t_clang_fuzz_build]


def main():
    global A
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    ap.add_argument("--src", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--only", default=None)
    A = ap.parse_args()
    A.cnnfx = os.path.abspath(A.cnnfx)
    global SANITIZED
    SANITIZED = sanitized()
    A.tmp = tempfile.mkdtemp(prefix="cnnfx-safety-")
    try:
        for c in CASES:
            if A.only and A.only not in c.__name__:
                continue
            print(f"== {c.__name__[2:]}")
            t = time.time()
            try:
                c()
            except Exception as e:  # a crash of the test is a failure, not a pass
                import traceback
                traceback.print_exc()
                check(False, f"{c.__name__} raised {e!r}")
            print(f"   ({time.time() - t:.1f}s)")
    finally:
        shutil.rmtree(A.tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
