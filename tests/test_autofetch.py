#!/usr/bin/python3
"""First-use download of a filter's preferred model (batch/autofetch.c), on a loopback server.

The "preferred model" is weights/fashion_lenet.onnx served from 127.0.0.1 under a temporary
manifest entry (CNNFX_PREFERRED_MODEL=classify=tinynet picks it; the built-in choice for
classify is squeezenet1.1, checked too).  Nothing touches the internet.
  1. not present, server reachable: `cnnfx classify` downloads it once (size + sha256 pinned),
     stores it in $CNNFX_DATA_DIR/models and classifies with it;
  2. the next run does not download again;
  3. CNNFX_OFFLINE=1 and `--offline`: no request, one line saying offline, the offline default runs;
  4. unreachable server: one line saying the download failed, the offline default runs;
  5. a server sending the wrong bytes: refused (sha256), nothing kept, the offline default runs;
  6. on by default (the runs above leave CNNFX_AUTOFETCH unset); CNNFX_AUTOFETCH=0 fetches nothing.
"""
import argparse, hashlib, http.server, os, socket, subprocess, sys, tempfile, threading

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL = open(os.path.join(ROOT, "weights", "fashion_lenet.onnx"), "rb").read()
SHA = hashlib.sha256(MODEL).hexdigest()
PHOTO = "/usr/share/darknet/data/dog.jpg"
results = []


def check(name, ok, detail=""):
    results.append(bool(ok))
    print(("PASS " if ok else "FAIL ") + name + (": " + detail.strip()[-500:] if detail and not ok else ""),
          flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    hits = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        Handler.hits.append(self.path)
        body = {"/m.onnx": MODEL, "/bad.onnx": bytes(reversed(MODEL))}.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def manifest(path, url):
    labels = os.path.join(os.path.dirname(path), "tiny.labels")
    with open(labels, "w") as f:
        f.write("".join(f"tinyclass{i}\n" for i in range(10)))
    with open(path, "w") as f:
        f.write(f"""[cnnfx-manifest]
version=1

[tinynet]
title=test network (Fashion-MNIST LeNet)
use=classify
license=test
urls={url}
size={len(MODEL)}
sha256={SHA}
input=input
output=logits
labels={labels}
gray=true
input_size=28
scale=-1
mean=-1
std=1
""")


def run(cnnfx, tmp, data, man, *args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k not in ("CNNFX_OFFLINE", "MESON_TEST_ITERATION",
                                                               "CNNFX_AUTOFETCH")}
    env.update({"CNNFX_DATA_DIR": data, "CNNFX_MODELS_MANIFEST": man,
                "CNNFX_PREFERRED_MODEL": "classify=tinynet", "no_proxy": "*", "NO_PROXY": "*"})
    env.update(env_extra or {})
    env = {k: v for k, v in env.items() if v is not None}
    out = os.path.join(tmp, "out")
    p = subprocess.run([cnnfx, "classify", "--overwrite", "-o", out] + list(args) + [PHOTO], capture_output=True,
                       text=True, env=env, timeout=120)
    return p.returncode, p.stdout, p.stderr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    a = ap.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    with tempfile.TemporaryDirectory(prefix="cnnfx-autofetch-") as tmp:
        man = os.path.join(tmp, "models.ini")
        manifest(man, base + "/m.onnx")
        data = os.path.join(tmp, "data1")
        stored = os.path.join(data, "models", "tinynet.onnx")

        rc, out, err = run(a.cnnfx, tmp, data, man)
        check("first use downloads the preferred model", rc == 0 and "first use: downloading tinynet" in err
              and Handler.hits == ["/m.onnx"], out + err)
        check("stored with the pinned sha256", os.path.exists(stored)
              and hashlib.sha256(open(stored, "rb").read()).hexdigest() == SHA)
        check("classify ran with the fetched model (its labels)", rc == 0 and "tinyclass" in out, out + err)

        n = len(Handler.hits)
        rc, out, err = run(a.cnnfx, tmp, data, man)
        check("second run does not download again", rc == 0 and len(Handler.hits) == n and "downloading" not in err
              and "tinyclass" in out, out + err)

        for label, extra, args in (("CNNFX_OFFLINE=1", {"CNNFX_OFFLINE": "1"}, []), ("--offline", {}, ["--offline"])):
            d = os.path.join(tmp, "off" + str(len(args)))
            n = len(Handler.hits)
            rc, out, err = run(a.cnnfx, tmp, d, man, *args, env_extra=extra)
            lines = [l for l in err.splitlines() if ": offline: " in l]
            check(f"{label}: no request, one line, offline default used", rc == 0 and len(Handler.hits) == n
                  and len(lines) == 1 and not os.path.exists(os.path.join(d, "models", "tinynet.onnx"))
                  and "tinyclass" not in out, out + err)

        d = os.path.join(tmp, "unreach")
        manifest(man, f"http://127.0.0.1:{closed_port()}/m.onnx")
        rc, out, err = run(a.cnnfx, tmp, d, man)
        lines = [l for l in err.splitlines() if "could not download" in l]
        check("unreachable: one clear line, offline default used", rc == 0 and len(lines) == 1, out + err)

        d = os.path.join(tmp, "bad")
        manifest(man, base + "/bad.onnx")
        rc, out, err = run(a.cnnfx, tmp, d, man)
        check("wrong bytes refused, nothing kept, offline default used",
              rc == 0 and "could not download" in err and not os.path.exists(os.path.join(d, "models", "tinynet.onnx")),
              out + err)

        d = os.path.join(tmp, "meson")
        manifest(man, base + "/m.onnx")
        n = len(Handler.hits)
        rc, out, err = run(a.cnnfx, tmp, d, man, env_extra={"CNNFX_AUTOFETCH": "0"})
        check("CNNFX_AUTOFETCH=0: nothing is fetched, nothing said, offline default used",
              rc == 0 and len(Handler.hits) == n and "download" not in err and "tinyclass" not in out, out + err)

        # the built-in preference of classify is the zoo's SqueezeNet 1.1 (not downloaded here: offline)
        rc, out, err = run(a.cnnfx, tmp, os.path.join(tmp, "builtin"), os.path.join(ROOT, "weights", "models.ini"),
                           env_extra={"CNNFX_PREFERRED_MODEL": None, "CNNFX_OFFLINE": "1"})
        check("built-in preference for classify is squeezenet1.1", rc == 0 and "models fetch squeezenet1.1" in err,
              out + err)
    srv.shutdown()
    print(f"{sum(results)} passed, {len(results) - sum(results)} failed")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
