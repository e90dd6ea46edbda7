# One-command set-up: `make app` starts the app on the built-in demo, `make test` runs the suite
# (what CI runs), `make test-fast` the quick subset while working.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PORT ?= 8501

.PHONY: setup app test test-fast lint bench bench-app bench-points load-test load-test-browser browser-deps gpu-check clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# torch==2.13.0 first when the venv has none: a CPU build from local disk. GPU users who
# already have a CUDA torch in the venv keep it (requirements.txt accepts a range). Then the
# runtime (requirements.txt, what users install), then perco_viz itself with its test extra
# (pytest, hypothesis, playwright, ruff, tensorboard: pyproject.toml), its runtime already satisfied,
# and the extras for bringing your own training ([lightning], [hf]), tested with the real packages.
$(STAMP): $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q -e ".[test,lightning,hf]"
	touch $(STAMP)

setup: $(STAMP) browser-deps

# Debian's chromium for the browser test; best effort (skipped tests say why when absent).
browser-deps:
	@if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "note: chromium not installed; the browser test will be skipped"; \
	fi

app: setup
	$(BIN)/streamlit run app.py --server.port $(PORT)

# the full suite, as CI runs it (all but the browser load test: pyproject's addopts)
test: setup
	$(BIN)/python -m pytest -q -ra

# the quick subset (under a minute): no AppTest pages, browsers, load or marked-slow tests
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m "not slow and not app and not browser and not load"

lint: $(STAMP)
	$(BIN)/ruff check perco_viz tests pages ui tools examples app.py

bench: setup
	$(BIN)/perco-viz bench loss

# the app in a real browser: cold start, the demo's first figure, snapshot latency, then every page's
# first visit after a server start and warm visit (docs/benchmarks.md, docs/bench_pages.json);
# `make bench-app LOAD=4` with 4 demo trainings running in the background
bench-app: setup
	$(BIN)/python tools/bench_app.py --screenshots screenshots --pages --load $(or $(LOAD),0) \
		--pages-json docs/bench_pages.json

# 100,000 points on the Embeddings page in Chromium: open, pan, select, 3-D (docs/bench_points.json)
bench-points: setup
	$(BIN)/python tools/bench_points.py --run --json docs/bench_points.json

# 20 concurrent sessions, 4 of them running the demo (docs/reliability.md): server side, then browsers
load-test: setup
	$(BIN)/python tools/load_test.py --sessions 20 --demos 4 --epochs 20 --json docs/load.json

# 6 browser sessions asserted (tests/test_load.py), then 20 measured (docs/load_browser.json)
load-test-browser: setup
	$(BIN)/python -m pytest -q -ra -m load tests/test_load.py
	$(BIN)/python tools/load_test_browser.py --sessions 20 --demos 4 --json docs/load_browser.json

# on a machine with a CUDA GPU (DEVELOPERS.md): the CUDA tests and benchmarks, figures to gpu_check.md
# ($OUT/gpu_check.md when OUT is set); no set-up first: it uses .venv's python, else the python on PATH
gpu-check:
	tools/gpu_check.sh

clean:
	rm -rf $(VENV) .pytest_cache
