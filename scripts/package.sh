#!/usr/bin/env bash
# Builds the Debian packages (libnginx-mod-http-paygate, paygated) with dpkg-buildpackage and
# checks them with lintian. Usage: scripts/package.sh [OUT_DIR]   (default build-package)
#
# The source tree is copied to OUT_DIR/src/paygate-VERSION with packaging/debian as its debian/
# directory, so the checkout itself never gets a debian/ dir or dpkg-buildpackage's leftovers.
# What is copied is what git tracks plus untracked files it does not ignore: uncommitted work is
# packaged, build trees and var/ are not. The .deb files end up in OUT_DIR.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$repo/build-package}" && cd "${1:-$repo/build-package}" && pwd)

version=$(dpkg-parsechangelog -l "$repo/packaging/debian/changelog" -S Version)
cmake_version=$(sed -n 's/^project(paygate VERSION \([0-9.]*\).*/\1/p' "$repo/CMakeLists.txt")
# Native package: its version is the project's (a packaging-only change adds +debN).
if [ "${version%%+*}" != "$cmake_version" ]; then
  echo "package: debian/changelog says $version, CMakeLists.txt says $cmake_version" >&2
  exit 1
fi

src="$out/src/paygate-$version"
rm -rf "$out/src"
mkdir -p "$src"
# Never copied: CMake build trees (a CMakeCache.txt at their top) and OUT_DIR itself, wherever
# they are and whether or not .gitignore knows them.
skip=()
for cache in "$repo"/*/CMakeCache.txt; do
  [ -e "$cache" ] && skip+=("$(basename "$(dirname "$cache")")/")
done
case "$out/" in "$repo"/*) skip+=("${out#"$repo"/}/") ;; esac
list_sources() {
  if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$repo" ls-files -z --cached --others --exclude-standard
  else   # an unpacked tarball: everything but .git, build trees and var/
    (cd "$repo" && find . -path ./.git -prune -o -path ./var -prune -o -type f -print0 | sed -z 's|^\./||')
  fi
}
list_sources |
  while IFS= read -r -d '' f; do
    for p in "${skip[@]}"; do [[ "$f" == "$p"* ]] && continue 2; done
    if [ -e "$repo/$f" ]; then printf '%s\0' "$f"; fi   # tracked but deleted here: skipped
  done |
  tar -C "$repo" --null -T - -cf - | tar -C "$src" -xf -
cp -r "$repo/packaging/debian" "$src/debian"

rm -f "$out"/*.deb "$out"/*.ddeb "$out"/*.changes "$out"/*.buildinfo
# -b: binary packages only; -us -uc: unsigned. DEB_BUILD_OPTIONS=parallel=2 (at most two cores,
# shared machine; override with DEB_BUILD_OPTIONS).
(cd "$src" && DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-parallel=2}" \
   dpkg-buildpackage -us -uc -b) > "$out/build.log" 2>&1 || {
  tail -40 "$out/build.log" >&2
  echo "package: dpkg-buildpackage failed, full log in $out/build.log" >&2
  exit 1
}

changes=$(ls "$out/src"/paygate_"$version"_*.changes)
mv "$out"/src/*.deb "$out"/src/*.ddeb "$out"/src/*.changes "$out"/src/*.buildinfo "$out"/ 2>/dev/null || true
changes="$out/$(basename "$changes")"

# Errors fail the build; warnings are printed (docs/install.md lists the ones we keep and why).
echo "package: lintian $(basename "$changes")"
lintian --fail-on error "$changes" | tee "$out/lintian.log"

ls -1 "$out"/*.deb
