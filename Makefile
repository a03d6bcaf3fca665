# Fresh-machine entry points. `make demo` and `make test` are the README's two commands.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export ANNOTATOR_CACHE_DIR ?= $(CURDIR)/.cache/annotator
export ANNY_CACHE_DIR ?= $(ANNOTATOR_CACHE_DIR)/anny

.PHONY: install demo test test-fast clean

$(BIN)/annotator: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch/torchvision first, from the pinned releases (local disk in this workplace)
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/annotator

install: $(BIN)/annotator

demo: install
	$(BIN)/python -m annotator.run jobs/demo.yaml

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) .cache runs
