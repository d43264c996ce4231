#!/bin/bash
# Screenshots of every cnnfx dialog in GIMP 3 (Xvfb in the Debian 13 chroot) and before/after
# pictures of each filter, into docs/img/gimp-*.png.  Run tests/gimp/run.sh first (it builds and
# installs the plug-in in the chroot).
#
#   tests/gimp/screenshots.sh            English
#   LANGUAGE=ru tests/gimp/screenshots.sh   Russian (needs po/ru.po installed): docs/img/gimp-ru-*.png
#   NO_GALLERY=1                          dialogs only
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
OUT=${OUT:-$SRC/docs/img}
LANG_CODE=${LANGUAGE:-en}
case "$LANG_CODE" in
    en*) LOC=en_US.UTF-8; PREFIX=gimp ;;
    ru*) LOC=ru_RU.UTF-8; PREFIX=gimp-ru ;;
    pl*) LOC=pl_PL.UTF-8; PREFIX=gimp-pl ;;
    *) echo "unknown LANGUAGE $LANG_CODE"; exit 2 ;;
esac
SHOTS=${CNNFX_SHOT_FILTERS:-dream,style,classify,fool,visualize}
"$HERE/chroot.sh" create || exit $?
ROOT=$("$HERE/chroot.sh" path)
W=$ROOT/src/work
DPY=${CNNFX_XVFB_DISPLAY:-:78}
mkdir -p "$OUT" "$W"
pids=()
# every process started here leads its own process group (setsid): end the groups
cleanup () { local p; for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null; done; sleep 1; "$HERE/chroot.sh" umount; }
trap cleanup EXIT
"$HERE/chroot.sh" mount
ENVV=(PATH=/usr/bin:/bin HOME=/tmp/cnnfx-gimp-shots LANG=$LOC LC_ALL=$LOC LANGUAGE="$LANG_CODE" DISPLAY="$DPY"
      OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive CNNFX_SHOT_FILTERS="$SHOTS")
in_root () { chroot "$ROOT" /usr/bin/env -i "${ENVV[@]}" "$@"; }
bg_root () { setsid chroot "$ROOT" /usr/bin/env -i "${ENVV[@]}" "$@" & }
[ -x "$ROOT/usr/lib/x86_64-linux-gnu/gimp/3.0/plug-ins/cnnfx-gimp/cnnfx-gimp" ] ||
    { echo "the plug-in is not installed in the chroot: run tests/gimp/run.sh first"; exit 1; }
cp "${CNNFX_PHOTO:-/usr/share/darknet/data/dog.jpg}" "$W/photo.jpg"
cp "$HERE/shots.py" "$HERE/gallery.py" "$W/"
in_root mkdir -p /tmp/cnnfx-gimp-shots

# 1. dialogs
rm -f "$W/shots.txt"
bg_root Xvfb "$DPY" -screen 0 1400x1000x24 -nolisten tcp >"$W/xvfb-shots.log" 2>&1
pids+=($!)
sleep 2
bg_root timeout 900 dbus-run-session -- gimp-3.0 --no-splash --batch-interpreter=python-fu-eval \
    -b 'exec(open("/src/work/shots.py").read())' -b '(gimp-quit TRUE)' >"$W/shots-gimp.log" 2>&1
gimp=$!
pids+=($gimp)
wait_for () { # wait_for REGEX-in-shots.txt
    local t=0
    until grep -q "$1" "$W/shots.txt" 2>/dev/null; do
        sleep 1; t=$((t + 1))
        if [ $t -gt 400 ] || ! kill -0 $gimp 2>/dev/null; then echo "gave up waiting for $1"; tail -n 20 "$W/shots-gimp.log"; return 1; fi
    done
}
# the newest visible top-level window that is not the image window
dialog_window () {
    local t=0 w
    while [ $t -lt 120 ]; do
        w=$(in_root xdotool search --onlyvisible --name "$1" 2>/dev/null | tail -n 1)
        [ -n "$w" ] && { echo "$w"; return 0; }
        sleep 1; t=$((t + 1))
    done
    return 1
}
shot () { # shot WINDOW NAME
    sleep 1.5
    in_root import -window "$1" "/src/work/$2.png" && cp "$W/$2.png" "$OUT/$2.png" && echo "wrote $OUT/$2.png"
}
for f in ${SHOTS//,/ }; do
    wait_for "OPEN $f" || exit 1
    case $f in
        dream) title='Deep Dream|Глубокий|Deep' ;;
        style) title='Style|стил|Styl|styl' ;;
        classify) title='Classify|Класс|Klasyf' ;;
        fool) title='Fool|Обман|Oszuk' ;;
        visualize) title='Visuali|Визуал|Wizual' ;;
    esac
    win=$(dialog_window "$title") || { echo "no dialog for $f"; exit 1; }
    shot "$win" "$PREFIX-dialog-$f"
    if [ $f = classify ]; then
        in_root xdotool windowfocus --sync "$win" key Return  # OK: runs, then the results dialog
        sleep 3
        t=0
        until res=$(in_root xdotool search --onlyvisible --name "$title" 2>/dev/null | grep -v "^$win$" | tail -n 1) && [ -n "$res" ]; do
            sleep 1; t=$((t + 1)); [ $t -gt 120 ] && { echo "no classify results dialog"; exit 1; }
        done
        shot "$res" "$PREFIX-classify-results"
        in_root xdotool windowfocus --sync "$res" key Escape
    else
        in_root xdotool windowfocus --sync "$win" key Escape
    fi
    wait_for "CLOSED $f" || exit 1
done
wait_for SHOTS-DONE
kill -- -$gimp 2>/dev/null
cat "$W/shots.txt"
if grep -q 'error' "$W/shots.txt"; then echo "FAIL: an interactive run ended with an error"; exit 1; fi

# 2. before / after pictures
if [ "${NO_GALLERY:-0}" != 1 ] && [ "$PREFIX" = gimp ]; then
    [ -r /usr/share/darknet/data/scream.jpg ] && cp /usr/share/darknet/data/scream.jpg "$W/style.jpg"
    photos=photo
    for p in ${CNNFX_GALLERY_MORE-eagle}; do
        [ -r /usr/share/darknet/data/$p.jpg ] && cp /usr/share/darknet/data/$p.jpg "$W/$p.jpg" && photos="$photos,$p"
    done
    in_root env CNNFX_GALLERY_PHOTOS=$photos timeout 1200 gimp-console-3.0 -i --batch-interpreter=python-fu-eval \
        -b 'exec(open("/src/work/gallery.py").read())' --quit >"$W/gallery.log" 2>&1
    grep -q GALLERY-DONE "$W/gallery.log" || { tail -n 20 "$W/gallery.log"; exit 1; }
    IFS=, read -ra ps <<<"$photos"
    for p in "${ps[@]}"; do
        for f in dream style classify fool visualize; do
            [ -f "$W/gallery/$f-$p.png" ] || continue
            in_root convert "/src/work/gallery/$p.png" "/src/work/gallery/$f-$p.png" -background white \
                -gravity center +append "/src/work/gallery/ba-$f-$p.png" &&
                cp "$W/gallery/ba-$f-$p.png" "$OUT/gimp-before-after-$f-$p.png" && echo "wrote gimp-before-after-$f-$p.png"
        done
    done
fi
