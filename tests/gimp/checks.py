# Python-Fu checks of the cnnfx plug-in, run inside gimp-console-3.0 (tests/gimp/run.sh):
#   gimp-console-3.0 -i --batch-interpreter=python-fu-eval -b 'exec(open(".../checks.py").read())' --quit
# Environment: CNNFX_PHOTO (a real photo), CNNFX_RESULT (file that receives PASS/FAIL lines),
# CNNFX_CHECKS (optional comma list of check names to run).
import os, sys, time, traceback
from gi.repository import Gimp, Gio, Gegl

PHOTO = os.environ.get("CNNFX_PHOTO", "/src/work/dog.jpg")
RESULT = open(os.environ.get("CNNFX_RESULT", "/tmp/cnnfx-gimp-checks.txt"), "w")
ONLY = [c for c in os.environ.get("CNNFX_CHECKS", "").split(",") if c]
pdb = Gimp.get_pdb()
failures = 0

def log(msg):
    print(msg, flush=True)
    RESULT.write(msg + "\n")
    RESULT.flush()

def check(cond, what):
    global failures
    if cond:
        log("PASS " + what)
    else:
        failures += 1
        log("FAIL " + what)
    return cond

def load(width=256):
    img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(PHOTO))
    w, h = img.get_width(), img.get_height()
    img.scale(width, max(1, round(h * width / w)))
    img.undo_enable()
    return img

def pixels(d):
    buf = d.get_buffer()
    w, h = d.get_width(), d.get_height()
    return w, h, buf.get(Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE)

def diff_stats(a, b, w, rect=None):
    """(mean abs diff inside rect, max abs diff outside rect) over RGB; rect=(x,y,w,h)."""
    n = len(a) // 4
    h = n // w
    ins = outs = 0
    s_in = 0
    m_out = 0
    x0, y0, rw, rh = rect if rect else (0, 0, w, h)
    for y in range(h):
        inside_row = y0 <= y < y0 + rh
        base = y * w * 4
        for x in range(w):
            i = base + x * 4
            dd = max(abs(a[i] - b[i]), abs(a[i + 1] - b[i + 1]), abs(a[i + 2] - b[i + 2]))
            if inside_row and x0 <= x < x0 + rw:
                s_in += dd
                ins += 1
            else:
                m_out = max(m_out, dd)
    return (s_in / max(ins, 1)), m_out

def run(name, img, drawable, mode=Gimp.RunMode.NONINTERACTIVE, **props):
    proc = pdb.lookup_procedure(name)
    if proc is None:
        raise RuntimeError("procedure %s not found" % name)
    cfg = proc.create_config()
    cfg.set_property("run-mode", mode)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", [drawable])
    for k, v in props.items():
        cfg.set_property(k.replace("_", "-"), v)
    t = time.time()
    r = proc.run(cfg)
    status = r.index(0)
    log("  %s %s: %s in %.1f s" % (name, props, status.value_nick, time.time() - t))
    return status, r

OK = Gimp.PDBStatusType.SUCCESS
# Small but real work: the defaults with fewer iterations where the defaults take minutes.
FAST = {
    "dream": {},
    "style": {"iterations": 10, "size": 128, "scales": 1},
    "classify": {},
    "fool": {},
    "visualize": {"iterations": 20, "size": 96},
}
SEL = (64, 48, 96, 64)  # x, y, w, h inside the 256-px photo

def wanted(c):
    return not ONLY or c in ONLY

def t_registered():
    procs = pdb.query_procedures("plug-in-cnnfx-.*", "", "", "", "", "", "", "")
    for f in FAST:
        name = "plug-in-cnnfx-" + f
        check(name in procs, "%s is registered" % name)
        p = pdb.lookup_procedure(name)
        if p:
            check("<Image>/Filters/Neural" in p.get_menu_paths(), "%s is in <Image>/Filters/Neural" % name)

def t_pixel_filter(f, sel, **extra):
    img = load()
    layer = img.get_layers()[0]
    w, h, before = pixels(layer)
    if sel:
        img.select_rectangle(Gimp.ChannelOps.REPLACE, *SEL)
    args = dict(FAST[f]) if not extra.pop("defaults", False) else {}
    args.update(extra)
    st, r = run("plug-in-cnnfx-" + f, img, layer, **args)
    tag = "%s%s%s" % (f, " in a selection" if sel else "", (" " + str(extra)) if extra else "")
    if not check(st == OK, tag + ": succeeds"):
        log("  error: %s" % (r.index(1) if r.length() > 1 else "?"))
        return
    target = layer
    if extra.get("new_layer"):
        layers = img.get_layers()
        check(len(layers) == 2, tag + ": a new layer is added")
        target = r.index(1) or layers[0]
        _, _, orig_again = pixels(layer)
        check(orig_again == before, tag + ": the original layer is unchanged")
    _, _, after = pixels(target)
    mean_in, max_out = diff_stats(before, after, w, SEL if sel else None)
    check(mean_in > 2.0, tag + ": pixels change (mean |diff| %.1f/255)" % mean_in)
    if sel:
        check(max_out == 0, tag + ": pixels outside the selection unchanged (max |diff| %d)" % max_out)
    img.delete()

def t_classify(sel):
    img = load()
    layer = img.get_layers()[0]
    _, _, before = pixels(layer)
    if sel:
        img.select_rectangle(Gimp.ChannelOps.REPLACE, *SEL)
    st, r = run("plug-in-cnnfx-classify", img, layer)
    tag = "classify" + (" in a selection" if sel else "")
    if not check(st == OK, tag + ": succeeds"):
        return
    labels = r.index(1)
    check(labels is not None and len(labels) == 5 and all(isinstance(s, str) and s for s in labels),
          tag + ": returns 5 labels %s" % (labels,))
    layers = img.get_layers()
    names = [l.get_name() for l in layers]
    check(len(layers) == 3, tag + ": adds a heat-map and a labels layer %s" % names)
    check(r.index(3) is not None and r.index(4) is not None, tag + ": returns the heat-map and labels layers")
    if r.index(3) is not None:
        hw, hh, hp = pixels(r.index(3))
        check(len(set(hp[0::37])) > 8, tag + ": the heat map is not flat")
    _, _, after = pixels(layer)
    check(after == before, tag + ": the photo layer itself is unchanged")
    img.delete()

def t_fool(sel):
    img = load()
    layer = img.get_layers()[0]
    w, h, before = pixels(layer)
    if sel:
        img.select_rectangle(Gimp.ChannelOps.REPLACE, *SEL)
    st, r = run("plug-in-cnnfx-fool", img, layer)
    tag = "fool" + (" in a selection" if sel else "")
    if not check(st == OK, tag + ": succeeds"):
        return
    log("  %s (%.3f) -> %s (%.3f)" % (r.index(1), r.index(2), r.index(3), r.index(4)))
    check(bool(r.index(1)) and bool(r.index(3)) and 0 <= r.index(2) <= 1 and 0 <= r.index(4) <= 1,
          tag + ": returns original and new label with probabilities")
    layers = img.get_layers()
    check(len(layers) == 3, tag + ": adds the adversarial and the noise layer %s" % [l.get_name() for l in layers])
    adv = r.index(5)
    if check(adv is not None, tag + ": returns the adversarial layer"):
        _, _, ap = pixels(adv)
        mean_in, max_out = diff_stats(before, ap, w, SEL if sel else None)
        check(0 < mean_in and max(abs(a - b) for a, b in zip(ap, before)) <= 8,
              tag + ": the adversarial layer differs by small noise (mean %.2f)" % mean_in)
        if sel:
            check(max_out == 0, tag + ": outside the selection the adversarial layer is the photo")
    _, _, after = pixels(layer)
    check(after == before, tag + ": the photo layer itself is unchanged")
    img.delete()

def t_visualize(sel):
    img = load()
    layer = img.get_layers()[0]
    if sel:
        img.select_rectangle(Gimp.ChannelOps.REPLACE, *SEL)
    n0 = len(Gimp.get_images())
    st, r = run("plug-in-cnnfx-visualize", img, layer, **FAST["visualize"])
    tag = "visualize" + (" in a selection" if sel else "")
    if not check(st == OK, tag + ": succeeds"):
        return
    new = r.index(1)
    check(new is not None and len(Gimp.get_images()) == n0 + 1, tag + ": makes a new image")
    if new is not None:
        l = new.get_layers()[0]
        w, h, p = pixels(l)
        check(w > 8 and h > 8 and len(set(p[0::29])) > 8, tag + ": the new image %dx%d has content" % (w, h))
        new.delete()
    img.delete()

def t_defaults_all():
    # every procedure by name with only image + drawable
    for f in FAST:
        img = load(128)
        st, r = run("plug-in-cnnfx-" + f, img, img.get_layers()[0])
        check(st == OK, "%s with all defaults succeeds" % f)
        if f == "visualize" and st == OK and r.index(1):
            r.index(1).delete()
        img.delete()

def t_last_vals():
    # GIMP keeps last values of interactive runs only, so here WITH_LAST_VALS means the defaults;
    # style's defaults (a minute on 2 cores) already ran in t_defaults_all.
    for f in [f for f in FAST if f != "style"]:
        img = load(64)
        st, _ = run("plug-in-cnnfx-" + f, img, img.get_layers()[0], **FAST[f])
        st2, r = run("plug-in-cnnfx-" + f, img, img.get_layers()[0], mode=Gimp.RunMode.WITH_LAST_VALS)
        check(st == OK and st2 == OK, "%s runs WITH_LAST_VALS" % f)
        if f == "visualize" and st2 == OK and r.index(1):
            r.index(1).delete()
        img.delete()

def t_formats():
    # grayscale, RGBA and 16-bit / 32-bit float images
    for kind in ("gray", "rgba", "u16", "float"):
        img = load(128)
        layer = img.get_layers()[0]
        if kind == "gray":
            img.convert_grayscale()
        elif kind == "rgba":
            layer.add_alpha()
        elif kind == "u16":
            img.convert_precision(Gimp.Precision.U16_NON_LINEAR)
        else:
            img.convert_precision(Gimp.Precision.FLOAT_LINEAR)
        layer = img.get_layers()[0]
        w, h, before = pixels(layer)
        st, _ = run("plug-in-cnnfx-dream", img, layer)
        _, _, after = pixels(layer)
        mean_in, _ = diff_stats(before, after, w)
        check(st == OK and mean_in > 1.0, "dream on a %s image changes it (mean %.1f)" % (kind, mean_in))
        img.delete()

def t_error_leaves_image():
    # an error (a model file that does not exist) must leave the image as it was
    img = load(128)
    layer = img.get_layers()[0]
    _, _, before = pixels(layer)
    for f in FAST:
        st, r = run("plug-in-cnnfx-" + f, img, layer, model="/nonexistent/model.onnx")
        check(st == Gimp.PDBStatusType.EXECUTION_ERROR, "%s with a missing model fails with an execution error" % f)
    _, _, after = pixels(layer)
    check(after == before and len(img.get_layers()) == 1, "after the errors the image is unchanged")
    img.delete()

def t_feather():
    # a feathered selection blends: full effect inside, partial at the edge, none far outside
    img = load()
    layer = img.get_layers()[0]
    w, h, before = pixels(layer)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, *SEL)
    Gimp.Selection.feather(img, 24)
    st, _ = run("plug-in-cnnfx-dream", img, layer)
    _, _, after = pixels(layer)
    def d(x, y):
        i = (y * w + x) * 4
        return max(abs(after[i + c] - before[i + c]) for c in range(3))
    x0, y0, sw, sh = SEL
    centre = sum(d(x, y0 + sh // 2) for x in range(x0 + 20, x0 + sw - 20)) / (sw - 40)
    edge = sum(d(x0 - 2, y) for y in range(y0 + 10, y0 + sh - 10)) / (sh - 20)
    far = max(d(x, y) for x in range(0, 20) for y in range(0, h))
    check(st == OK and centre > edge > 0 and far == 0,
          "dream in a feathered selection blends at the edge (centre %.1f, edge %.1f, far %d)" % (centre, edge, far))
    img.delete()

def t_fast_style():
    # a feed-forward style network (made by make_fast_style.py: y = 255 - x), given as the
    # fast-model file and as the model itself
    net = "/src/work/invert_style.onnx"
    if not os.path.exists(net):
        log("skipped fast style: no %s (python3-onnx missing on the host)" % net)
        return
    for how in ("fast-model", "model"):
        img = load(128)
        layer = img.get_layers()[0]
        w, h, before = pixels(layer)
        arg = {"fast_model": Gio.File.new_for_path(net)} if how == "fast-model" else {"model": net}
        st, _ = run("plug-in-cnnfx-style", img, layer, **arg)
        _, _, after = pixels(layer)
        err = max(abs((255 - before[i]) - after[i]) for i in range(len(before)) if i % 4 != 3)
        check(st == OK and err <= 1, "style with a fast style network as %s inverts the colours (max error %d)"
              % (how, err))
        img.delete()

try:
    if wanted("registered"): t_registered()
    if wanted("faststyle"): t_fast_style()
    if wanted("errors"): t_error_leaves_image()
    if wanted("feather"): t_feather()
    for sel in (False, True):
        if wanted("dream"): t_pixel_filter("dream", sel)
        if wanted("style"): t_pixel_filter("style", sel)
        if wanted("classify"): t_classify(sel)
        if wanted("fool"): t_fool(sel)
        if wanted("visualize"): t_visualize(sel)
    if wanted("dream"): t_pixel_filter("dream", True, new_layer=True)
    if wanted("defaults"): t_defaults_all()
    if wanted("lastvals"): t_last_vals()
    if wanted("formats"): t_formats()
except Exception:
    failures += 1
    log("FAIL exception: " + traceback.format_exc().replace("\n", " | "))
log("DONE %d failures" % failures)
RESULT.close()
