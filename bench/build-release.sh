# Sourced by the bench/*.sh scripts: checks wrk and builds the Release tree (no sanitizers) the
# benchmarks run, in $BUILD_DIR (default build-release/).
BUILD_DIR=${BUILD_DIR:-build-release}
command -v wrk >/dev/null || { echo "bench: wrk is not installed (bash scripts/install-deps.sh)" >&2; exit 1; }
echo "bench: building Release tree in $BUILD_DIR" >&2
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" --target paygated paygatectl ngx_http_paygate_module >/dev/null
