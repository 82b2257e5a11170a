# Set-up and entry points. Every target creates/uses its own virtual environment in .venv.
# On the CPU-only dev machine, `torch==2.13.0` resolves to the local CPU wheel; elsewhere set
# TORCH_SPEC (e.g. TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124").
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
# imagecorruptions (the tests' reference implementation), as pinned by the `reference` extra in
# pyproject.toml. It is installed with --no-deps: it requires opencv-python, which would land
# next to our opencv-python-headless in the same cv2/ folder; its other requirements are ours.
REFERENCE_SPEC := $(shell sed -n 's/^reference = \["\([^"]*\)"\]$$/\1/p' pyproject.toml)
# The lock: exact versions of every library the venv installs, torch and torch's own
# requirements aside (torch stays the build the machine needs). numpy, OpenCV, SciPy,
# scikit-image, numba, Pillow, ISA-L, pandas and matplotlib reach the corrupted pixels, the logits
# or the committed demo files; `make lock` rewrites it from a venv made without it.
CONSTRAINTS := .ci/constraints.txt
# Not locked: torch and what it requires (a CUDA build elsewhere pins its own), this project.
UNLOCKED := torch|filelock|fsspec|jinja2|markupsafe|mpmath|networkx|setuptools|sympy|typing[-_]extensions

.PHONY: demo test lint venv clean-venv lock

$(BIN)/.installed: pyproject.toml Makefile $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) -e '.[dev]'
	test -n '$(REFERENCE_SPEC)' || { echo "no reference = [...] line in pyproject.toml"; exit 1; }
	$(BIN)/python -m pip install -q -c $(CONSTRAINTS) --no-deps '$(REFERENCE_SPEC)'
	touch $@

venv: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/robustseg demo --out reports/demo

test: $(BIN)/.installed
	$(BIN)/python -m pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean-venv:
	rm -rf $(VENV)

# Re-lock after a change of the ranges in pyproject.toml: a fresh venv without the lock takes the
# newest versions the ranges allow, and their exact versions become the lock. Then `make demo` and
# commit the re-made reports/demo/ with the new lock (their bytes follow the locked versions).
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install -q --upgrade pip
	.venv-lock/bin/python -m pip install -q $(TORCH_SPEC)
	.venv-lock/bin/python -m pip install -q -e '.[dev]'
	.venv-lock/bin/python -m pip install -q --no-deps '$(REFERENCE_SPEC)'
	{ sed -n '/^#/p' $(CONSTRAINTS); .venv-lock/bin/python -m pip freeze --exclude-editable \
	  | grep -viE '^($(UNLOCKED))=='; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .venv-lock
