# esc50kit: the two commands of the README.
#   make run    set up, fetch and verify the data, run the notebook chain (reports/)
#   make test   set up, run the test suite
# Both are idempotent: the environment (.venv) and verified data are reused.
#
# Variables (make run DATA=../shared/data/ESC-10 PROFILE=quick):
#   DATA     a local ESC-50 zip or extracted tree to use instead of downloading
#   PROFILE  quick (minutes on a laptop CPU) or full (all folds, meant for a GPU)
#   OUT      where the executed notebooks and their HTML go
#   PYTHON   the interpreter that creates the environment

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
DATA    ?=
DEST    ?= data
PROFILE ?= quick
OUT     ?= reports/latest
PYTEST_ARGS ?=

.PHONY: run test env data reports clean-artifacts

env: $(VENV)/.installed

# Re-installs only when the dependency lists change.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
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

# The example reports committed under reports/esc10-quick (see README).
reports: env
	$(MAKE) run DATA=$(or $(DATA),../shared/data/ESC-10) DEST=data/esc10 PROFILE=quick OUT=reports/esc10-quick

clean-artifacts:
	rm -rf artifacts
