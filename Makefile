# The two commands of the README:  `make run` (the main job)  and  `make test` (the test suite).
# Both create .venv from requirements.lock when it is missing or stale.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# Data-backed tests and the main job read $OPTIML_DATA_DIR; default: the data folder beside the repo.
OPTIML_DATA_DIR ?= $(abspath ../shared/data)
export OPTIML_DATA_DIR
RUN_DIR ?= runs/quickstart
RUN_ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test lint venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.lock setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

run: venv
	$(PY) -m optiml.main --gin_file=runs/quickstart.gin --gin.MODEL_DIR="'$(RUN_DIR)'" $(RUN_ARGS)

test: venv
	$(PY) -m pytest tests $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info
