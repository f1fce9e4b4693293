# `make test` and `make sweep` set up .venv when needed (idempotent), then run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PIP := $(PY) -m pip install --quiet --disable-pip-version-check --no-compile

.PHONY: setup test test-fast sweep clean

setup: $(STAMP)

# The trackers extra (mlflow-skinny, wandb) is installed for the tests that read real MLflow and W&B offline runs.
# torch comes first, pinned: these wheels are on this machine's disk; an unpinned torch would pull CUDA builds.
# Bytecode is saved as Python compiles it, whatever the environment says: where PYTHONDONTWRITEBYTECODE is set
# (here, and by its timings in CI), Python never saves what it compiles on import, and every process of every sweep
# and trial would compile torch, Lightning and Ray again (their imports take 18 s instead of 7 s on 2 CPUs). So
# make's commands run without it: the first process to import a module saves its bytecode in .venv, and only the
# modules something imports are compiled (compiling all of .venv/lib after pip, as before, took 39 s of setup).
unexport PYTHONDONTWRITEBYTECODE

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.14.1 torchvision==0.29.1 2>&1 | grep -v "^WARNING: Location" || true
	$(PIP) -e '.[test,trackers]' 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import torchmate_ray.lightning, ray"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

sweep: $(STAMP)
	$(VENV)/bin/torchmate-tune search_spaces/lenet.py

clean:
	rm -rf $(VENV) lightning_logs data *.egg-info
