# Every target that needs the environment creates it first, so each works on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
STAMP  := $(VENV)/.installed
SDPA_TARGETS  := torch-sdpa-math,torch-sdpa-flash,torch-sdpa-efficient,torch-sdpa-cudnn
LAYER_TARGETS := torch-encoder-layer,torch-encoder-layer-fastpath,torch-decoder-layer
MODEL_TARGETS := torch-transformer,torch-transformer-fastpath,hf-gpt2,hf-llama,hf-causal-lm:llama,hf-bert,hf-bart,hf-t5
TARGETS ?= reference,$(SDPA_TARGETS),torch-mha,torch-gqa,torch-sdpa-alibi,hf-t5-relbias,hf-t5-relbias-causal,hf-gemma2-attention,torch-layernorm,$(LAYER_TARGETS),$(MODEL_TARGETS)
PROFILE ?= ci
DEVICE  ?= cpu

.PHONY: env test lint typecheck pytest conformance spec bench hf-table clean

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch 2.13.0 is the CPU wheel on this machine's disk; any other request pulls a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	# constraints.txt: the verified versions of the test stack (transformers above all); see its header
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .

# mypy cannot follow the package-dir mapping of pyproject.toml (an editable install resolves it with an
# import hook), so it checks a tree of links laid out as the installed package is: build/typecheck.
TYPECHECK_TREE := build/typecheck/transformer_conformance
typecheck: $(STAMP)
	rm -rf build/typecheck && mkdir -p $(TYPECHECK_TREE)
	for p in conformance/*; do ln -s "$(CURDIR)/$$p" $(TYPECHECK_TREE)/; done
	ln -s "$(CURDIR)/reference" "$(CURDIR)/spec" $(TYPECHECK_TREE)/
	cd build/typecheck && $(CURDIR)/$(BIN)/mypy --strict --config-file $(CURDIR)/pyproject.toml -p transformer_conformance

pytest: $(STAMP)
	$(PY) -m pytest -n 2 --dist loadgroup

test: lint typecheck pytest

conformance: $(STAMP)
	$(PY) -m transformer_conformance run --impl $(TARGETS) --device $(DEVICE) --profile $(PROFILE) --gate reference --markdown reports/conformance.md --json reports/conformance.json --junit reports/conformance.xml --html reports/conformance.html

spec: $(STAMP)
	$(PY) -m transformer_conformance.spec.figures spec/figures
	$(PY) -m transformer_conformance.spec.render > spec/SPEC.md

bench: $(STAMP)
	$(PY) -m benchmarks --json reports/bench.json

# Every decoder-only transformers model type through hf-causal-lm:<model_type> in one run (about 30 min on
# 2 workers, HF_TABLE_WORKERS=n for more; niced; 120 s cap per type): table -> README, rows -> reports/.
hf-table: $(STAMP)
	nice -n 10 $(PY) -m benchmarks.hf_model_table --readme README.md --json reports/hf-table.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .hypothesis reports build
