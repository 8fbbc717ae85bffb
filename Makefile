# One way to run everything. `make demo` and `make test` are the README's two commands.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test lint serve install

$(BIN)/helpline: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/helpline

install: $(BIN)/helpline

demo: install  ## install, set up ./var and serve the demo on http://127.0.0.1:8000
	$(BIN)/helpline demo

serve: install
	$(BIN)/helpline serve

test: install  ## the whole test suite (PostgreSQL/Redis tests need HELPLINE_TEST_* set)
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check helpline tests
	$(BIN)/ruff format --check helpline tests
	$(BIN)/mypy
