# finsent: `make serve` serves the models, `make test` runs the test suite. Knobs below.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BUILD ?= build

FINBERT ?= ProsusAI/finbert
DISTILBERT ?= $(BUILD)/checkpoints/distilbert-fpb
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
PYTEST_ARGS ?=

.PHONY: help setup serve test repository clean loadtest loadtest-local loadtest-cost
help:
	@echo "make serve    export the models (cached) and serve them with a local tritonserver"
	@echo "              FINBERT=$(FINBERT) DISTILBERT=$(DISTILBERT)"
	@echo "              HTTP_PORT=$(HTTP_PORT) GRPC_PORT=$(GRPC_PORT) METRICS_PORT=$(METRICS_PORT)"
	@echo "make test     run the whole test suite offline (PYTEST_ARGS=...)"
	@echo "make setup    create $(VENV) and install the pinned requirements (done by serve/test)"
	@echo "make repository TARGET=container DEVICE=gpu   assemble a repository for the NGC image"
	@echo "make loadtest  step-load sweep against a running server (make serve first): PROTOCOL=$(PROTOCOL)"
	@echo "              HOST= MODEL=$(MODEL) USERS=\"$(USERS)\" STEP_SECONDS=$(STEP_SECONDS) SLO_MS=$(SLO_MS) OUT="
	@echo "make loadtest-local   the same against tiny random-weight models it serves itself (a demo)"
	@echo "make loadtest-cost SWEEPS=\"dir ...\"   $$ per million texts at the SLO (loadtest/prices.yaml)"

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 expected)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@./server/system_deps.sh "$$($(PY) -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
	touch $@

serve: setup
	$(PY) -m server --finbert "$(FINBERT)" --distilbert "$(DISTILBERT)" --build "$(BUILD)" \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

test: setup
	$(PY) -m pytest tests $(PYTEST_ARGS)

TARGET ?= container
DEVICE ?= gpu
repository: setup
	$(PY) -m model_repository.assemble --target $(TARGET) --device $(DEVICE) --copy \
		$(foreach f,finbert distilbert,$(if $(wildcard $(BUILD)/export/$(f)/model.onnx),--export $(f)=$(BUILD)/export/$(f)))

# Load tests (loadtest/, docs/loadtest.md). HOST is read from the command line only, because
# some shells export HOST=<this machine's name>; empty means this machine's `make serve` ports.
PROTOCOL ?= grpc
MODEL ?= finbert
USERS ?= 1 4 16
STEP_SECONDS ?= 10
SLO_MS ?= 200
TEXTS_PER_REQUEST ?= 1
GATEWAY_PATH ?= /
HARDWARE ?=
CORPUS ?=
OUT ?=
LOADTEST_HOST := $(if $(filter command line,$(origin HOST)),$(HOST),)
LOADTEST_ARGS = --protocol $(PROTOCOL) --model $(MODEL) --users "$(USERS)" --step-seconds $(STEP_SECONDS) \
	--slo-ms $(SLO_MS) --texts-per-request $(TEXTS_PER_REQUEST) --gateway-path $(GATEWAY_PATH) \
	$(if $(CORPUS),--corpus "$(CORPUS)") $(if $(HARDWARE),--hardware "$(HARDWARE)")

loadtest: setup
	$(PY) -m loadtest.sweep $(LOADTEST_ARGS) $(if $(LOADTEST_HOST),--host "$(LOADTEST_HOST)") \
		--out "$(or $(OUT),$(BUILD)/loadtest/$(PROTOCOL)-$(MODEL))"

loadtest-local: setup
	$(PY) -m loadtest.local $(LOADTEST_ARGS) --build "$(BUILD)/loadtest-local" \
		--out "$(or $(OUT),$(BUILD)/loadtest/local-$(PROTOCOL)-$(MODEL))"

SWEEPS ?= $(or $(OUT),$(BUILD)/loadtest/$(PROTOCOL)-$(MODEL))
loadtest-cost: setup
	$(PY) -m loadtest.cost $(SWEEPS) --out "$(firstword $(SWEEPS))/cost.md"

clean:
	rm -rf $(BUILD)
