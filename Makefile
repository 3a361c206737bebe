# `make test`: create .venv if there is none, install the package with its test and notebook extras
# (pinned by constraints.txt), run the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

PROFILE ?= toy
NGPUS ?= 1

.PHONY: venv test bench reproduce clean

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test,notebooks]'
	touch $(INSTALLED)

venv: $(INSTALLED)

# The notebooks run under nbval in quick mode (HQSAM_QUICK=1: small sizes, files under .quick/), in order.
test: $(INSTALLED)
	$(PY) -m pytest -q tests
	HQSAM_QUICK=1 $(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks

# The README's main command: every notebook in order with papermill (toy profile by default; stages already
# run are skipped, FORCE=1 reruns them). On a GPU machine with internet: make reproduce PROFILE=paper NGPUS=8
# MIRROR=URL downloads from a mirror, MODEL_TYPE=vit_b picks the paper profile's backbone, OUT=DIR puts data,
# checkpoints, runs and results under DIR, ARGS='-p NAME=VALUE ...' passes notebook parameters.
reproduce: $(INSTALLED)
	$(PY) -m hqsam.reproduce --profile $(PROFILE) --ngpus $(NGPUS) $(if $(FORCE),--force,) \
		$(if $(MIRROR),--mirror $(MIRROR),) $(if $(MODEL_TYPE),--model-type $(MODEL_TYPE),) \
		$(if $(OUT),--root $(OUT),) $(if $(DEVICE),--device $(DEVICE),) $(ARGS)

bench: $(INSTALLED)
	$(PY) benchmarks/latency.py

clean:
	rm -rf $(VENV) .pytest_cache
