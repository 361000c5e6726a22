#!/usr/bin/env bash
# Installs the Debian 12 packages paygate needs to build, test and run; a no-op when all are present.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  nginx nginx-dev libpcre2-dev zlib1g-dev libssl-dev
  libzmq3-dev cppzmq-dev libjansson-dev libpq-dev libcurl4-openssl-dev libcmocka-dev
  postgresql postgresql-contrib postgresql-client
  python3 python3-cryptography openssl curl wrk
  clang libclang-rt-dev   # the fuzzers: clang++ with libFuzzer's runtime (tests/fuzz)
  debhelper dpkg-dev fakeroot lintian adduser   # make package (scripts/package.sh)
  systemd   # systemd-analyze: the package test reads the unit as systemd does (not in minimal images)
  prometheus   # promtool check metrics: the /metrics test
  python3-yaml python3-jsonschema   # the OpenAPI documents and the e2e response check
  chromium chromium-driver python3-selenium   # the hosted payment page's browser test
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# The postgresql package may create and start a system cluster; paygate never uses it (it runs private ones).
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
