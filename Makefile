# Every target sets itself up: a fresh clone needs only python3 and make.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SOURCES := src tests benchmarks

.PHONY: install demo test lint typecheck unit bench bench-audit clean

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,gateway,redis]'
	touch $(STAMP)

install: $(STAMP)

## Run the protected sample service on 127.0.0.1:8000 (Ctrl-C stops it).
demo: $(STAMP)
	$(VENV)/bin/secmw demo

## The whole suite: lint, format check, strict types, tests with coverage.
test: $(STAMP)
	bash scripts/ensure-redis.sh
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/ruff format --check $(SOURCES)
	$(VENV)/bin/mypy
	$(PY) -m coverage run -m pytest
	$(PY) -m coverage report

unit: $(STAMP)
	$(PY) -m pytest tests/unit

## Per-request overhead of the pipeline against the bare app.
bench: $(STAMP)
	$(PY) benchmarks/bench_pipeline.py

bench-audit: $(STAMP)
	$(PY) benchmarks/bench_audit.py

clean:
	rm -rf $(VENV) .coverage build dist src/*.egg-info
