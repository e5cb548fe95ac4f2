# Two commands are the whole set-up: `make bench` and `make test` create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv bench bench-quick test lint micro overhead clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

venv: $(STAMP)

bench: $(STAMP)
	$(PY) -m bench run --suite default

bench-quick: $(STAMP)
	$(PY) -m bench run --suite quick

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

micro: $(STAMP)
	$(PY) -m pytest tests/unit/load/test_recorder_benchmark.py --benchmark-enable -s -q

overhead: $(STAMP)
	$(PY) -m bench overhead --rounds 5 --duration 10

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
