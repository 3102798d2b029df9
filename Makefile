# Two entry points: `make demo` (set up, prepare data, train, evaluate, predict) and `make test`.
# Both create the virtual environment from this repo's own files on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The shared data folder beside the checkout (CI and the dev machines), else the download with sha256 check.
SHARED_DATA := $(abspath $(wildcard ../shared/data))
export PIPELINES_DATA ?= $(SHARED_DATA)
DATA_DIR ?= work_data/sunnybrook
ifndef RUN_DIR
RUN_DIR := runs/demo-$(shell date +%Y%m%d-%H%M%S)
endif
DEMO_EPOCHS ?= 15
BUNDLE ?= lv_segmentation_unet

.PHONY: setup data demo test test-slow clean-venv

$(BIN)/pipelines: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# the CPU wheel first, so that nothing below pulls CUDA packages
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

setup: $(BIN)/pipelines

$(DATA_DIR)/datalist.json: | $(BIN)/pipelines
	$(BIN)/pipelines data sunnybrook --output $(DATA_DIR)

data: $(DATA_DIR)/datalist.json

demo: setup data
	$(BIN)/pipelines train $(BUNDLE) --data $(DATA_DIR) --output $(RUN_DIR) --epochs $(DEMO_EPOCHS)
	$(BIN)/pipelines evaluate $(BUNDLE) --data $(DATA_DIR) --checkpoint $(RUN_DIR)/models/model.pt --output $(RUN_DIR)/evaluation
	$(BIN)/pipelines predict $(BUNDLE) --input $(DATA_DIR)/images --checkpoint $(RUN_DIR)/models/model.pt --output $(RUN_DIR)/predictions
	@echo "demo run in $(RUN_DIR); browse it with: $(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath $(RUN_DIR))/mlruns.db"

test: setup
	$(BIN)/python -m pytest

test-slow: setup
	$(BIN)/python -m pytest -m slow
