# The fuzzers as ctest tests (label fuzz), included from tests/CMakeLists.txt. The harnesses are a
# clang project of their own (tests/fuzz/CMakeLists.txt): fuzz.build configures and builds it in
# <build>/fuzz, then each harness runs PAYGATE_FUZZ_TEST_SECONDS over its checked-in corpus, and
# the JSON reader is compared with Python's json over the corpus and what that run found.
# `make fuzz` is the long run (FUZZ_SECONDS each, default 60).
set(PAYGATE_FUZZ_TEST_SECONDS 5 CACHE STRING "seconds each fuzzer runs under ctest")
set(PAYGATE_FUZZ_DIR ${CMAKE_BINARY_DIR}/fuzz)
set(PAYGATE_FUZZ_SH ${CMAKE_CURRENT_LIST_DIR}/fuzz.sh)

add_test(NAME fuzz.build COMMAND bash ${PAYGATE_FUZZ_SH} build ${PAYGATE_FUZZ_DIR})
# It compiles with -j2: both cores, like an e2e file.
set_tests_properties(fuzz.build PROPERTIES LABELS fuzz TIMEOUT 900 PROCESSORS 2 FIXTURES_SETUP fuzz_tree)

foreach(h json money ipc_decode ipc_encode routes idempotency webhook capability payment_body jwt zooticket_body whitebird)
  add_test(NAME fuzz.${h} COMMAND bash ${PAYGATE_FUZZ_SH} run ${PAYGATE_FUZZ_DIR} ${PAYGATE_FUZZ_TEST_SECONDS} ${h})
  set_tests_properties(fuzz.${h} PROPERTIES LABELS fuzz TIMEOUT 300 FIXTURES_REQUIRED fuzz_tree)
endforeach()
# The differential check reads what the json and idempotency runs found.
set_tests_properties(fuzz.json fuzz.idempotency PROPERTIES FIXTURES_SETUP fuzz_json_inputs)

add_test(NAME fuzz.json_differential COMMAND bash ${PAYGATE_FUZZ_SH} differential ${PAYGATE_FUZZ_DIR})
set_tests_properties(fuzz.json_differential PROPERTIES
  LABELS fuzz TIMEOUT 300 FIXTURES_REQUIRED "fuzz_tree;fuzz_json_inputs"
  ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
