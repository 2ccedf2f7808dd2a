# The two front-door commands are `make demo` and `make test`; both install what they need first.
# Downloads are cached per user (~/.cache/clout, ~/.cache/pip, ~/.m2, Go's module cache), so a
# warm machine or a fresh clone on it reuses them.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_EVENTS ?= 200000
DEMO_USERS ?= 10000
DEMO_FLAGS ?=
DEMO_STATE := .state/demo
DEMO_ENV := CLOUT_STATE_DIR=$(DEMO_STATE)

.PHONY: setup demo test lint bench stack-up stack-down clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "clout needs Python >= 3.11"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,serve]"
	touch $(STAMP)

# Kafka's jars and Prism into the user cache; Debian's redis-server and chromium (browser test) if missing.
setup: $(STAMP)
	$(BIN)/clout stack install

# Live until Ctrl-C: stack, pipeline, dashboard (URL printed) and the synthetic stream at 120 x real time.
demo: setup
	$(DEMO_ENV) $(BIN)/clout demo --users $(DEMO_USERS) --events $(DEMO_EVENTS) $(DEMO_FLAGS)

test: setup
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

bench: setup
	$(BIN)/pip install --quiet -e ".[bench]"
	$(DEMO_ENV) $(BIN)/clout stack up
	$(BIN)/python bench/publish.py --bootstrap 127.0.0.1:9092
	$(BIN)/python bench/pipeline.py

stack-up: setup
	$(DEMO_ENV) $(BIN)/clout stack up

stack-down: $(STAMP)
	$(DEMO_ENV) $(BIN)/clout stack down

clean: stack-down
	rm -rf .state
