# The two commands of the dev stack contract (see README.md):
#   make run   - install, build, start the whole stack on 127.0.0.1:$(PAYGATE_PORT), foreground
#   make test  - install, build (Debug, ASan+UBSan), run every test with ctest
BUILD_DIR    ?= build
BUILD_TYPE   ?= Debug
PAYGATE_PORT ?= 8080
JOBS         ?= $(shell nproc)

.PHONY: all deps build test run bench clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

run: build
	PAYGATE_PORT=$(PAYGATE_PORT) python3 scripts/stack.py run --build-dir $(BUILD_DIR) --var-dir var

# Each prints our figure beside its nginx/pgbench anchor; the last line of each is its ratio.
bench:
	bash bench/forward.sh
	bash bench/payments.sh
	bash bench/providers.sh
	bash bench/replay.sh
	bash bench/rolling_restart.sh
	bash bench/tokens.sh

clean:
	rm -rf $(BUILD_DIR)
