#!/usr/bin/env bash
# Prepares nginx headers for building a dynamic module binary-compatible with Debian's nginx:
# copies the nginx-dev source tree to DEST and runs its configure with Debian's own flags, which
# produces objs/ngx_auto_config.h. Usage: configure-nginx.sh SRC DEST
set -euo pipefail
src=$1
dest=$2
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
cp -r "$src" "$dest"
cd "$dest"
# conf_flags defines NGX_CONF_FLAGS, the arguments Debian's nginx was configured with (--with-compat among them).
# shellcheck disable=SC1091
source ./conf_flags
if ! printf '%s\n' "${NGX_CONF_FLAGS[@]}" | grep -qx -- '--with-compat'; then
  echo "configure-nginx: Debian's conf_flags lack --with-compat; dynamic modules would not load" >&2
  exit 1
fi
./configure "${NGX_CONF_FLAGS[@]}" > configure.log 2>&1 || { tail -30 configure.log >&2; exit 1; }
test -f objs/ngx_auto_config.h
