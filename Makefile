# Atomflow: the two commands a new user needs are `make demo` and `make test`.
#
#   make          build build/atomflow (Release with debug info)
#   make setup    install missing Debian packages (idempotent, quiet when all is there)
#   make demo     setup, Release build, run the ML pipeline on real data
#   make test     setup, build, the whole test suite (unit + integration)
#   make bench    build and run the benchmarks
#   make format   clang-format the sources in place
#   make lint     clang-format check and the line-length rule

BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
PYTHON := /usr/bin/python3

# Debian packages the build, the tests and the example need.
PACKAGES := build-essential cmake ninja-build pkg-config \
  libyaml-cpp-dev nlohmann-json3-dev libsqlite3-dev libcurl4-openssl-dev \
  libspdlog-dev libfmt-dev libcli11-dev libgtest-dev libgmock-dev libjemalloc-dev \
  libbenchmark-dev libre2-dev libcpp-httplib-dev libssl-dev libpq-dev postgresql \
  libhowardhinnant-date-dev tzdata python3 python3-sklearn python3-pandas sqlite3

# What only `make bench` needs: Lua for the interpreter's baseline, gnuplot for the plot, perf
# and valgrind for profiles (docs/performance.md).
BENCH_PACKAGES := liblua5.4-dev gnuplot-nox linux-perf valgrind

.PHONY: all build setup demo test bench format lint clean

all: build

setup:
	@missing=""; \
	for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" \
	    || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)

demo: setup
	cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DATOMFLOW_TESTS=OFF >/dev/null
	cmake --build build-release -j $(JOBS) --target atomflow
	$(PYTHON) examples/ml-pipeline/run_demo.py --atomflow build-release/atomflow

test: setup build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 600

bench:
	@$(MAKE) --no-print-directory setup PACKAGES="$(PACKAGES) $(BENCH_PACKAGES)"
	cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DATOMFLOW_BENCH=ON \
	  -DATOMFLOW_TESTS=OFF >/dev/null
	cmake --build build-bench -j $(JOBS)
	$(PYTHON) bench/run.py --build build-bench

format:
	find src tests bench -name '*.cc' -o -name '*.h' | xargs clang-format -i

lint:
	find src tests -name '*.cc' -o -name '*.h' | xargs clang-format --dry-run --Werror
	@! grep -nE '.{101,}' $$(find src tests -name '*.cc' -o -name '*.h') || \
	  (echo "lines over 100 columns" && false)

clean:
	rm -rf $(BUILD_DIR) build-release build-bench
