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

# Two lanes on 2 CPUs, then one test file alone. The sweeps on clusters of their own (`ray up` machines in
# namespaces, the fake autoscaler, a worker node that is lost) wait on their nodes most of the time, so they run
# beside the rest of the suite, with the resume tests to even the lanes (4:54 and 10:23 without them, on 2 CPUs);
# the two-worker trials run last, with nothing beside them (two multi-worker Train runs at once, in two Rays, hung
# on 2 CPUs). Every lane prints its slowest tests; `make test` fails if one fails.
BESIDE_TESTS := tests/test_ray_up.py tests/test_autoscale.py tests/test_multinode.py tests/test_resume.py
ALONE_TESTS := tests/test_distributed.py

test: $(STAMP)
	@lane=$$(mktemp); \
	$(PY) -m pytest -q $(BESIDE_TESTS) >$$lane 2>&1 & beside=$$!; \
	$(PY) -m pytest -q $(addprefix --ignore=,$(BESIDE_TESTS) $(ALONE_TESTS)); rest=$$?; \
	wait $$beside; besides=$$?; echo "--- the lane beside: $(BESIDE_TESTS)"; cat $$lane; rm -f $$lane; \
	echo "--- then alone: $(ALONE_TESTS)"; $(PY) -m pytest -q $(ALONE_TESTS); alone=$$?; \
	test $$rest = 0 && test $$besides = 0 && test $$alone = 0

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

sweep: $(STAMP)
	$(VENV)/bin/torchmate-tune search_spaces/lenet.py

clean:
	rm -rf $(VENV) lightning_logs data *.egg-info
