# Two commands (see README.md):  make demo   and   make test   (CI also runs make test-slow
# and make notebooks)
# Both create the virtual environment and prepare the data they need first.
PYTHON ?= python3
VENV ?= .venv
RAW_DIR ?= ../shared/data
BIN := $(VENV)/bin
# Offline: prepare from the raw files in $(RAW_DIR) if they are there; else tfds downloads.
raw_arg = $(if $(wildcard $(RAW_DIR)/$(1)),--raw-dir $(RAW_DIR)/$(1),)

.PHONY: setup data demo test test-slow notebooks docs test-docs lint

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv
	$(BIN)/uv pip install -q --python $(BIN)/python -c constraints.txt -e ".[dev,prepare,docs]"
	touch $@

data: data-fashion_mnist data-mnist

data-%: setup
	$(BIN)/lrjax data prepare $* $(call raw_arg,$*)

demo: data-fashion_mnist
	$(BIN)/lrjax train --task fashion_mlp --updates 30 --num-envs 8 --eval-episodes 0 \
		--out runs/demo
	$(BIN)/lrjax evaluate --controller demo=runs/demo/controller --controller fashion_mlp_ppo \
		--task fashion_mlp --tune-seeds 4 --seeds 10 --out runs/demo/evaluation
	$(BIN)/lrjax fit --task fashion_cnn --controller mlp_family_adam --optimizer adam \
		--steps 1000 --eval-every 250

test: data
	$(BIN)/python -m pytest -q -n 2

# Tests that take minutes (multi-process runs, dataset preparation); CI runs them too.
test-slow: data
	$(BIN)/python -m pytest -q -m slow

notebooks: data
	$(BIN)/python notebooks/run_notebooks.py

# The documentation site, offline, warnings as errors: docs/_build/html/index.html.
docs: setup
	rm -rf docs/_build
	$(BIN)/sphinx-build -W --keep-going -q -b html docs docs/_build/html

# The built site in headless Chromium (needs make docs and Debian's chromium; .ci/run has both).
test-docs: setup
	$(BIN)/python -m pytest -q -m docs -p no:cacheprovider

lint: setup
	$(BIN)/ruff check lrjax tests benchmarks notebooks docs
