#!/usr/bin/env bash
# Fails if a Release build of paygated would contain the test-only fault switch
# (PAYGATED_TEST_FAULT, docs/daemon.md): it must be compiled into test (Debug) builds only.
#
#   check_release_hooks.sh SOURCE_DIR PROBE_DIR DEBUG_BUILD_DIR
#
# PROBE_DIR is a Release tree of the daemon alone (PAYGATE_DAEMON_ONLY: no nginx configure), in
# which only the objects that hold the switch in a test build are compiled, with the exact flags
# and definitions CMake gives Release. Checked: (1) Release defines no PAYGATED_TEST_HOOKS while
# the Debug tree does; (2) the Release objects hold none of the switch's strings while the Debug
# tree's objects do (so the search itself is known to work).
set -euo pipefail
src=$1 probe=$2 debug=$3

fail() { echo "FAIL: $*" >&2; exit 1; }

if [ ! -f "$probe/CMakeCache.txt" ]; then
  cmake -S "$src" -B "$probe" -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release -DPAYGATE_DAEMON_ONLY=ON >/dev/null
fi
# Regenerates the probe's flags when a CMakeLists.txt changed since it was configured.
make -s -C "$probe" cmake_check_build_system >/dev/null

# source file (under daemon/) -> the target that compiles it
declare -A target_of=(
  [src/paygated_main.cpp]=paygated
  [src/config.cpp]=paygated_core
  [src/broker.cpp]=paygated_core
  [src/idempotent.cpp]=paygated_core
)

# (1) compile definitions
for t in paygated_core paygated; do
  grep -q PAYGATED_TEST_HOOKS "$debug/daemon/CMakeFiles/$t.dir/flags.make" \
    || fail "the Debug tree does not define PAYGATED_TEST_HOOKS for $t (the fault tests need it)"
  if grep -q PAYGATED_TEST_HOOKS "$probe/daemon/CMakeFiles/$t.dir/flags.make"; then
    fail "a Release build defines PAYGATED_TEST_HOOKS for $t: $(grep DEFINES "$probe/daemon/CMakeFiles/$t.dir/flags.make")"
  fi
done

# (2) the strings of the switch, in the objects
patterns='PAYGATED_TEST_FAULT|kill-after-commit|stop-before-commit|test_fault'
for f in "${!target_of[@]}"; do
  t=${target_of[$f]}
  make -s -C "$probe/daemon" "$f.o" >/dev/null
  obj="$probe/daemon/CMakeFiles/$t.dir/$f.o"
  [ -f "$obj" ] || fail "no object $obj"
  text=$(strings -a "$obj")
  if found=$(grep -E "$patterns" <<<"$text"); then
    fail "the Release object of daemon/$f holds the test fault switch: $(echo "$found" | head -3 | tr '\n' ' ')"
  fi
  echo "ok: daemon/$f (Release) has no trace of the fault switch"
done
# The search finds the switch where it must be: in the Debug tree's objects. (The strings are
# read whole first: `strings | grep -q` would fail under pipefail when grep stops early.)
has() { local text; text=$(strings -a "$1"); grep -q -- "$2" <<<"$text"; }
has "$debug/daemon/CMakeFiles/paygated.dir/src/paygated_main.cpp.o" PAYGATED_TEST_FAULT \
  || fail "the search does not find PAYGATED_TEST_FAULT in the Debug build's paygated_main.cpp.o"
has "$debug/daemon/CMakeFiles/paygated_core.dir/src/idempotent.cpp.o" test_fault_kill \
  || fail "the search does not find test_fault_kill in the Debug build's idempotent.cpp.o"
echo "1 passed, 0 failed"
