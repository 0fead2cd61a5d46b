# `make demo` and `make test` do all set-up on a fresh machine: they create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# torch is pinned to the release served from local disk; installing it first keeps resolvers from pulling another.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install test demo bench lint clean browser

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PINS)
	$(BIN)/python -m pip install -q -e '.[test,ray]' $(TORCH_PINS)
	touch $(STAMP)

# One pytest worker per core, at most 4 (pytest-xdist): many tests wait on a subprocess's start, a Ray start or a kill,
# which the other worker fills (2-core Zen 3: 582 tests in 8.8 min, docs/BENCHMARKS.md). Tests share no files;
# worksteal evens out the few long ones (Ray, kills).
TEST_WORKERS := $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
test: $(STAMP) browser
	$(BIN)/ruff check nin runners reports tests bench
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=15  # the slowest tests: keep it short

# The report tests screenshot report.html in a real browser (Debian's chromium) and compile ablation.tex with pdflatex,
# rendering it with pdftoppm; the Slurm tests need slurmctld, slurmd and munged: installed where we may (root + apt).
LATEX_PACKAGES := texlive-latex-base texlive-latex-recommended poppler-utils
# The --executor slurm tests start a real single-node Slurm (tests/reliability/slurm_cluster.py): Debian's 22.05.
SLURM_PACKAGES := slurmctld slurmd munge
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q chromium >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; }; }; } || \
	  echo "chromium could not be installed: the report screenshot test will skip (apt-get install chromium)"
	@{ command -v pdflatex >/dev/null 2>&1 && command -v pdftoppm >/dev/null 2>&1; } || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q --no-install-recommends $(LATEX_PACKAGES) >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && \
	      apt-get install -y -q --no-install-recommends $(LATEX_PACKAGES) >/dev/null 2>&1; }; }; } || \
	  echo "pdflatex could not be installed: the ablation.tex test will skip (apt-get install $(LATEX_PACKAGES))"
	@{ command -v slurmctld >/dev/null 2>&1 && command -v slurmd >/dev/null 2>&1 && command -v munged >/dev/null 2>&1; } || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -q $(SLURM_PACKAGES) >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $(SLURM_PACKAGES) >/dev/null 2>&1; }; }; } || \
	  echo "Slurm could not be installed: the --executor slurm tests will skip (apt-get install $(SLURM_PACKAGES))"

# The embedded quick grid on CPU (scikit-learn's digits: no download), then its report; resumes if interrupted.
# One single-threaded worker per core: the demo's nets are too small to keep two threads busy (docs/BENCHMARKS.md).
DEMO_DEVICES := $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 8 ] && n=8; printf 'cpu%.0s,' $$(seq $$n) | sed 's/,$$//')
demo: $(STAMP)
	$(BIN)/nin-ablate run ablations/quick.yaml --out runs --device $(DEMO_DEVICES) --cpu-threads 1

# Throughput of the harness against a d2l-style reference loop; pass flags with e.g. BENCH_ARGS="--device cpu --json".
bench: $(STAMP)
	$(BIN)/nin-ablate bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check nin runners reports tests bench

clean:
	rm -rf runs .pytest_cache

# The README's picture: the verdicts section of the quick grid's report (make demo first) in headless chromium, as
# docs/img/verdicts.png, and its caption (CPU, precision, commit) in README.md. Another report: REPORT=path/report.html
REPORT ?= runs/quick/report/report.html
.PHONY: screenshot
screenshot: $(STAMP)
	$(BIN)/python -m reports.screenshot $(REPORT) --png docs/img/verdicts.png --readme README.md
