#!/bin/bash
# One undo restores the original (issue 8 §4): undo is not in the PDB, so this drives the GUI.
# gimp-3.0 runs under Xvfb (and a D-Bus session) in the chroot given as $1, with undo.py as its
# batch script; for each filter, once undo.py reports READY this presses ctrl+z once in the image
# window (xdotool) and undo.py compares the pixels with the original.  Exit 0 pass, 1 fail.
set -uo pipefail
ROOT=$1
W=$ROOT/src/work
DPY=${CNNFX_XVFB_DISPLAY:-:77}
FILTERS=${CNNFX_UNDO_FILTERS:-dream,style}
ENVV=(PATH=/usr/bin:/bin HOME=/tmp/cnnfx-gimp-gui LANG=C.UTF-8 DISPLAY="$DPY" OMP_NUM_THREADS=2
      OMP_WAIT_POLICY=passive CNNFX_UNDO_FILTERS="$FILTERS")
in_root () { chroot "$ROOT" /usr/bin/env -i "${ENVV[@]}" "$@"; }
# in the background, as the leader of a new process group (so cleanup can end all of it)
bg_root () { setsid chroot "$ROOT" /usr/bin/env -i "${ENVV[@]}" "$@" & }
pids=()
# every process started here leads its own process group (setsid): end the groups
cleanup () { local p; for p in "${pids[@]}"; do kill -- -"$p" 2>/dev/null; done; }
trap cleanup EXIT
rm -f "$W"/undo.txt "$W"/undo-go-*
in_root mkdir -p /tmp/cnnfx-gimp-gui
bg_root Xvfb "$DPY" -screen 0 1280x1024x24 -nolisten tcp >"$W/xvfb.log" 2>&1
pids+=($!)
sleep 2
bg_root timeout 600 dbus-run-session -- gimp-3.0 --no-splash --batch-interpreter=python-fu-eval \
    -b 'exec(open("/src/work/undo.py").read())' -b '(gimp-quit TRUE)' >"$W/undo-gimp.log" 2>&1
gimp=$!
pids+=($gimp)
rc=0
IFS=, read -ra fs <<<"$FILTERS"
for f in "${fs[@]}"; do
    t=0
    until grep -q "^READY $f" "$W/undo.txt" 2>/dev/null; do
        sleep 1; t=$((t + 1))
        if [ $t -gt 300 ] || ! kill -0 $gimp 2>/dev/null; then
            echo "FAIL: gimp-3.0 never reached the undo step of $f"; tail -n 20 "$W/undo-gimp.log"; exit 1
        fi
    done
    win=$(in_root xdotool search --onlyvisible --name '[0-9]+x[0-9]+ – GIMP' 2>/dev/null | tail -n 1)
    if [ -z "$win" ]; then echo "FAIL: no image window found"; in_root xdotool search --name . getwindowname %@ 2>/dev/null | head; exit 1; fi
    in_root xdotool windowfocus --sync "$win" key ctrl+z
    touch "$W/undo-go-$f"
    t=0
    until grep -q " $f: one undo" "$W/undo.txt" 2>/dev/null; do
        sleep 1; t=$((t + 1)); [ $t -gt 60 ] && { echo "FAIL: no undo result for $f"; exit 1; }
    done
done
# interactive: Escape (Cancel) in the first dialog, Return (OK) in the second, then ctrl+z
for key in Escape Return; do
    action=cancel; [ $key = Return ] && action=ok
    t=0
    until grep -q "^DIALOG $action" "$W/undo.txt" 2>/dev/null && dlg=$(in_root xdotool search --onlyvisible --name 'Deep Dream' 2>/dev/null | tail -n 1) && [ -n "$dlg" ]; do
        sleep 1; t=$((t + 1))
        if [ $t -gt 120 ] || ! kill -0 $gimp 2>/dev/null; then echo "FAIL: no Deep Dream dialog ($action)"; tail -n 20 "$W/undo-gimp.log"; exit 1; fi
    done
    sleep 1
    in_root xdotool windowfocus --sync "$dlg" key $key
done
t=0
until grep -q "^READY interactive" "$W/undo.txt" 2>/dev/null; do
    sleep 1; t=$((t + 1)); [ $t -gt 300 ] && { echo "FAIL: the interactive run did not finish"; exit 1; }
done
win=$(in_root xdotool search --onlyvisible --name '[0-9]+x[0-9]+ – GIMP' 2>/dev/null | tail -n 1)
in_root xdotool windowfocus --sync "$win" key ctrl+z
touch "$W/undo-go-interactive"
t=0
until grep -q "^UNDO-DONE" "$W/undo.txt" 2>/dev/null; do
    sleep 1; t=$((t + 1)); [ $t -gt 60 ] && { echo "FAIL: no result of the interactive undo"; break; }
done
grep -E '^(RAN|PASS|FAIL)' "$W/undo.txt"
grep -q '^FAIL' "$W/undo.txt" && rc=1
# gimp-3.0 is ended by cleanup (a quit could stop at an "unsaved images" question)
exit $rc
