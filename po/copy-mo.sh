#!/bin/sh
# copy-mo.sh LOCALEDIR DEST [NAME]: copy the installed cnnfx.mo of every language (po/LINGUAS) from
# LOCALEDIR to DEST/<lang>/LC_MESSAGES/NAME.mo (NAME defaults to cnnfx).  Run by `meson install`
# (meson.add_install_script), after the catalogues are installed; honours DESTDIR.
set -eu
src="${DESTDIR:-}$1"
dst="${DESTDIR:-}$2"
name="${3:-cnnfx}"
linguas="$(dirname "$0")/LINGUAS"
for lang in $(grep -v '^#' "$linguas"); do
  if [ -f "$src/$lang/LC_MESSAGES/cnnfx.mo" ]; then
    mkdir -p "$dst/$lang/LC_MESSAGES"
    cp "$src/$lang/LC_MESSAGES/cnnfx.mo" "$dst/$lang/LC_MESSAGES/$name.mo"
  fi
done
