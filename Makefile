# Two commands for a newcomer: `make demo` (a real smoke study) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
# Data root: $STUDY_DATA_ROOT if set, else datasets/ under the storage root (~/.cache/label-noise-study, or
# $STUDY_ROOT), where torchvision downloads MNIST when online. A ../shared/datasets beside the checkout (CI,
# offline machines) is linked there by `setup`, so that every command of the checkout reads what `make demo` read.
SHARED_DATA := $(if $(wildcard ../shared/datasets/MNIST),../shared/datasets,)

.PHONY: setup demo test mutants
setup: $(VENV)/.installed
ifneq ($(SHARED_DATA),)
	@$(PY) -m study.storage $(SHARED_DATA)
endif
$(VENV)/.installed: pyproject.toml constraints.txt scripts/bootstrap.sh
	bash scripts/bootstrap.sh

demo: setup
	$(PY) -m study.launch exp=uniform_mnist preset=smoke

test: setup
	$(PY) -m pytest -q -ra

# Mutation testing of every module of study/, loaders/, analysis/ and rundir/ with its fast tests ->
# bench/results/mutants.json: the modules whose entry is not current (missing, measured on another source, or
# stopped), one after another; run it again to resume (verdicts are kept under .mutants/). Hours on 2 cores:
# `nice make mutants`, or some modules with `make mutants MODULES="study/losses.py"`.
MODULES ?=
mutants: setup $(VENV)/.dev-installed
	$(PY) scripts/mutants.py $(MODULES)
$(VENV)/.dev-installed: pyproject.toml
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@
