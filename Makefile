# benchtruth: audit benchmark run folders and rebuild paper tables from real runs.
# `make help` lists the targets.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 4090
EXAMPLE := examples/realruns
EXAMPLE_STAMP := $(EXAMPLE)/runs/orchestrator/20260129_073037
BENCH_LIST ?= $(EXAMPLE_STAMP)/bench_dirs_all.txt
PROJECT_ROOT ?= $(EXAMPLE)
CLAIMED_TABLES ?= $(EXAMPLE_STAMP)/paper_tables
OUT ?= build/example_$(HOST)
STRICT ?= 0

.PHONY: help venv audit merge verify test lint clean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 10

$(BIN)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (benchtruth)"
	touch $@

venv: $(BIN)/.installed ## create .venv from requirements.txt and register the python3 kernel

audit: venv ## audit the bundled example (HOST, BENCH_LIST, PROJECT_ROOT, CLAIMED_TABLES, OUT, STRICT=1)
	mkdir -p $(OUT)/analysis $(OUT)/paper_tables
	@# With STRICT=1 the 01 notebook fails on findings; 02 still runs, then make fails.
	status=0; \
	$(BIN)/papermill notebooks/01_audit.ipynb $(OUT)/analysis/01_audit_$(HOST).ipynb \
		-k python3 --no-progress-bar -f params/$(HOST).yaml \
		-p bench_list $(BENCH_LIST) -p project_root $(PROJECT_ROOT) \
		-p paper_tables_dir $(CLAIMED_TABLES) -p output_dir $(OUT)/analysis \
		-p strict $(if $(filter 1 true yes,$(STRICT)),True,False) || status=$$?; \
	$(BIN)/papermill notebooks/02_tables.ipynb $(OUT)/paper_tables/02_tables_$(HOST).ipynb \
		-k python3 --no-progress-bar -p host_tag $(HOST) \
		-p truthfulness_json $(OUT)/analysis/benchmark_truthfulness.json \
		-p output_dir $(OUT)/paper_tables -p project_root $(PROJECT_ROOT) || status=$$?; \
	$(BIN)/python -m benchtruth_utils finish-notebook $(OUT)/analysis/01_audit_$(HOST).ipynb \
		$(OUT)/paper_tables/02_tables_$(HOST).ipynb || status=$$?; \
	echo "audit of $(BENCH_LIST) for host $(HOST) written to $(OUT)/"; \
	exit $$status

comma := ,
empty :=
space := $(empty) $(empty)
TRUTHS ?= build/example_3090/analysis/benchmark_truthfulness.json build/example_4090/analysis/benchmark_truthfulness.json
MERGED_OUT ?= build/merged

merge: venv ## merge the truth files of several hosts (TRUTHS="a.json b.json", MERGED_OUT)
	mkdir -p $(MERGED_OUT)/analysis
	$(BIN)/papermill notebooks/03_merge.ipynb $(MERGED_OUT)/analysis/03_merge.ipynb \
		-k python3 --no-progress-bar -p output_dir $(MERGED_OUT)/analysis \
		-y "truthfulness_jsons: [$(subst $(space),$(comma),$(strip $(TRUTHS)))]"

verify: venv ## re-hash the artifacts behind a truth file (TRUTH, PROJECT_ROOT); fails on any change
	$(BIN)/python -m benchtruth_utils verify \
		--truth $(or $(TRUTH),$(OUT)/analysis/benchmark_truthfulness.json) \
		--project-root $(PROJECT_ROOT)

test: lint ## run ruff, then the test suite (what CI runs)
	$(BIN)/python -m pytest

lint: venv ## ruff: lint and format check of the package, tests and notebooks
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean: ## remove build outputs (keeps .venv)
	rm -rf build
