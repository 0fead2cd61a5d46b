# `make demo` and `make test` do all set-up on a fresh machine: they create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# torch is pinned to the release served from local disk; installing it first keeps resolvers from pulling another.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install test demo bench lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e '.[test,ray]' $(TORCH_PINS)
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check nin runners reports tests bench
	$(BIN)/python -m pytest -q

# Throughput of the harness against a d2l-style reference loop; pass flags with e.g. BENCH_ARGS="--device cpu --json".
bench: $(STAMP)
	$(BIN)/nin-ablate bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check nin runners reports tests bench

clean:
	rm -rf runs .pytest_cache
