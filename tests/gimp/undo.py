# GUI half of the undo check (tests/gimp/undo.sh): runs inside gimp-3.0 under Xvfb.
# Loads the photo into a display, runs each pixel filter once, then waits until undo.sh has
# pressed ctrl+z ONCE in the image window, and checks that the pixels are the original again.
import os, time
from gi.repository import Gimp, Gio, Gegl

W = "/src/work/"
out = open(W + "undo.txt", "w")
def log(s):
    out.write(s + "\n"); out.flush(); print(s, flush=True)

def pixels(d):
    return d.get_buffer().get(Gegl.Rectangle.new(0, 0, d.get_width(), d.get_height()), 1.0, "R'G'B'A u8",
                              Gegl.AbyssPolicy.NONE)

pdb = Gimp.get_pdb()
for f in os.environ.get("CNNFX_UNDO_FILTERS", "dream,style").split(","):
    img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(W + "photo.jpg"))
    img.scale(256, round(img.get_height() * 256 / img.get_width()))
    img.undo_enable()
    disp = Gimp.Display.new(img)
    layer = img.get_layers()[0]
    before = pixels(layer)
    proc = pdb.lookup_procedure("plug-in-cnnfx-" + f)
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", [layer])
    if f == "style":
        cfg.set_property("iterations", 5); cfg.set_property("size", 96); cfg.set_property("scales", 1)
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 32, 32, 128, 96)  # an undo step of its own
    r = proc.run(cfg)
    Gimp.displays_flush()
    changed = pixels(layer) != before
    log("RAN %s %s changed=%s" % (f, r.index(0).value_nick, changed))
    go = W + "undo-go-" + f
    log("READY " + f)
    t = time.time()
    while not os.path.exists(go) and time.time() - t < 120:
        time.sleep(0.2)
    time.sleep(1.0)
    after = pixels(layer)
    ok = changed and after == before
    log(("PASS" if ok else "FAIL") + " %s: one undo (ctrl+z) restores the original (changed by the filter: %s)"
        % (f, changed))
    disp.delete()
    img.delete()
# the interactive path: the dialog's Cancel leaves the image unchanged; OK runs the filter
# (progress in the status bar) and one undo restores the original
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(W + "photo.jpg"))
img.scale(256, round(img.get_height() * 256 / img.get_width()))
img.undo_enable()
disp = Gimp.Display.new(img)
layer = img.get_layers()[0]
before = pixels(layer)
proc = pdb.lookup_procedure("plug-in-cnnfx-dream")
for action in ("cancel", "ok"):
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", [layer])
    log("DIALOG " + action)
    r = proc.run(cfg)
    st = r.index(0)
    changed = pixels(layer) != before
    if action == "cancel":
        ok = st == Gimp.PDBStatusType.CANCEL and not changed
        log(("PASS" if ok else "FAIL") + " interactive dream: Cancel in the dialog leaves the image unchanged (%s)"
            % st.value_nick)
    else:
        ok = st == Gimp.PDBStatusType.SUCCESS and changed
        log(("PASS" if ok else "FAIL") + " interactive dream: OK in the dialog runs the filter (%s)" % st.value_nick)
Gimp.displays_flush()
log("READY interactive")
t = time.time()
while not os.path.exists(W + "undo-go-interactive") and time.time() - t < 120:
    time.sleep(0.2)
time.sleep(1.0)
log(("PASS" if pixels(layer) == before else "FAIL") + " interactive: one undo (ctrl+z) restores the original")
disp.delete()
img.delete()
log("UNDO-DONE")
out.close()
