# `make test`: create .venv if there is none, install the package with its test and notebook extras
# (pinned by constraints.txt), run the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: venv test bench clean

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test,notebooks]'
	touch $(INSTALLED)

venv: $(INSTALLED)

test: $(INSTALLED)
	$(PY) -m pytest -q tests

bench: $(INSTALLED)
	$(PY) benchmarks/latency.py

clean:
	rm -rf $(VENV) .pytest_cache
