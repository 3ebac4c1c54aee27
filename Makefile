# esc50kit: the two commands of the README, and the one that opens the notebooks.
#   make run    set up, fetch and verify the data, run the notebook chain (reports/)
#   make test   set up, run the test suite
#   make lab    open the notebooks in JupyterLab (they find the data make run prepared)
# Both are idempotent: the environment (.venv) and verified data are reused.
#
# Variables (make run DATA=../shared/data/ESC-10 PROFILE=quick):
#   DATA     a local ESC-50 zip or extracted tree to use instead of downloading
#   PROFILE  quick (minutes on a laptop CPU), cpu-esc50 (all folds, about 90 minutes on 2 cores)
#            or full (all folds, meant for a GPU)
#   OUT      where the executed notebooks and their HTML go
#   LAB_ARGS extra JupyterLab options (make lab LAB_ARGS="--no-browser --port 8899")
#   PYTHON   the interpreter that creates the environment

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
DATA    ?=
DEST    ?= data
PROFILE ?= quick
OUT     ?= reports/latest
PYTEST_ARGS ?=
LAB_ARGS ?=
# Free disk that a new environment needs: torch with its CUDA libraries fills 6.4 GiB,
# and a fresh clone's whole CI run peaked at 7.9 GiB (measured 2026-11-22).
NEED_GIB ?= 8

.PHONY: run test lab env data reports clean-artifacts

env: $(VENV)/.installed

# Re-installs only when the dependency lists change.
$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -c 'import os, shutil, sys; \
	  where = os.path.dirname(os.path.abspath("$(VENV)")); free = shutil.disk_usage(where).free / 2**30; \
	  free >= $(NEED_GIB) or sys.exit(f"make: only {free:.1f} GiB free on the disk of {where}; creating $(VENV) " \
	  "(torch with its CUDA libraries) needs about $(NEED_GIB) GiB. Free some space, or put the environment " \
	  "on a larger disk: make test VENV=/larger/disk/esc50kit-venv")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,tracking]"
	touch $@

data: env
	$(PY) download_data.py --dest $(DEST) $(if $(DATA),--source $(DATA))

run: env
	@out=$$($(PY) download_data.py --dest $(DEST) $(if $(DATA),--source $(DATA))) || exit 1; \
	  root=$$(printf '%s\n' "$$out" | tail -n 1); \
	  echo "dataset: $$root"; \
	  $(PY) -m esc50kit run --data "$$root" --profile $(PROFILE) --out $(OUT)

test: env
	$(PY) -m pytest $(PYTEST_ARGS)

# JupyterLab from the project's environment (ipywidgets brings its JupyterLab extension).
# With DATA, that dataset is verified (and copied under data/) as make run does, and the
# notebooks' data_dir = "" reads it; without, they take the one dataset under data/.
lab: env
	@if [ -n "$(DATA)" ]; then \
	  out=$$($(PY) download_data.py --dest $(DEST) --source $(DATA)) || exit 1; \
	  export ESC50KIT_DATA="$$(printf '%s\n' "$$out" | tail -n 1)"; \
	  echo "dataset for the notebooks: $$ESC50KIT_DATA"; \
	fi; \
	echo "Opening notebooks/01_EDA.ipynb; then 02, 03 and 04 in order (Run > Run All Cells)."; \
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" \
	  --LabApp.default_url=/lab/tree/notebooks/01_EDA.ipynb $(LAB_ARGS)

# The example reports committed under reports/esc50-quick (see README): the default
# profile on ESC-50 (make reports DATA=path/to/ESC-50-master, or the verified data/).
reports: env
	$(MAKE) run $(if $(DATA),DATA=$(DATA)) DEST=data PROFILE=quick OUT=reports/esc50-quick

clean-artifacts:
	rm -rf artifacts
