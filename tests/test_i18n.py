#!/usr/bin/env python3
"""Translations (po/): complete and used.

 1. `msgfmt -c --statistics` on po/ru.po and po/pl.po: no error, 0 fuzzy, 0 untranslated;
 2. the catalogues are not stale: every string xgettext finds in po/POTFILES is translated;
 3. choice labels ("A|B|C") keep their number of choices in every translation, and messages that
    start with a parameter's label ("Target: ...") start with that label's translation (the CLI
    puts the flag in front of them by matching the label);
 4. `LANGUAGE=ru cnnfx dream --help` is Russian (Cyrillic, the translated help of --octaves), both
    with no locale at all and with LANG=C.UTF-8, and `LANGUAGE=pl cnnfx --help` is Polish;
 5. the other commands and a filter run speak it too: `train --help` and `models --help` (ru, pl),
    a train usage error, and a classify run's lines on stderr (offline notice, model line, summary).
Skips (exit 77, "skipped: ...") only when gettext's tools are missing."""
import argparse, os, re, shutil, subprocess, sys, tempfile

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PO = os.path.join(ROOT, "po")
LANGS = ["ru", "pl"]
fails = []


def check(ok, what, detail=""):
    print(("ok  " if ok else "FAIL") + " " + what + ("" if ok else f": {detail}"))
    if not ok:
        fails.append(what)


def unquote(parts):
    esc = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
    return re.sub(r"\\(.)", lambda m: esc.get(m.group(1), m.group(0)), "".join(parts))


def read_po(path):
    """{msgid: (msgstr, flags)} of the active entries."""
    text = open(path, encoding="utf-8").read()
    out = {}
    for block in re.split(r"\n\s*\n", text):
        lines = [l for l in block.splitlines() if not l.startswith("#~")]
        flags = " ".join(l for l in lines if l.startswith("#,"))
        body = "\n".join(l for l in lines if not l.startswith("#"))
        m = re.search(r'msgid ((?:"(?:[^"\\]|\\.)*"\s*)+)msgstr ((?:"(?:[^"\\]|\\.)*"\s*)+)', body)
        if not m:
            continue
        mid = unquote(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1)))
        mstr = unquote(re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(2)))
        if mid:
            out[mid] = (mstr, flags)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cnnfx", required=True)
    a = ap.parse_args()
    if not shutil.which("msgfmt") or not shutil.which("xgettext"):
        print("skipped: gettext tools (msgfmt, xgettext) are not installed (apt-get install gettext)")
        return 77

    # 1. msgfmt statistics
    for lang in LANGS:
        p = subprocess.run(["msgfmt", "-c", "--statistics", "-o", os.devnull, os.path.join(PO, lang + ".po")],
                           capture_output=True, text=True, env=dict(os.environ, LC_ALL="C", LANGUAGE=""))
        stats = p.stderr.strip()
        check(p.returncode == 0, f"{lang}.po: msgfmt -c accepts it", stats)
        check("fuzzy" not in stats and "untranslated" not in stats and "translated" in stats,
              f"{lang}.po: 0 fuzzy, 0 untranslated ({stats})", stats)

    # 2. not stale: every string in the sources is in the catalogues
    with tempfile.TemporaryDirectory() as d:
        pot = os.path.join(d, "cnnfx.pot")
        files = [l.strip() for l in open(os.path.join(PO, "POTFILES")) if l.strip() and not l.startswith("#")]
        files = [f for f in files if os.path.exists(os.path.join(ROOT, f))]
        p = subprocess.run(["xgettext", "--from-code=UTF-8", "-k_", "-kN_", "-kC_:1c,2", "-kNC_:1c,2",
                            "-kg_dgettext:2", "-o", pot, *files], cwd=ROOT, capture_output=True, text=True)
        check(p.returncode == 0, "xgettext over po/POTFILES", p.stderr[-300:])
        src = read_po(pot) if os.path.exists(pot) else {}
    check(len(src) > 150, f"the sources have translatable strings ({len(src)})")
    cats = {lang: read_po(os.path.join(PO, lang + ".po")) for lang in LANGS}
    for lang in LANGS:
        missing = [m for m in src if not cats[lang].get(m, ("", ""))[0]]
        check(not missing, f"{lang}.po covers every string of the sources", f"{len(missing)} missing, e.g. {missing[:3]}")

    # 3. choice labels and label prefixes
    labels = set()
    params_c = open(os.path.join(ROOT, "core", "filters", "params.c"), encoding="utf-8").read()
    for m in re.finditer(r'P_[A-Z]+\("[^"]+",[^;]*?N_\("([^"]+)"\),\s*N_\(', params_c):
        labels.add(m.group(1))
    check(len(labels) > 40, f"labels found in params.c ({len(labels)})")
    for lang in LANGS:
        bad_choice, bad_prefix = [], []
        for mid, (mstr, _) in cats[lang].items():
            if "|" in mid and "||" not in mid and mid in params_c and 'choice_labels = N_("' + mid in params_c:
                if mstr.count("|") != mid.count("|"):
                    bad_choice.append(mid)
            lab = mid.split(":", 1)[0]
            if ":" in mid and lab in labels and mid.startswith(lab + ": "):
                tl = cats[lang].get(lab, ("", ""))[0]
                if not mstr.startswith(tl + ":"):
                    bad_prefix.append(mid)
        check(not bad_choice, f"{lang}: choice labels keep their count", bad_choice[:3])
        check(not bad_prefix, f"{lang}: messages start with the translated label", bad_prefix[:3])

    # 4. the CLI speaks Russian and Polish
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    want = cats["ru"]["Number of scales, coarse to fine"][0]
    for name, env in (("no locale", dict(base, LANGUAGE="ru")),
                      ("LANG=C.UTF-8", dict(base, LANGUAGE="ru", LANG="C.UTF-8")),
                      ("LANG=ru_RU.UTF-8", dict(base, LANGUAGE="ru", LANG="ru_RU.UTF-8"))):
        p = subprocess.run([a.cnnfx, "dream", "--help"], capture_output=True, env=env)
        out = p.stdout.decode("utf-8", "replace")
        check(p.returncode == 0 and re.search("[А-Яа-яЁё]{4}", out) and want in out,
              f"LANGUAGE=ru cnnfx dream --help is Russian ({name})", out[:300])
    p = subprocess.run([a.cnnfx, "--help"], capture_output=True, env=dict(base, LANGUAGE="pl"))
    out = p.stdout.decode("utf-8", "replace")
    check(cats["pl"]["Commands:"][0] in out, "LANGUAGE=pl cnnfx --help is Polish", out[:200])
    p = subprocess.run([a.cnnfx, "dream", "--help"], capture_output=True, env=dict(base, LANGUAGE="C"))
    check("Number of scales, coarse to fine" in p.stdout.decode(), "LANGUAGE=C stays English")
    # an error from the filter layer: label translated, flag added by the CLI
    p = subprocess.run([a.cnnfx, "fool", "--epsilon", "300", "x.png", "-o", "out"], capture_output=True,
                       env=dict(base, LANGUAGE="ru"))
    err = p.stderr.decode("utf-8", "replace")
    check(p.returncode == 2 and "--epsilon: " + cats["ru"]["Epsilon"][0] in err, "errors: flag + translated label", err)
    # 5. train, models, a filter run
    for lang in LANGS:
        tr = lambda m: cats[lang][m][0]
        p = subprocess.run([a.cnnfx, "train", "--help"], capture_output=True, env=dict(base, LANGUAGE=lang))
        out = p.stdout.decode("utf-8", "replace")
        check(p.returncode == 0 and tr("Label smoothing (ImageFolder, default 0)") in out
              and tr("- train a network (or build a random-feature one) and write ONNX") in out
              and tr("Built-in architecture: %s").replace("%s", "lenet5") in out,
              f"LANGUAGE={lang} cnnfx train --help is translated", out[:400])
        p = subprocess.run([a.cnnfx, "models", "--help"], capture_output=True, env=dict(base, LANGUAGE=lang))
        out = p.stdout.decode("utf-8", "replace")
        check(p.returncode == 0 and out == tr(next(m for m in cats[lang] if m.startswith("Usage: cnnfx models"))),
              f"LANGUAGE={lang} cnnfx models --help is translated", out[:300])
    p = subprocess.run([a.cnnfx, "train", "--epochs", "3"], capture_output=True, env=dict(base, LANGUAGE="ru"))
    err = p.stderr.decode("utf-8", "replace")
    check(p.returncode == 2 and cats["ru"]["train needs exactly one of --arch, --init, --resume"][0] in err,
          "LANGUAGE=ru: train's usage errors are Russian", err)
    with tempfile.TemporaryDirectory() as d:
        img = os.path.join(d, "grey.png")
        Image.new("RGB", (40, 30), (128, 128, 128)).save(img)
        for lang in LANGS:
            tr = lambda m: cats[lang][m][0]
            env = dict(base, LANGUAGE=lang, CNNFX_OFFLINE="1", HOME=d, XDG_DATA_HOME=os.path.join(d, "data"))
            p = subprocess.run([a.cnnfx, "classify", "--overlay", "none", img, "-o", os.path.join(d, "out-" + lang)],
                               capture_output=True, env=env)
            err = p.stderr.decode("utf-8", "replace")
            done = tr("cnnfx %s: %d done, %d failed") % ("classify", 1, 0)
            model = tr("model %s") % "cifar10"
            check(p.returncode == 0 and done in err and model in err and tr(", output logits") in err,
                  f"LANGUAGE={lang}: a classify run's messages are translated", err[-600:])
        p = subprocess.run([a.cnnfx, "classify", "--overlay", "none", img, "-o", os.path.join(d, "out-C")],
                           capture_output=True, env=dict(base, CNNFX_OFFLINE="1", HOME=d))
        check(p.returncode == 0 and "cnnfx classify: 1 done, 0 failed" in p.stderr.decode(), "without LANGUAGE: English",
              p.stderr.decode()[-300:])
    print(f"{len(fails)} failed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
