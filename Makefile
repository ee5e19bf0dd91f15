# The two commands: `make demo` and `make test`. Both create/update .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CONFIG ?= configs/demo.yaml

.PHONY: demo stop test lint venv clean lock

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt --upgrade pip
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
	$(BIN)/python -m pytest -q -ra --durations=40

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf data .pytest_cache .ruff_cache

# The locked build: constraints.txt pins every distribution of `pip install -e '.[dev]'` (CPython 3.11, linux
# x86_64, glibc 2.36 as on Debian bookworm and the image), resolved by uv from pyproject.toml and the
# hand-picked pins of constraints.in. `make lock` keeps the current pins that still fit (after editing either
# input); `make lock UPGRADE=--upgrade` moves everything to the newest releases. uv: `pip install uv` (any
# environment but .venv), or UV=/path/to/uv.
UV ?= uv
UPGRADE ?=
LOCK_ARGS := pyproject.toml constraints.in --extra dev --python-version 3.11 \
	--python-platform x86_64-manylinux_2_36 --output-file constraints.txt

lock:
	$(UV) pip compile $(LOCK_ARGS) --no-header --quiet $(UPGRADE)
	{ echo '# The locked build: every distribution that `pip install -c constraints.txt -e ".[dev]"` installs,'; \
	  echo '# for CPython 3.11 on linux x86_64 (glibc 2.36). Generated: do not edit; change pyproject.toml or'; \
	  echo '# constraints.in (the hand-picked pins and their reasons), then regenerate with `make lock`, which runs'; \
	  echo '#   uv pip compile $(LOCK_ARGS)'; \
	  echo "# torch's CUDA dependencies (nvidia-*, cuda-*, triton) are pinned for PyPI's CUDA build of torch;"; \
	  echo '# the CPU wheel (torch 2.13.0+cpu, which satisfies torch==2.13.0) needs none of them.'; \
	  cat constraints.txt; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
