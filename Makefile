# The two commands: `make demo` and `make test`. Both create/update .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/demo.yaml

.PHONY: demo stop test lint venv clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The whole pipeline (each stage skipped when current), then the endpoint, a few real HTTP queries.
demo: $(STAMP)
	$(BIN)/serendipity pipeline run --config $(CONFIG)
	$(BIN)/serendipity serve start --config $(CONFIG)
	$(BIN)/serendipity serve query --config $(CONFIG)
	@$(BIN)/serendipity explore address --config $(CONFIG)
	@echo "The endpoint keeps running; stop it with: $(BIN)/serendipity serve stop --config $(CONFIG)"

stop:
	$(BIN)/serendipity serve stop --config $(CONFIG)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -ra

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf data .pytest_cache .ruff_cache
