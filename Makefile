# `make test`: create .venv if there is none, install the package with its test and notebook extras
# (pinned by constraints.txt), run the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

PROFILE ?= toy
NGPUS ?= 1

.PHONY: venv test bench reproduce toy-sam clean

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test,notebooks]'
	touch $(INSTALLED)

venv: $(INSTALLED)

# The notebooks run under nbval in quick mode (HQSAM_QUICK=1: small sizes, files under .quick/), in order; they are
# stored without outputs, so their assert cells are what is checked.
test: $(INSTALLED)
	$(PY) -m pytest -q tests
	HQSAM_QUICK=1 $(PY) -m pytest -q -p no:cacheprovider --nbval-lax notebooks

# The README's main command: every notebook in order with papermill (toy profile by default), as a build: a
# stage runs again only when its notebook, the hqsam code it imports, its parameters or an earlier stage changed
# (digests recorded in runs/<profile>/notebooks/stages.json); FORCE=1 reruns them all. The terminal shows each
# cell as it runs and the latest progress line. UPDATE_README=1 puts the tables of a toy run that ran notebook 05
# in README.md, which is otherwise left alone. ABLATIONS=1 also runs notebook 06: the paper's Tables 3 and 4, each
# variant trained and evaluated (in README.md too with UPDATE_README=1). On a GPU machine with internet: make reproduce PROFILE=paper NGPUS=8
# MIRROR=URL downloads from a mirror, MODEL_TYPE=vit_b picks the paper profile's backbone, OUT=DIR puts data,
# checkpoints, runs and results under DIR, ARGS='-p NAME=VALUE ...' passes notebook parameters.
reproduce: $(INSTALLED)
	$(PY) -m hqsam.reproduce --profile $(PROFILE) --ngpus $(NGPUS) $(if $(FORCE),--force,) \
		$(if $(ABLATIONS),--ablations,) $(if $(UPDATE_README),--update-readme,) \
		$(if $(MIRROR),--mirror $(MIRROR),) $(if $(MODEL_TYPE),--model-type $(MODEL_TYPE),) \
		$(if $(OUT),--root $(OUT),) $(if $(DEVICE),--device $(DEVICE),) $(ARGS)

# The toy SAM the package ships (hqsam/toy/sam_toy.pth, its record sam_toy.json and loss log): the toy world at its
# default sizes, then the toy SAM trained on it from seed 0 (hqsam.toy.release). QUICK=1 checks the command in
# seconds and writes under .quick/ instead.
toy-sam: $(INSTALLED)
	$(PY) -m hqsam.toy.release $(if $(QUICK),--quick,)

bench: $(INSTALLED)
	$(PY) benchmarks/latency.py

clean:
	rm -rf $(VENV) .pytest_cache
