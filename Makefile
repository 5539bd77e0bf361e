# Two commands do all set-up on a fresh machine (see README):
#   make demo   -> .venv with pinned deps, embedded synthetic dataset, compare.py, HTML report
#   make test   -> .venv with pinned deps, pytest
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test bench clean-demo kernels

venv: $(STAMP)

# Reinstalled whenever requirements.txt or pyproject.toml (packages, console script) changes.
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -c "import cellcompare, torch, torchvision, cp_measure, xgboost, sklearn, skimage; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
	$(MAKE) kernels
	touch $(STAMP)

# compile and cache the numba feature kernels now, not on a user's first site (~25 s)
kernels:
	$(PY) -m cellcompare.features.warmup

demo: $(STAMP)
	$(PY) compare.py

test: $(STAMP)
	$(PY) -m pytest

clean-demo:
	rm -rf demo_data results
