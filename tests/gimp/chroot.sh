#!/bin/bash
# Create (or reuse) a cached Debian 13 "trixie" chroot with GIMP 3 and the cnnfx build
# dependencies, and manage its mounts.
#
#   tests/gimp/chroot.sh create     make the chroot if missing, add missing packages (default)
#   tests/gimp/chroot.sh mount      mount proc/sys/dev/dev/pts/dev/shm (the caller must umount)
#   tests/gimp/chroot.sh umount     undo the mounts
#   tests/gimp/chroot.sh path       print the chroot directory
#
# The chroot lives in $CNNFX_CHROOT (default /var/cache/cnnfx-chroot/trixie).  Exit 77 with
# "skipped: <why>" when it cannot be made (not root, no debootstrap, no mirror reachable).
set -euo pipefail

ROOT=${CNNFX_CHROOT:-/var/cache/cnnfx-chroot/trixie}
SUITE=trixie
PACKAGES="build-essential ca-certificates dbus-x11 gcc gettext gimp gir1.2-gimp-3.0 imagemagick
libcurl4-openssl-dev libglib2.0-dev libgimp-3.0-dev libjpeg-dev libopenblas-dev libpng-dev locales
meson ninja-build pkg-config python3 python3-gi x11-utils xauth xdotool xvfb zlib1g-dev"

skip () { echo "skipped: $*"; exit 77; }

mirror () {
    if [ -n "${CNNFX_MIRROR:-}" ]; then echo "$CNNFX_MIRROR"; return; fi
    local m
    m=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources \
            /etc/apt/sources.list.d/*.list 2>/dev/null |
        grep -v security | grep -oE 'https?://[^ ]+' | head -n1)
    echo "${m:-http://deb.debian.org/debian}"
}

is_mounted () { mountpoint -q "$1" 2>/dev/null; }

do_mount () {
    is_mounted "$ROOT/proc"    || mount -t proc proc "$ROOT/proc"
    is_mounted "$ROOT/sys"     || mount -t sysfs sysfs "$ROOT/sys"
    is_mounted "$ROOT/dev"     || mount --bind /dev "$ROOT/dev"
    is_mounted "$ROOT/dev/pts" || mount --bind /dev/pts "$ROOT/dev/pts"
    is_mounted "$ROOT/dev/shm" || mount -t tmpfs shm "$ROOT/dev/shm"
}

do_umount () {
    local m
    for m in dev/shm dev/pts dev sys proc; do
        if is_mounted "$ROOT/$m"; then umount "$ROOT/$m" || umount -l "$ROOT/$m" || true; fi
    done
}

in_root () { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
                 DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }

do_create () {
    [ "$(id -u)" = 0 ] || skip "building the Debian 13 chroot needs root"
    command -v debootstrap >/dev/null || skip "debootstrap is not installed"
    command -v chroot >/dev/null || skip "chroot is not available"
    mkdir -p "$(dirname "$ROOT")" || skip "cannot create $(dirname "$ROOT")"
    exec 9>"$(dirname "$ROOT")/.lock"
    flock 9
    if [ ! -f "$ROOT/.cnnfx-bootstrapped" ]; then
        local m; m=$(mirror)
        echo "chroot: debootstrap $SUITE from $m into $ROOT"
        do_umount
        rm -rf "$ROOT"
        mkdir -p "$ROOT"
        if ! debootstrap --variant=minbase "$SUITE" "$ROOT" "$m" >"$ROOT.debootstrap.log" 2>&1; then
            tail -n 20 "$ROOT.debootstrap.log" >&2
            do_umount; rm -rf "$ROOT"
            skip "debootstrap $SUITE from $m failed (see above)"
        fi
        touch "$ROOT/.cnnfx-bootstrapped"
    fi
    # Add whatever packages are missing (cheap when all are there).
    local missing=""
    for p in $PACKAGES; do
        in_root dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "chroot: installing$missing"
        trap do_umount EXIT
        do_mount
        cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
        if ! { in_root apt-get update -q &&
               in_root apt-get install -y -q --no-install-recommends $missing; } >"$ROOT.apt.log" 2>&1; then
            tail -n 30 "$ROOT.apt.log" >&2
            skip "apt-get install in the chroot failed (see above)"
        fi
        do_umount
        trap - EXIT
    fi
    if [ ! -f "$ROOT/.cnnfx-locales" ]; then
        sed -i -E 's/^# *(en_US.UTF-8|ru_RU.UTF-8|pl_PL.UTF-8)/\1/' "$ROOT/etc/locale.gen"
        in_root locale-gen >/dev/null && touch "$ROOT/.cnnfx-locales"
    fi
    echo "chroot: ready at $ROOT"
}

case "${1:-create}" in
    create) do_create ;;
    mount) do_mount ;;
    umount) do_umount ;;
    path) echo "$ROOT" ;;
    *) echo "usage: $0 [create|mount|umount|path]" >&2; exit 2 ;;
esac
