# Two commands do all set-up on a fresh machine:
#   make demo   # main job: vanilla vs tied model on Python's bundled docs (offline, ~2 min on 2 cores)
#   make test   # ruff + the test suite
# Both create/reuse .venv and install torch==2.13.0 (pinned: an unpinned torch pulls a multi-GB CUDA build).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench notebooks clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(PY) -m pip install --quiet --disable-pip-version-check "torch==2.13.0" -e ".[dev,notebooks]"
	touch $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(VENV)/bin/dyntie demo --out runs/demo

lint: $(STAMP)
	$(VENV)/bin/ruff check dyntie_core widgets tests benchmarks experiments notebooks/*.py notebooks/experiments/*.py

NOTEBOOKS := notebooks/01_walkthrough.ipynb notebooks/results.ipynb notebooks/experiments/lm.ipynb
NBVAL := --nbval --nbval-kernel-name python3 --nbval-sanitize-with notebooks/nbval-sanitize.cfg

# the test suite, then every notebook under nbval (stored outputs compared with a fresh run)
test: lint
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 DYNTIE_HEADLESS=1 $(PY) -m pytest -q tests $(NOTEBOOKS) $(NBVAL)

# notebooks/**/*.py (jupytext percent format) are the sources: this rewrites their paired .ipynb and stores the
# outputs of a fresh headless run in them (what nbval checks)
notebooks: $(STAMP)
	$(VENV)/bin/jupytext --sync notebooks/*.py notebooks/experiments/*.py
	for nb in $(NOTEBOOKS); do HF_HUB_OFFLINE=1 DYNTIE_HEADLESS=1 $(VENV)/bin/jupyter nbconvert --to notebook \
	    --execute --inplace $$nb || exit 1; done

bench: $(STAMP)
	$(PY) benchmarks/bench_train.py

clean:
	rm -rf $(VENV) runs data/cache .pytest_cache
