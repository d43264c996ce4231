# GUI half of tests/gimp/screenshots.sh: opens the photo in gimp-3.0 (under Xvfb) and runs each
# procedure INTERACTIVELY, one after another; screenshots.sh photographs and closes each dialog.
import os
from gi.repository import Gimp, Gio

W = "/src/work/"
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(W + "photo.jpg"))
img.scale(512, round(img.get_height() * 512 / img.get_width()))
Gimp.Display.new(img)
pdb = Gimp.get_pdb()
log = open(W + "shots.txt", "w")
for f in os.environ.get("CNNFX_SHOT_FILTERS", "dream,style,classify,fool,visualize").split(","):
    log.write("OPEN %s\n" % f); log.flush()
    proc = pdb.lookup_procedure("plug-in-cnnfx-" + f)
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", [img.get_layers()[0]])
    r = proc.run(cfg)
    log.write("CLOSED %s %s\n" % (f, r.index(0).value_nick)); log.flush()
log.write("SHOTS-DONE\n")
log.close()
