# Before/after pictures of each filter on real photos (tests/gimp/screenshots.sh), made by the
# plug-in itself in gimp-console-3.0: writes /src/work/gallery/<filter>-<photo>.png (after) and
# <photo>.png (before).
import os
from gi.repository import Gimp, Gio

W = "/src/work/"
os.makedirs(W + "gallery", exist_ok=True)
pdb = Gimp.get_pdb()

def save(img, path):
    img2 = img.duplicate()
    img2.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
    Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img2, Gio.File.new_for_path(path), None)
    img2.delete()

def run(f, img, **props):
    proc = pdb.lookup_procedure("plug-in-cnnfx-" + f)
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", [img.get_layers()[-1]])
    for k, v in props.items():
        cfg.set_property(k.replace("_", "-"), v)
    r = proc.run(cfg)
    print(f, r.index(0).value_nick, flush=True)
    return r

for photo in os.environ.get("CNNFX_GALLERY_PHOTOS", "photo").split(","):
    def load():
        img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(W + photo + ".jpg"))
        img.scale(256, round(img.get_height() * 256 / img.get_width()))
        return img
    img = load(); save(img, W + "gallery/%s.png" % photo); img.delete()
    img = load(); run("dream", img, iterations=20); save(img, W + "gallery/dream-%s.png" % photo); img.delete()
    img = load()
    style = W + "style.jpg"
    if os.path.exists(style):
        run("style", img, style_file=Gio.File.new_for_path(style), iterations=25, size=256, scales=1)
    else:
        run("style", img, iterations=25, size=256, scales=1)
    save(img, W + "gallery/style-%s.png" % photo); img.delete()
    img = load(); run("classify", img); save(img, W + "gallery/classify-%s.png" % photo); img.delete()
    img = load(); r = run("fool", img)
    noise = r.index(6)
    if noise is not None:
        noise.set_visible(True)
    save(img, W + "gallery/fool-%s.png" % photo); img.delete()
    img = load(); r = run("visualize", img, size=224)
    if r.index(1) is not None:
        save(r.index(1), W + "gallery/visualize-%s.png" % photo); r.index(1).delete()
    img.delete()
print("GALLERY-DONE", flush=True)
