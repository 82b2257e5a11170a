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

.PHONY: demo test lint venv clean-venv

$(BIN)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e '.[dev]'
	test -n '$(REFERENCE_SPEC)' || { echo "no reference = [...] line in pyproject.toml"; exit 1; }
	$(BIN)/python -m pip install -q --no-deps '$(REFERENCE_SPEC)'
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
