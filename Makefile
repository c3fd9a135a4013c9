# Two entry points on a fresh machine: `make demo` and `make test`. Both create .venv if missing
# and install the pinned set (requirements.txt) in one pip command, torch included.
# Bring your own CUDA torch: `make demo TORCH=system` reuses the interpreter's torch and skips the pins.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= pinned
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(TORCH)
DEMO_DATA ?= data/synthetic
PYTEST_ARGS ?=

ifeq ($(TORCH),system)
VENV_FLAGS := --system-site-packages
REQS_CMD   := grep -vE '^(torch|torchvision)==' requirements.txt
else
VENV_FLAGS :=
REQS_CMD   := cat requirements.txt
endif

.PHONY: demo test lint setup clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(REQS_CMD) > $(VENV)/requirements.effective.txt
	$(BIN)/python -m pip install --disable-pip-version-check -q -r $(VENV)/requirements.effective.txt -e .
	touch $@

$(DEMO_DATA)/.complete: | $(STAMP)
	$(BIN)/cloudseg synth $(DEMO_DATA) --train-scenes 6 --test-scenes 2 --scene-size 1100 1100 --seed 0
	touch $@

# The main job on the embedded default: synthetic data, SQLite (sweeps.db), CPU. Rerunning adds
# no trials: --trials is the study-wide target.
demo: $(STAMP) $(DEMO_DATA)/.complete
	$(BIN)/sweep run --study demo --trials 20 --data $(DEMO_DATA)
	$(BIN)/sweep best --export

# The style the code is held to: ruff (pyflakes, pycodestyle, docstrings, annotations, ...) over
# everything, mypy over cloudseg and sweep (pyproject.toml configures both).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

# Two at a time (pytest-xdist) for the tests that only compute; then, alone, those that run
# studies with workers, heartbeats, servers or SLURM (tests/conftest.py SERIAL), whose grace
# periods and deadlines must not share the two cores.
test: lint
	$(BIN)/python -m pytest -n 2 -m "not serial" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m serial $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) data/synthetic exports artifacts sweeps.db* .pytest_cache .mypy_cache
