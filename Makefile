# Every target sets itself up: a fresh clone needs only python3 and make.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SOURCES := src tests benchmarks scripts examples

.PHONY: install demo test docs load unit bench bench-anomaly bench-audit bench-auth bench-h2h bench-ratelimit bench-redact bench-throughput clean

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,gateway,redis]'
	touch $(STAMP)

install: $(STAMP)

## Run the protected sample service on 127.0.0.1:8000 (Ctrl-C stops it).
demo: $(STAMP)
	$(VENV)/bin/secmw demo

## The whole suite: lint, format check, strict types, docs (strict), tests with coverage.
test: $(STAMP)
	bash scripts/ensure-redis.sh
	$(VENV)/bin/ruff check $(SOURCES)
	$(VENV)/bin/ruff format --check $(SOURCES)
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict tests/typing/public_api.py tests/typing/config_in_code.py examples/fastapi_service/app.py
	$(PY) scripts/config_reference.py --check
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site
	$(PY) -m coverage run -m pytest
	$(PY) -m coverage report

## Load test: the demo protected and bare under uvicorn, 1,000 connections, 1,000 req/s, 60 s.
load: $(STAMP)
	$(PY) benchmarks/load.py --connections 1000 --rate 1000 --duration 60

## Regenerate the configuration reference and build the docs site into build/site.
docs: $(STAMP)
	$(PY) scripts/config_reference.py
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir build/site

unit: $(STAMP)
	$(PY) -m pytest tests/unit

## Per-request overhead of the pipeline against the bare app.
bench: $(STAMP)
	$(PY) benchmarks/bench_pipeline.py

bench-ratelimit: $(STAMP)
	$(PY) benchmarks/bench_ratelimit.py
bench-auth: $(STAMP)
	$(PY) benchmarks/bench_auth.py
bench-redact: $(STAMP)
	$(PY) benchmarks/bench_redact.py
bench-audit: $(STAMP)
	$(PY) benchmarks/bench_audit.py
## Anomaly detectors and metrics per request (vs prometheus_client), memory per key.
bench-anomaly: $(STAMP)
	$(PY) benchmarks/bench_anomaly.py
## The full chain head to head with the stack a team would assemble (about 75 s).
bench-h2h: $(STAMP)
	$(PY) benchmarks/head_to_head.py
## Requests/s under uvicorn, bare app vs protected, driven by wrk (about 60 s).
bench-throughput: $(STAMP)
	$(PY) benchmarks/throughput.py

clean:
	rm -rf $(VENV) .coverage build dist src/*.egg-info
