#!/bin/sh
# copy-mo.sh LOCALEDIR DEST: copy the installed cnnfx.mo of every language (po/LINGUAS) from
# LOCALEDIR to DEST/<lang>/LC_MESSAGES/ (the GIMP plug-in's own "locale" folder).  Run by
# `meson install` (meson.add_install_script); honours DESTDIR.
set -eu
src="${DESTDIR:-}$1"
dst="${DESTDIR:-}$2"
for lang in ru pl; do
  if [ -f "$src/$lang/LC_MESSAGES/cnnfx.mo" ]; then
    mkdir -p "$dst/$lang/LC_MESSAGES"
    cp "$src/$lang/LC_MESSAGES/cnnfx.mo" "$dst/$lang/LC_MESSAGES/cnnfx.mo"
  fi
done
