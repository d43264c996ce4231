#!/usr/bin/python3
"""Tests for `cnnfx models list|fetch|verify|path` against a local HTTP server.

Usage: test_models_fetch.py [PATH/TO/cnnfx]   (default: $CNNFX_BIN, else build/batch/cnnfx)

Everything runs on 127.0.0.1 (an http.server thread on port 0 that honours Range requests,
or deliberately does not); nothing touches the internet.  Each case gets its own data dir
(CNNFX_DATA_DIR) and a temporary manifest (CNNFX_MODELS_MANIFEST or --manifest).
Prints one line per check and "N passed, M failed"; exits 1 on any failure.
"""
import fcntl
import hashlib
import http.server
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

HERE = os.path.dirname(os.path.abspath(__file__))

GOOD = random.Random(1).randbytes(300 * 1024 + 17)        # the "model"
OTHER = random.Random(2).randbytes(len(GOOD))              # same size, wrong content
OLD = random.Random(3).randbytes(200 * 1024)               # an older, different good file
GOOD_SHA = hashlib.sha256(GOOD).hexdigest()
OLD_SHA = hashlib.sha256(OLD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    log = []  # (path, Range header or None)

    def log_message(self, fmt, *args):  # keep test output clean
        pass

    def body_for(self, path):
        if path.startswith("/norange/"):
            path = path[len("/norange"):]
        return {
            "/good.onnx": GOOD,
            "/wrong.onnx": OTHER,
            "/short.onnx": GOOD[: len(GOOD) // 2],
            "/big.onnx": GOOD + b"extra bytes",
            "/dropped.onnx": GOOD,
        }.get(path)

    def do_GET(self):
        rng = self.headers.get("Range")
        Handler.log.append((self.path, rng))
        body = self.body_for(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if rng and not self.path.startswith("/norange/"):
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if not m:
                self.send_error(400, "bad range")
                return
            start = int(m.group(1))
            end = int(m.group(2)) if m.group(2) else len(body) - 1
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % len(body))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            part = body[start : end + 1]
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, start + len(part) - 1, len(body)))
        else:
            part = body
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "none" if self.path.startswith("/norange/") else "bytes")
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if self.path == "/dropped.onnx":
            # Promise the whole file, send 40% of it, hang up.
            self.wfile.write(part[: len(part) * 2 // 5])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.wfile.write(part)


def closed_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Suite:
    def __init__(self, exe):
        self.exe = exe
        self.skipped_cases = []
        self.passed = 0
        self.failed = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.tmp = tempfile.mkdtemp(prefix="cnnfx-models-test-")
        self.case_no = 0

    def close(self):
        self.server.shutdown()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
            print("PASS %s" % name)
        else:
            self.failed += 1
            print("FAIL %s%s" % (name, (": " + detail) if detail else ""))

    def new_case(self, entries):
        """A fresh data dir and manifest. entries: {name: (urls, size, sha)}"""
        self.case_no += 1
        d = os.path.join(self.tmp, "case%02d" % self.case_no)
        os.makedirs(os.path.join(d, "data"))
        lines = ["[cnnfx-manifest]", "version=1", ""]
        for name, (urls, size, sha) in entries.items():
            lines += ["[%s]" % name, "title=test model %s" % name, "use=test", "license=none",
                      "urls=" + ";".join(urls), "size=%d" % size, "sha256=" + sha, ""]
        manifest = os.path.join(d, "models.ini")
        with open(manifest, "w") as f:
            f.write("\n".join(lines))
        self.data = os.path.join(d, "data")
        self.models = os.path.join(self.data, "models")
        self.manifest = manifest
        Handler.log.clear()
        return d

    def run(self, *args, manifest_env=True):
        env = dict(os.environ)
        for k in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            env.pop(k, None)
        env["no_proxy"] = env["NO_PROXY"] = "*"
        env["CNNFX_DATA_DIR"] = self.data
        if manifest_env:
            env["CNNFX_MODELS_MANIFEST"] = self.manifest
        else:
            env.pop("CNNFX_MODELS_MANIFEST", None)
        p = subprocess.run([self.exe, "models"] + list(args), env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
        return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def path(self, name, suffix=""):
        return os.path.join(self.models, name + ".onnx" + suffix)

    def content(self, name, suffix=""):
        try:
            with open(self.path(name, suffix), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def put(self, name, data, suffix=""):
        os.makedirs(self.models, exist_ok=True)
        with open(self.path(name, suffix), "wb") as f:
            f.write(data)

    # ---- cases ------------------------------------------------------------------

    def test_list_and_path(self):
        self.new_case({"m": ([self.base + "/good.onnx"], len(GOOD), GOOD_SHA)})
        rc, out, err = self.run("list")
        self.check("list exits 0", rc == 0, err)
        self.check("list shows the model", re.search(r"^m\s", out, re.M) is not None, out)
        rc, out, err = self.run("path", "m")
        self.check("path of a missing model exits 1", rc == 1 and out == "", "rc=%d out=%r" % (rc, out))
        rc, out, err = self.run("path", "nosuch")
        self.check("path of an unknown model exits 2", rc == 2, "rc=%d" % rc)
        rc, out, err = self.run("fetch", "nosuch")
        self.check("fetch of an unknown model exits 2", rc == 2, "rc=%d" % rc)
        rc, out, err = self.run("frobnicate")
        self.check("unknown subcommand exits 2", rc == 2, "rc=%d" % rc)
        rc, out, err = self.run("verify")
        self.check("verify with nothing downloaded exits 0", rc == 0, err)

    def test_good(self):
        self.new_case({"m": ([self.base + "/good.onnx"], len(GOOD), GOOD_SHA)})
        rc, out, err = self.run("fetch", "m")
        self.check("fetch good: exit 0", rc == 0, err)
        self.check("fetch good: file installed", self.content("m") == GOOD)
        self.check("fetch good: no .part left", self.content("m", ".part") is None)
        rc, out, err = self.run("path", "m")
        self.check("path prints the file", rc == 0 and out.strip() == self.path("m"), "rc=%d out=%r" % (rc, out))
        rc, out, err = self.run("verify", "m")
        self.check("verify good: exit 0", rc == 0 and "OK" in out, out + err)
        n = len(Handler.log)
        rc, out, err = self.run("fetch", "m")
        self.check("fetch again: exit 0 without downloading", rc == 0 and len(Handler.log) == n, "rc=%d" % rc)
        rc, out, err = self.run("list")
        self.check("list shows present", re.search(r"^m\s.*present", out, re.M) is not None, out)
        # Corrupt the installed file: verify must notice, path (size check only) still finds it.
        data = bytearray(GOOD)
        data[1000] ^= 0xFF
        self.put("m", bytes(data))
        rc, out, err = self.run("verify", "m")
        self.check("verify corrupted: exit 1, BAD", rc == 1 and "BAD" in out, out + err)
        rc, out, err = self.run("verify")
        self.check("verify all with a corrupted file: exit 1", rc == 1, out + err)
        # fetch repairs it.
        rc, out, err = self.run("fetch", "m")
        self.check("fetch repairs a corrupted file", rc == 0 and self.content("m") == GOOD, err)

    def test_manifest_option(self):
        self.new_case({"m": ([self.base + "/good.onnx"], len(GOOD), GOOD_SHA)})
        rc, out, err = self.run("--manifest", self.manifest, "fetch", "m", manifest_env=False)
        self.check("--manifest FILE is used", rc == 0 and self.content("m") == GOOD, err)
        rc, out, err = self.run("--manifest", os.path.join(self.tmp, "missing.ini"), "list")
        self.check("missing manifest: exit 2", rc == 2 and "manifest" in err, err)
        bad = os.path.join(self.tmp, "bad.ini")
        with open(bad, "w") as f:
            f.write("[x]\nurls=http://127.0.0.1:1/x\nsize=10\n")
        rc, out, err = self.run("--manifest", bad, "list")
        self.check("manifest entry without sha256: exit 2", rc == 2 and "sha256" in err, err)

    def test_wrong_hash(self):
        self.new_case({"m": ([self.base + "/wrong.onnx"], len(GOOD), GOOD_SHA)})
        rc, out, err = self.run("fetch", "m")
        self.check("wrong content: exit 1", rc == 1, "rc=%d" % rc)
        self.check("wrong content: message names SHA-256", "SHA-256" in err, err)
        self.check("wrong content: nothing installed", self.content("m") is None)
        self.check("wrong content: .part removed", self.content("m", ".part") is None)

    def test_bad_never_replaces_good(self):
        # An older good file is installed; the manifest now wants another file, and every
        # attempt to get it goes wrong.  The old file must survive byte for byte.
        self.new_case({"m": ([self.base + "/wrong.onnx"], len(GOOD), GOOD_SHA)})
        self.put("m", OLD)
        rc, out, err = self.run("fetch", "m")
        self.check("hash mismatch keeps the existing file", rc == 1 and self.content("m") == OLD, "rc=%d" % rc)
        self.check("hash mismatch removes the .part", self.content("m", ".part") is None)
        self.new_case({"m": ([self.base + "/short.onnx"], len(GOOD), GOOD_SHA)})
        self.put("m", OLD)
        rc, out, err = self.run("fetch", "m")
        self.check("truncated download keeps the existing file", rc == 1 and self.content("m") == OLD, err)
        self.new_case({"m": (["http://127.0.0.1:%d/good.onnx" % closed_port()], len(GOOD), GOOD_SHA)})
        self.put("m", OLD)
        rc, out, err = self.run("fetch", "m")
        self.check("server down keeps the existing file", rc == 1 and self.content("m") == OLD, err)
        # Same with a matching old file: `fetch` leaves a verified file alone.
        self.new_case({"m": ([self.base + "/wrong.onnx"], len(OLD), OLD_SHA)})
        self.put("m", OLD)
        rc, out, err = self.run("fetch", "m")
        self.check("verified file is not downloaded again", rc == 0 and self.content("m") == OLD and not Handler.log,
                   err)

    def test_truncated_then_resume(self):
        self.new_case({"m": ([self.base + "/short.onnx"], len(GOOD), GOOD_SHA)})
        rc, out, err = self.run("fetch", "m")
        half = len(GOOD) // 2
        self.check("short file: exit 1", rc == 1, "rc=%d" % rc)
        self.check("short file: message says truncated/resume", "resume" in err, err)
        self.check("short file: nothing installed", self.content("m") is None)
        self.check("short file: partial .part kept for resume", self.content("m", ".part") == GOOD[:half])
        # The same model from a server with the full file: only the rest is requested.
        rc, out, err = self.run("fetch", "m", "--url", self.base + "/good.onnx")
        self.check("resume: exit 0", rc == 0, err)
        self.check("resume: sent Range from the .part size",
                   ("/good.onnx", "bytes=%d-" % half) in Handler.log, repr(Handler.log))
        self.check("resume: file installed and complete", self.content("m") == GOOD)
        self.check("resume: .part gone", self.content("m", ".part") is None)

    def test_dropped_connection(self):
        self.new_case({"m": ([self.base + "/dropped.onnx"], len(GOOD), GOOD_SHA)})
        rc, out, err = self.run("fetch", "m")
        part = self.content("m", ".part")
        self.check("dropped connection: exit 1", rc == 1, "rc=%d" % rc)
        self.check("dropped connection: .part kept", part is not None and 0 < len(part) < len(GOOD)
                   and GOOD.startswith(part), "part=%s" % (None if part is None else len(part)))
        self.check("dropped connection: nothing installed", self.content("m") is None)
        rc, out, err = self.run("fetch", "m", "--url", self.base + "/good.onnx")
        self.check("dropped connection: resumed to completion", rc == 0 and self.content("m") == GOOD, err)

    def test_resume_existing_part(self):
        self.new_case({"m": ([self.base + "/good.onnx"], len(GOOD), GOOD_SHA)})
        k = 123457
        self.put("m", GOOD[:k], ".part")
        rc, out, err = self.run("fetch", "m")
        self.check("resume .part: exit 0", rc == 0, err)
        self.check("resume .part: Range bytes=%d-" % k, Handler.log == [("/good.onnx", "bytes=%d-" % k)],
                   repr(Handler.log))
        self.check("resume .part: complete file", self.content("m") == GOOD)
        self.check("resume .part: .part gone", self.content("m", ".part") is None)

    def test_resume_server_ignores_range(self):
        self.new_case({"m": ([self.base + "/norange/good.onnx"], len(GOOD), GOOD_SHA)})
        self.put("m", GOOD[:5000], ".part")
        rc, out, err = self.run("fetch", "m")
        self.check("server ignores Range: restart from 0 and succeed", rc == 0 and self.content("m") == GOOD, err)

    def test_resume_corrupt_part(self):
        self.new_case({"m": ([self.base + "/good.onnx"], len(GOOD), GOOD_SHA)})
        self.put("m", OTHER[:70000], ".part")  # a stale .part from something else
        rc, out, err = self.run("fetch", "m")
        self.check("corrupt .part: resumed result rejected (exit 1)", rc == 1 and "SHA-256" in err, err)
        self.check("corrupt .part: .part removed, nothing installed",
                   self.content("m", ".part") is None and self.content("m") is None)
        rc, out, err = self.run("fetch", "m")
        self.check("corrupt .part: next fetch starts over and succeeds", rc == 0 and self.content("m") == GOOD, err)

    def test_complete_part(self):
        # A complete .part (e.g. downloaded by hand) is verified and installed without a request.
        self.new_case({"m": ([self.base + "/good.onnx"], len(GOOD), GOOD_SHA)})
        self.put("m", GOOD, ".part")
        rc, out, err = self.run("fetch", "m")
        self.check("complete .part installed without downloading",
                   rc == 0 and self.content("m") == GOOD and not Handler.log, err + repr(Handler.log))

    def test_server_down(self):
        self.new_case({"m": (["http://127.0.0.1:%d/good.onnx" % closed_port()], len(GOOD), GOOD_SHA)})
        rc, out, err = self.run("fetch", "m")
        self.check("server down: exit 1", rc == 1, "rc=%d" % rc)
        self.check("server down: clear message", "connect" in err.lower() or "server down" in err, err)
        self.check("server down: no files left", self.content("m") is None and self.content("m", ".part") is None)

    def test_404_and_mirrors(self):
        self.new_case({"m": ([self.base + "/missing.onnx"], len(GOOD), GOOD_SHA)})
        rc, out, err = self.run("fetch", "m")
        self.check("404: exit 1 and says 404", rc == 1 and "404" in err, err)
        self.check("404: no files left", self.content("m") is None and self.content("m", ".part") is None)
        self.new_case({"m": ([self.base + "/missing.onnx", "http://127.0.0.1:%d/x" % closed_port(),
                              self.base + "/wrong.onnx", self.base + "/good.onnx"], len(GOOD), GOOD_SHA)})
        rc, out, err = self.run("fetch", "m")
        self.check("mirrors: falls through 404, down, bad hash to the good URL",
                   rc == 0 and self.content("m") == GOOD, err)
        self.new_case({"m": ([self.base + "/missing.onnx"], len(GOOD), GOOD_SHA)})
        rc, out, err = self.run("fetch", "m", "--url", self.base + "/good.onnx")
        self.check("--url overrides the manifest URL", rc == 0 and self.content("m") == GOOD, err)
        rc, out, err = self.run("verify", "--url", "x")
        self.check("--url outside fetch: exit 2", rc == 2, "rc=%d" % rc)

    def test_too_big(self):
        self.new_case({"m": ([self.base + "/big.onnx"], len(GOOD), GOOD_SHA)})
        rc, out, err = self.run("fetch", "m")
        self.check("oversized download: exit 1, nothing kept",
                   rc == 1 and self.content("m") is None and self.content("m", ".part") is None, err)

    def test_disk_full(self):
        if not os.path.exists("/dev/full"):
            print("skipped: disk full case (no /dev/full)")
            self.skipped_cases.append("test_disk_full")
            return
        self.new_case({"m": ([self.base + "/good.onnx"], len(GOOD), GOOD_SHA)})
        os.makedirs(self.models, exist_ok=True)
        os.symlink("/dev/full", self.path("m", ".part"))  # every write fails with ENOSPC
        rc, out, err = self.run("fetch", "m")
        self.check("disk full: exit 1 with a clear message",
                   rc == 1 and "No space left" in err, "rc=%d err=%r" % (rc, err))
        self.check("disk full: nothing installed", not os.path.exists(self.path("m")))

    def test_locked_part(self):
        self.new_case({"m": ([self.base + "/good.onnx"], len(GOOD), GOOD_SHA)})
        self.put("m", GOOD[:1000], ".part")
        with open(self.path("m", ".part"), "rb+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)  # "another cnnfx" is downloading it
            rc, out, err = self.run("fetch", "m")
        self.check("concurrent fetch of the same model refused",
                   rc == 1 and "another process" in err and self.content("m", ".part") == GOOD[:1000], err)
        rc, out, err = self.run("fetch", "m")
        self.check("after the lock is gone the fetch resumes", rc == 0 and self.content("m") == GOOD, err)

    def test_fetch_all(self):
        self.new_case({"a": ([self.base + "/good.onnx"], len(GOOD), GOOD_SHA),
                       "b": ([self.base + "/wrong.onnx"], len(GOOD), GOOD_SHA)})
        rc, out, err = self.run("fetch", "--all")
        self.check("fetch --all: one bad model gives exit 1, the good one is installed",
                   rc == 1 and self.content("a") == GOOD and self.content("b") is None, err)


def main():
    args = [a for a in sys.argv[1:] if a != "--cnnfx"]
    exe = args[0] if args else os.environ.get("CNNFX_BIN") or \
        os.path.join(HERE, "..", "build", "batch", "cnnfx")
    if not os.access(exe, os.X_OK):
        print("cnnfx binary not found: %s" % exe)
        print("0 passed, 1 failed")
        return 1
    s = Suite(os.path.abspath(exe))
    skipped = []
    try:
        # A build without libcurl cannot download: run only the cases that need no network.
        s.new_case({"probe": ([s.base + "/good.onnx"], len(GOOD), GOOD_SHA)})
        rc, out, err = s.run("fetch", "probe")
        nocurl = "without libcurl" in err
        for name in sorted(n for n in dir(s) if n.startswith("test_")):
            if nocurl and name not in ("test_list_and_path", "test_complete_part"):
                print("skipped: %s (cnnfx built without libcurl: it cannot download)" % name)
                skipped.append(name)
                continue
            try:
                getattr(s, name)()
            except Exception as e:  # a crash in one case is a failure, not an abort
                s.check(name, False, "exception: %r" % (e,))
    finally:
        s.close()
    print("%d passed, %d failed" % (s.passed, s.failed))
    if s.failed or not s.passed:
        return 1
    skipped += s.skipped_cases
    if skipped:
        # The download cases did not run: the test as a whole is a skip (meson: exit 77), not a pass.
        print("skipped: %d case(s): %s (see the 'skipped:' lines above)" % (len(skipped), ", ".join(skipped)))
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main())
