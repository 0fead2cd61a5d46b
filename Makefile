# `make demo` and `make test` do all set-up on a fresh machine: they create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# torch is pinned to the release served from local disk; installing it first keeps resolvers from pulling another.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: install test demo bench lint clean browser gpu-check gpu-wheels

# Offline (a machine no registry reaches, such as a lent GPU machine: docs/GPU.md): WHEELS=DIR installs from the wheels
# in DIR (`make gpu-wheels`) over the packages of the Python that makes the venv, its own torch included (no pin), and
# without the test and Ray extras. The stamp records how long the install took (gpu-check reports it).
ifdef WHEELS
# Without ensurepip (Debian's python3 lacks it unless python3-venv is installed) the venv runs the maker's pip.
MAKE_VENV := $(PYTHON) -m venv --system-site-packages $(VENV) || $(PYTHON) -m venv --system-site-packages --without-pip $(VENV)
PIP_SOURCE := --no-index --find-links $(WHEELS)
INSTALL_PINS :=
EXTRAS :=
else
MAKE_VENV := $(PYTHON) -m venv $(VENV)
INSTALL_PINS := $(TORCH_PINS)
EXTRAS := [test,ray]
endif
# A venv made by a Python that is itself a venv (such an image's python3) sees only the base interpreter's packages:
# this .pth adds the maker's site-packages after the venv's own.
BASE_SITE_PTH := $(PYTHON) -c "import site; print('import site; ' + '; '.join(f'site.addsitedir({p!r})' for p in site.getsitepackages()))"

install: $(STAMP)

$(STAMP): pyproject.toml
	@mkdir -p $(VENV) && date +%s > $(VENV)/.install-started
	test -x $(BIN)/python || { $(MAKE_VENV); }
	$(if $(WHEELS),$(BASE_SITE_PTH) > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/_base_site.pth",$(BIN)/python -m pip install -q --upgrade pip)
	$(if $(INSTALL_PINS),$(BIN)/python -m pip install -q $(INSTALL_PINS))
	$(BIN)/python -m pip install -q $(PIP_SOURCE) -e '.$(EXTRAS)' $(INSTALL_PINS)
	@echo "seconds=$$(( $$(date +%s) - $$(cat $(VENV)/.install-started) )) finished=$$(date -u +%FT%TZ)" > $(STAMP)

# One pytest worker per core, at most 4 (pytest-xdist): many tests wait on a subprocess's start, a Ray start or a kill,
# which the other worker fills (2-core Zen 3: 582 tests in 8.8 min, docs/BENCHMARKS.md). Tests share no files;
# worksteal evens out the few long ones (Ray, kills).
TEST_WORKERS := $(shell n=$$(nproc 2>/dev/null || echo 1); [ $$n -gt 4 ] && n=4; echo $$n)
test: $(STAMP) browser
	$(BIN)/ruff check nin judge runners reports tests bench
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

# What works on a GPU and how fast, in one call (docs/GPU.md): OUT/gpu-check.json and OUT/gpu-check.txt. A rerun with
# the same OUT skips the steps that passed. The CPU dry run: make gpu-check OUT=DIR GPU_CHECK_ARGS="--device cpu --tiny"
# (python -m runners: this checkout's code even where the venv's editable install points at another one)
GPU_CHECK_ARGS ?=
ifneq ($(filter gpu-check,$(MAKECMDGOALS)),)
ifndef OUT
$(error make gpu-check: OUT is required: make gpu-check OUT=DIR, a folder for gpu-check.json and gpu-check.txt)
endif
endif
gpu-check: $(STAMP)
	$(BIN)/python -m runners gpu-check --out $(OUT) $(GPU_CHECK_ARGS)

# The wheels an offline install on the lent GPU machine needs (docs/GPU.md): what pyproject.toml requires beyond that
# machine's image (Python 3.12 with torch and the scientific stack), for CPython 3.12 on x86-64, into .whl/ (ignored;
# carried with the call). fvcore and iopath are sdists on PyPI: built here (pure Python). numpy and pillow are left
# out: the image has them, and they are over half the size. About 30 MB (the call carries at most 64 MiB).
GPU_WHEELS_PLATFORMS := $(foreach p,manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64,--platform $(p))
gpu-wheels:
	rm -rf .whl && mkdir -p .whl
	$(PYTHON) -m pip wheel -q --no-deps -w .whl fvcore iopath
	$(PYTHON) -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp $(GPU_WHEELS_PLATFORMS) \
	  --find-links .whl -d .whl setuptools pydantic fvcore wandb
	$(PYTHON) -m pip download -q --no-deps --only-binary=:all: -d .whl 'timm>=1.0'  # in case the image's is older
	rm -f .whl/numpy-*.whl .whl/pillow-*.whl
	du -sh .whl

lint: $(STAMP)
	$(BIN)/ruff check nin judge runners reports tests bench

clean:
	rm -rf runs .pytest_cache

# The README's picture: the verdicts section of the quick grid's report (make demo first) in headless chromium, as
# docs/img/verdicts.png, and its caption (CPU, precision, commit) in README.md. Another report: REPORT=path/report.html
REPORT ?= runs/quick/report/report.html
.PHONY: screenshot
screenshot: $(STAMP)
	$(BIN)/python -m reports.screenshot $(REPORT) --png docs/img/verdicts.png --readme README.md
