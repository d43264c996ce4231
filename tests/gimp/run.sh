#!/bin/bash
# GIMP 3 integration test of the cnnfx plug-in in a Debian 13 chroot (tests/gimp/chroot.sh):
# copies the source tree in, builds and installs cnnfx there with prefix /usr (GIMP's plug-in
# folder), then drives every plug-in-cnnfx-* procedure in a real gimp-console-3.0 on a real
# photo: Python-Fu for pixels, layers, selections and run modes (checks.py), Script-Fu for
# classify's array return values (checks.scm), and the GUI under Xvfb for the one-step undo
# (undo.py + xdotool ctrl+z).
#
#   tests/gimp/run.sh            all checks; exit 0 pass, 1 fail, 77 skipped ("skipped: why")
#   CNNFX_CHROOT=DIR             chroot location (default /var/cache/cnnfx-chroot/trixie)
#   CNNFX_PHOTO=FILE             photo (default /usr/share/darknet/data/dog.jpg)
#   CNNFX_CHECKS=a,b             only these checks.py groups; CNNFX_GIMP_NO_UNDO=1 skips the GUI undo check
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
skip () { echo "skipped: $*"; exit 77; }

PHOTO=${CNNFX_PHOTO:-/usr/share/darknet/data/dog.jpg}
[ -r "$PHOTO" ] || skip "no test photo $PHOTO (apt-get install darknet, or set CNNFX_PHOTO)"
"$HERE/chroot.sh" create
rc=$?
[ $rc = 77 ] && exit 77
[ $rc = 0 ] || { echo "FAIL: chroot.sh create exited $rc"; exit 1; }
ROOT=$("$HERE/chroot.sh" path)

cleanup () {
    local p
    for p in ${PIDS:-}; do kill "$p" 2>/dev/null; done
    sleep 2  # let the GUI check's processes (ended by undo.sh) leave the chroot's mounts
    "$HERE/chroot.sh" umount
}
PIDS=""
trap cleanup EXIT
"$HERE/chroot.sh" mount || { echo "FAIL: cannot mount the chroot's file systems"; exit 1; }

in_root () {
    chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp/cnnfx-gimp-home \
        LANG=C.UTF-8 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} OMP_WAIT_POLICY=passive "$@"
}

# 1. the source tree (tracked + untracked-but-not-ignored files) into /src/cnnfx
echo "== copying the source tree into $ROOT/src/cnnfx"
rm -rf "$ROOT/src/cnnfx" && mkdir -p "$ROOT/src/cnnfx" "$ROOT/src/work" || exit 1
if git -C "$SRC" rev-parse --git-dir >/dev/null 2>&1; then
    (cd "$SRC" && git ls-files -co --exclude-standard -z | tar --null -cf - -T -) | tar -xf - -C "$ROOT/src/cnnfx"
else
    (cd "$SRC" && tar --exclude='./build*' -cf - .) | tar -xf - -C "$ROOT/src/cnnfx"
fi
cp "$PHOTO" "$ROOT/src/work/photo.jpg" || exit 1
cp "$HERE"/checks.py "$HERE"/checks.scm "$HERE"/undo.py "$ROOT/src/work/" || exit 1
rm -f "$ROOT/src/work/invert_style.onnx"
/usr/bin/python3 "$HERE/make_fast_style.py" "$ROOT/src/work/invert_style.onnx" 2>/dev/null ||
    echo "note: no python3-onnx here, the fast-style check is skipped"

# 2. build and install with GIMP's own prefix (the build folder is kept between runs)
echo "== building and installing cnnfx (prefix /usr) in the chroot"
# (the copied files keep their git mtimes, so the kept build folder is always reconfigured; when
# that fails it is made afresh)
build () {
    in_root sh -c 'cd /src/cnnfx &&
        if [ -f /src/build/build.ninja ]; then meson setup --reconfigure /src/build --prefix=/usr -Dgimp=enabled;
        else meson setup /src/build --prefix=/usr -Dnative=false -Dgimp=enabled; fi &&
        nice ninja -C /src/build -j2 && meson install -C /src/build --quiet'
}
if ! build >"$ROOT/src/work/build.log" 2>&1 && ! { rm -rf "$ROOT/src/build"; build >"$ROOT/src/work/build.log" 2>&1; }; then
    tail -n 40 "$ROOT/src/work/build.log"
    echo "FAIL: building cnnfx in the Debian 13 chroot"
    exit 1
fi
PLUG=$(in_root pkg-config --variable=gimplibdir gimp-3.0)/plug-ins/cnnfx-gimp/cnnfx-gimp
[ -x "$ROOT$PLUG" ] || { echo "FAIL: meson install did not put the plug-in at $PLUG"; exit 1; }
echo "installed $PLUG"
fails=0

# 3. Python-Fu checks
echo "== Python-Fu checks (gimp-console-3.0)"
in_root mkdir -p /tmp/cnnfx-gimp-home
rm -f "$ROOT/src/work/checks.txt"
in_root env CNNFX_PHOTO=/src/work/photo.jpg CNNFX_RESULT=/src/work/checks.txt CNNFX_CHECKS="${CNNFX_CHECKS:-}" \
    timeout 900 gimp-console-3.0 -i --batch-interpreter=python-fu-eval \
    -b 'exec(open("/src/work/checks.py").read())' --quit >"$ROOT/src/work/checks.log" 2>&1
grep -E '^(PASS|FAIL|  )' "$ROOT/src/work/checks.txt" 2>/dev/null
if ! grep -q '^DONE 0 failures' "$ROOT/src/work/checks.txt" 2>/dev/null; then
    echo "--- gimp-console output (tail)"; grep -v -i 'broken pipe' "$ROOT/src/work/checks.log" | tail -n 30
    echo "FAIL: Python-Fu checks"
    fails=$((fails + 1))
fi

# 4. Script-Fu: classify's return values (string array + double array)
echo "== Script-Fu checks"
in_root timeout 300 gimp-console-3.0 -i --batch-interpreter=plug-in-script-fu-eval \
    -b '(load "/src/work/checks.scm")' --quit >"$ROOT/src/work/checks-scm.log" 2>&1
grep -E '^(PASS|FAIL)' "$ROOT/src/work/checks-scm.log"
if ! grep -q '^SCM-DONE' "$ROOT/src/work/checks-scm.log" || grep -q '^FAIL' "$ROOT/src/work/checks-scm.log"; then
    tail -n 30 "$ROOT/src/work/checks-scm.log"; echo
    echo "FAIL: Script-Fu checks"
    fails=$((fails + 1))
fi

# 5. one undo step restores the original: the GUI under Xvfb, Edit > Undo by ctrl+z
if [ "${CNNFX_GIMP_NO_UNDO:-0}" != 1 ]; then
    echo "== undo check (gimp-3.0 under Xvfb, xdotool ctrl+z)"
    if ! "$HERE/undo.sh" "$ROOT"; then
        echo "FAIL: undo check"
        fails=$((fails + 1))
    fi
fi

if [ $fails != 0 ]; then echo "FAILED: $fails group(s) of GIMP checks"; exit 1; fi
echo "all GIMP checks passed"
exit 0
