# The two commands of the dev stack contract (see README.md):
#   make run   - install, build (RelWithDebInfo, in $(RUN_BUILD_DIR)), start the whole stack on
#                127.0.0.1:$(PAYGATE_PORT), foreground
#   make test  - install, build (Debug, ASan+UBSan), run every test with ctest
#   make fuzz  - build the libFuzzer harnesses with clang, run each for $(FUZZ_SECONDS) s
#   make package - the Debian packages (.deb) in $(PACKAGE_DIR), checked by lintian
BUILD_DIR    ?= build
BUILD_TYPE   ?= Debug
PAYGATE_PORT ?= 8080
JOBS         ?= $(shell nproc)
# make run serves an optimized build without sanitizers (the ASan build is for make test: its
# nginx workers would report nginx's own start-up allocations as leaks on every reload).
RUN_BUILD_DIR  ?= build-run
RUN_BUILD_TYPE ?= RelWithDebInfo
FUZZ_SECONDS ?= 60
FUZZ_BUILD_DIR ?= build-fuzz
FUZZ_TARGETS ?=
PACKAGE_DIR  ?= build-package

.PHONY: all deps build test run fuzz bench package clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# Each harness for FUZZ_SECONDS (FUZZ_TARGETS="json routes" for some), then the JSON differential
# check; fails on any crash, leak, timeout or out-of-memory (docs/testing.md, "Fuzzing").
fuzz: deps
	bash tests/fuzz/fuzz.sh all $(FUZZ_BUILD_DIR) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# libnginx-mod-http-paygate and paygated, built by dpkg-buildpackage from a copy of the tree
# (scripts/package.sh; docs/install.md).
package: deps
	bash scripts/package.sh $(PACKAGE_DIR)

run: deps
	cmake -S . -B $(RUN_BUILD_DIR) -DCMAKE_BUILD_TYPE=$(RUN_BUILD_TYPE) -DPAYGATE_BUILD_TESTS=OFF
	cmake --build $(RUN_BUILD_DIR) -j $(JOBS)
	PAYGATE_PORT=$(PAYGATE_PORT) python3 scripts/stack.py run --build-dir $(RUN_BUILD_DIR) --var-dir var

# Each prints our figure beside its nginx/pgbench anchor; the last line of each is its ratio.
bench:
	bash bench/forward.sh
	bash bench/payments.sh
	bash bench/providers.sh
	bash bench/replay.sh
	bash bench/rolling_restart.sh
	bash bench/reads.sh
	bash bench/tokens.sh

clean:
	rm -rf $(BUILD_DIR) $(RUN_BUILD_DIR) $(FUZZ_BUILD_DIR) $(PACKAGE_DIR)
