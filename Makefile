# kvault: the two commands are `make serve` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := build

BUILD_DIR ?= build
ASAN_DIR ?= build-asan
TSAN_DIR ?= build-tsan
FUZZ_DIR ?= build-fuzz
# Seconds each libFuzzer target runs in `make fuzz`.
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := request_fuzz snapshot_fuzz record_log_fuzz config_fuzz disk_block_fuzz journal_fuzz
JOBS ?= $(shell nproc)
PORT ?= 8200
HOST ?= 127.0.0.1
# Default model for `make serve`: generated once unless KVAULT_MODEL names another file.
PRESET ?= q05
DEFAULT_MODEL := models/default.gguf
MODEL ?= $(if $(KVAULT_MODEL),$(KVAULT_MODEL),$(DEFAULT_MODEL))
BENCH_MODEL ?= models/q05.gguf

LAUNCHER := $(if $(shell command -v ccache 2>/dev/null),-DCMAKE_CXX_COMPILER_LAUNCHER=ccache,)
CMAKE_FLAGS = -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ $(LAUNCHER) \
	$$(sed 's/^/-D/' $(BUILD_DIR)/llama.env)
SOURCES := $(shell git ls-files '*.cc' '*.h' 2>/dev/null)

.PHONY: build test test-sanitize test-tsan fuzz serve cluster bench llama-tools bootstrap format check-format clean

bootstrap:
	@scripts/bootstrap.sh

build: bootstrap
	@cmake -S . -B $(BUILD_DIR) $(CMAKE_FLAGS) -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build $(BUILD_DIR) -j $(JOBS)

# llama-tools: llama-server is the real upstream of tests/integration/upstream_test.cc.
test: build llama-tools check-format
	@cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

# kvault's own code with AddressSanitizer + UBSan (llama.cpp stays uninstrumented); unit and
# integration tests (the kvault binary they start is instrumented too).
test-sanitize: bootstrap
	@cmake -S . -B $(ASAN_DIR) $(CMAKE_FLAGS) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DKVAULT_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_DIR) -j $(JOBS)
	@cd $(ASAN_DIR) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j $(JOBS) -L 'unit|integration'

# kvault's own code with ThreadSanitizer (llama.cpp and httplib stay uninstrumented; their
# known false positives are in tests/tsan.supp); unit and integration tests.
test-tsan: bootstrap
	@cmake -S . -B $(TSAN_DIR) $(CMAKE_FLAGS) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DKVAULT_TSAN=ON >/dev/null
	@cmake --build $(TSAN_DIR) -j $(JOBS)
	@cd $(TSAN_DIR) && TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 \
		suppressions=$(CURDIR)/tests/tsan.supp" ctest --output-on-failure -j $(JOBS) -L 'unit|integration'

# libFuzzer (+ ASan + UBSan) on the request parsers, the snapshot parser and block decoder,
# the record log reader, `kvault serve`'s config file, flags and environment, the disk tier's
# block file reader and the journal replay, FUZZ_SECONDS each, from the seeds in fuzz/corpus/
# (new inputs go to $(FUZZ_DIR)/corpus/, crashes to $(FUZZ_DIR)/crash-*).
fuzz: bootstrap
	@cmake -S . -B $(FUZZ_DIR) $(CMAKE_FLAGS) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVAULT_FUZZ=ON >/dev/null
	@cmake --build $(FUZZ_DIR) -j $(JOBS) --target $(FUZZ_TARGETS)
	@set -e; for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_DIR)/corpus/$$t fuzz/corpus/$$t; \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
		$(FUZZ_DIR)/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=$(FUZZ_DIR)/ $(FUZZ_DIR)/corpus/$$t fuzz/corpus/$$t 2>&1 | \
			grep -E "^(stat::number_of_executed_units|stat::peak_rss_mb|==.*ERROR|SUMMARY)"; \
		test $${PIPESTATUS[0]} -eq 0; \
	done

check-format:
	@clang-format --dry-run -Werror $(SOURCES)

format:
	@clang-format -i $(SOURCES)

$(DEFAULT_MODEL): | build
	@mkdir -p $(dir $@)
	@$(BUILD_DIR)/kvault make-model --preset $(PRESET) -o $@

serve: build $(if $(KVAULT_MODEL),,$(DEFAULT_MODEL))
	@exec $(BUILD_DIR)/kvault serve --model $(MODEL) --host $(HOST) --port $(PORT) $(ARGS)

# Redis, REPLICAS (3) kvault replicas and HAProxy on 127.0.0.1, the router on PORT; Ctrl-C
# stops them all (scripts/cluster.sh, README "Running several replicas").
REPLICAS ?= 3
cluster: build $(if $(KVAULT_MODEL),,$(DEFAULT_MODEL))
	@PORT=$(PORT) REPLICAS=$(REPLICAS) MODEL=$(MODEL) ARGS="$(ARGS)" exec scripts/cluster.sh

llama-tools:
	@scripts/bootstrap.sh --tools

$(BENCH_MODEL): | build
	@mkdir -p $(dir $@)
	@$(BUILD_DIR)/kvault make-model --preset q05 -o $@

# Every benchmark of bench/RESULTS.md (about two hours on 2 cores); `make bench ONLY=resume` for one.
bench: build llama-tools $(BENCH_MODEL)
	@bench/run_all.sh $(ONLY)

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(TSAN_DIR) $(FUZZ_DIR)
