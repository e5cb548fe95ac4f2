# Two commands are the whole set-up: `make bench` and `make test` create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: venv node redis bench bench-quick check test test-unit lint micro micro-baseline overhead clean

# What running the benchmark needs; the tests' and linters' tools come on top (DEV_STAMP), so
# that `make bench` from nothing installs only the former (about 20 s less on this machine).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(DEV_STAMP)

venv: $(DEV_STAMP)

# The Node.js reference servers' packages, from the committed lockfile. Without Node.js and npm
# this prints one line and goes on: wsbench then skips those servers' cells, saying so.
NODE_DIR := servers/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed
$(NODE_STAMP): $(NODE_DIR)/package-lock.json
	@if command -v node >/dev/null && command -v npm >/dev/null; then \
		npm ci --prefix $(NODE_DIR) --no-audit --no-fund --loglevel=error && touch $@; \
	else \
		echo "wsbench: Node.js/npm not found: node-ws and node-socketio will be skipped (apt-get install nodejs npm)"; \
	fi

node: $(NODE_STAMP)

# The default suite's scale-out cells start Debian's redis-server. As root with apt-get, make
# bench installs it when it is missing; otherwise wsbench skips those cells with one line.
redis:
	@command -v redis-server >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
				--no-install-recommends redis-server >/dev/null; \
		else \
			echo "wsbench: redis-server not found: the scale-out cells will be skipped (apt-get install redis-server)"; \
		fi; }

bench: $(STAMP) $(NODE_STAMP) redis
	$(PY) -m bench run --suite default

bench-quick: $(STAMP)
	$(PY) -m bench run --suite quick

# The regression gate: the quick suite with repeats, then `wsbench check` against the committed
# baseline (exit 1 when a check fails). CHECK_ARGS passes options to the run, e.g.
# CHECK_ARGS="--handicap-us 50" to see the gate catch a slowdown (CHECK_ARGS="--handicap-loops
# 20": 3.1% more instructions per message on websockets).
CHECK_OUT ?= results/runs/check-$(shell date -u +%Y%m%dT%H%M%SZ)
CHECK_REPEAT ?= 5
# Then the instruction counts (scenario instructions, under callgrind) against their own
# baseline: counts depend on the CPU's features and the software, not on its speed or load, so
# when results/baseline-instructions was counted on another CPU or software, `wsbench
# local-baseline` first measures the commit that recorded it on this machine (docs/gate.md).
# Skipped in one line without valgrind.
check: $(STAMP)
	$(PY) -m bench run --suite quick --repeat $(CHECK_REPEAT) --out $(CHECK_OUT) $(CHECK_ARGS)
	$(PY) -m bench check $(CHECK_OUT) --baseline results/baseline
	@if command -v valgrind >/dev/null; then \
	  $(PY) -m bench run --scenario instructions --out $(CHECK_OUT)-instructions $(CHECK_ARGS) && \
	  $(PY) -m bench local-baseline results/baseline-instructions --like $(CHECK_OUT)-instructions --out $(CHECK_OUT)-instructions-baseline && \
	  $(PY) -m bench check $(CHECK_OUT)-instructions --baseline $(CHECK_OUT)-instructions-baseline; \
	else echo "make check: instruction counts not checked: valgrind is not installed (apt-get install valgrind)"; fi

test: $(DEV_STAMP) $(NODE_STAMP)
	$(PY) -m pytest

# The unit tier alone: no process started, no network socket opened (tests/unit/conftest.py
# fails a test that tries), in under a minute: its property tests draw Hypothesis's default 100
# examples each where `make test`, which runs the unit tier with everything else, draws 1,000.
test-unit: $(DEV_STAMP)
	WSBENCH_PROPERTY_EXAMPLES=100 $(PY) -m pytest tests/unit

lint: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

# Micro-benchmarks (pytest-benchmark, no network), compared with the saved baseline in
# tests/micro/baseline/: fails when one's median time grew by more than MICRO_FAIL (the median,
# not the minimum: a saved baseline's minimum was once half its own median, 3.47 against
# 6.59 µs, and failed unchanged code whose median was 6.38 µs; docs/gate.md).
# `make micro-baseline` saves a new baseline (commit it with the change that moved it).
MICRO_FAIL ?= median:50%
MICRO_STORAGE := file://tests/micro/baseline
MICRO_ARGS := tests/micro -q --benchmark-enable \
	--benchmark-storage=$(MICRO_STORAGE) --benchmark-min-rounds=20 --benchmark-sort=name
micro: $(DEV_STAMP)
	$(PY) -m pytest $(MICRO_ARGS) --benchmark-compare --benchmark-compare-fail=$(MICRO_FAIL)

micro-baseline: $(DEV_STAMP)
	$(PY) -m pytest $(MICRO_ARGS) --benchmark-save=baseline

overhead: $(STAMP)
	$(PY) -m bench overhead --rounds 5 --duration 10

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
