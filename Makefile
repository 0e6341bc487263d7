# The two commands of the README: `make run` and `make test`. Both install what they need.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: run test install bench clean

# The Slack bot when .env has Slack credentials (Socket Mode with an app token, HTTP with a
# signing secret), else the terminal demo.
run: install
	$(BIN)/lorebot run

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/index_bench.py

install: $(VENV)/.installed

# torch first and pinned (2.13.0): an unpinned resolve picks whatever sentence-transformers allows.
# On some indexes 2.13.0 is the CUDA build (several GB, cached by pip after the first time); it
# runs on the CPU all the same.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) .lorebot
