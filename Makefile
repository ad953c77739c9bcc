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
VARIANT ?=
# The classifier's engine on CPU: onnxruntime or openvino (empty: the default, README's knobs).
ENGINE ?=
REPRODUCIBLE ?=
PYTEST_ARGS ?=
GATEWAY_PORT ?= 8080
TRITON_URL ?= localhost:$(GRPC_PORT)

# Fine-tuning (issue 4). Financial PhraseBank is read from $FINSENT_FPB_DIR or ../shared next to the clone
# when it is there (CC BY-NC-SA 3.0: never copied into the repo); with DATA empty it comes from the Hub.
BASE ?= distilbert-base-uncased
FPB_DIR := $(abspath $(or $(FINSENT_FPB_DIR),$(CURDIR)/../shared/data/financial_phrasebank))
DATA ?= $(if $(wildcard $(FPB_DIR)/Sentences_75Agree.txt),$(FPB_DIR)/Sentences_75Agree.txt,)
# OUT= (make finetune's output, default DISTILBERT) is also make loadtest's: each target applies its default.
# With BASE=minilm the recipe measured in docs/finetune.md (0.9419 held out); else the script's defaults.
MINILM_RECIPE := --epochs 3 --lr 7e-5 --batch-size 16 --max-length 64
FINETUNE_ARGS ?= $(if $(filter minilm,$(BASE)),$(MINILM_RECIPE))
# Served-accuracy evaluation: CHECKPOINT scored through the FAMILY ensemble (URL: a running server's gRPC).
CHECKPOINT ?= $(or $(OUT),$(DISTILBERT))
FAMILY ?= distilbert
URL ?=
EVAL_ARGS ?=

.PHONY: help setup serve test test-fast format bench timeline startup gateway faults soak repository manifests clean loadtest loadtest-local loadtest-cost \
	finetune eval
help:
	@echo "make serve       export the models (cached) and serve them: FINBERT= DISTILBERT= VARIANT= ENGINE= TARGET= DEVICE="
	@echo "make test        ruff (lint, format check), then the whole test suite (offline once build/ is cached); make format fixes style"
	@echo "make test-fast   ruff, then the tests that need no tritonserver, export or native build: seconds, not minutes"
	@echo "make finetune    fine-tune BASE=$(BASE) on Financial PhraseBank into OUT=$(or $(OUT),$(DISTILBERT))"
	@echo "make eval        score CHECKPOINT= served by Triton and in PyTorch -> docs/accuracy.md"
	@echo "make gateway     REST gateway on GATEWAY_PORT=$(GATEWAY_PORT) in front of TRITON_URL=$(TRITON_URL)"
	@echo "make repository  the model repository for the GKE image (TARGET=container DEVICE=gpu|cpu)"
	@echo "make manifests   re-render k8s/manifests/ from the Helm chart"
	@echo "make loadtest    step-load sweep against a running server; loadtest-local, loadtest-cost"
	@echo "make bench       serving and container benchmarks -> docs/benchmarks/ (also timeline, startup, faults, soak)"
	@echo "make setup       create $(VENV) with the pinned requirements (serve and test do it)"
	@echo "Every knob, its default and meaning: README.md (\"Knobs\", make bench and make repository) and docs/loadtest.md"

# The Debian packages are checked at every setup, not only with the venv: quiet when all are there.
setup: $(VENV)/.installed
	@./server/system_deps.sh "$$($(PY) -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"

$(VENV)/.installed: requirements.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (Python 3.11 expected)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# make serve TARGET=container [DEVICE=cpu|gpu]: the NGC image's repository on Triton's native onnxruntime
# backend, built once under build/native (command-line TARGET/DEVICE win over these defaults).
serve: TARGET = local
serve: DEVICE = cpu
serve: setup
	$(PY) -m server --finbert "$(FINBERT)" --distilbert "$(DISTILBERT)" --build "$(BUILD)" \
		--target $(TARGET) --device $(DEVICE) \
		$(if $(VARIANT),--variant $(VARIANT)) $(if $(ENGINE),--engine $(ENGINE)) $(if $(REPRODUCIBLE),--reproducible) \
		--http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

# Ruff first: a lint error costs seconds, not the suite's minutes.
define LINT
	$(PY) -m ruff check . || { echo "error: lint (ruff.toml's rules): make format fixes import order; the rest is named above" >&2; exit 1; }
	$(PY) -m ruff format --check . || { echo "error: not formatted as ruff format writes it: run make format" >&2; exit 1; }
endef

test: setup
	$(LINT)
	$(PY) -m pytest tests --durations=15 $(PYTEST_ARGS)

# The tests that need no checkpoint, export, tritonserver or native backend build (tests/conftest.py
# marks the others `triton`): the loop to run after each change.
test-fast: setup
	$(LINT)
	$(PY) -m pytest tests -m "not triton" -n auto --durations=5 $(PYTEST_ARGS)

BENCH_VARIANTS ?= fp32,int8
BENCH_SECONDS ?= 15
# Random-weight base checkpoints unless FINBERT=/DISTILBERT= are given on the command line.
format: setup
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: setup
	$(PY) -m benchmarks.serving --variants $(BENCH_VARIANTS) --duration $(BENCH_SECONDS) \
		$(if $(filter command line,$(origin FINBERT)),--finbert "$(FINBERT)") \
		$(if $(filter command line,$(origin DISTILBERT)),--distilbert "$(DISTILBERT)")
	$(PY) -m benchmarks.container $(if $(filter command line,$(origin FINBERT)),--checkpoint "$(FINBERT)")
	$(PY) -m benchmarks.traffic_classes $(if $(filter command line,$(origin FINBERT)),--finbert "$(FINBERT)")
	$(PY) -m benchmarks.cpu_engines $(if $(filter command line,$(origin FINBERT)),--finbert "$(FINBERT)") \
		$(if $(filter command line,$(origin DISTILBERT)),--distilbert "$(DISTILBERT)")
	$(PY) -m benchmarks.served_engines $(if $(filter command line,$(origin FINBERT)),--finbert "$(FINBERT)")
TIMELINE_MODEL ?= finbert
TIMELINE_VARIANT ?=
# make bench's random-weight architecture unless FINBERT=/DISTILBERT= are given on the command line.
# The checkpoints given on the command line (make bench's random-weight ones otherwise), by model.
GIVEN_finbert = $(if $(filter command line,$(origin FINBERT)),$(FINBERT))
GIVEN_distilbert = $(if $(filter command line,$(origin DISTILBERT)),$(DISTILBERT))
timeline: setup
	$(PY) -m benchmarks.timeline --model $(TIMELINE_MODEL) $(if $(TIMELINE_VARIANT),--variant $(TIMELINE_VARIANT)) \
		$(if $(GIVEN_$(TIMELINE_MODEL)),--checkpoint "$(GIVEN_$(TIMELINE_MODEL))")

startup: setup
	$(PY) -m benchmarks.startup

faults: setup
	$(PY) -m benchmarks.faults

DURATION ?= 600
soak: setup
	$(PY) -m benchmarks.soak --duration $(DURATION)

# API_KEY_FILE=keys.txt: the gateway asks for one of its keys (one per line, re-read when it changes);
# without it (nor $$FINSENT_API_KEY) the gateway is open, and its banner says so.
API_KEY_FILE ?=
gateway: setup
	$(PY) -m finsent gateway --port $(GATEWAY_PORT) --triton $(TRITON_URL) $(if $(API_KEY_FILE),--api-key-file "$(API_KEY_FILE)")

TARGET ?= container
DEVICE ?=
# The classifier's ORT threads in the repository (default: the CPU profile's request for the container).
CORES ?=
# Default: the chart's models (k8s/chart/finsent/values.yaml); e.g. MODELS=finbert for a FinBERT-only image.
MODELS ?=
repository: setup
	$(PY) -m model_repository.build --build "$(BUILD)" --target $(TARGET) $(if $(DEVICE),--device $(DEVICE)) $(if $(VARIANT),--variant $(VARIANT)) $(if $(ENGINE),--engine $(ENGINE)) $(if $(CORES),--cores $(CORES)) $(if $(MODELS),--models $(MODELS)) $(if $(BACKGROUND_BATCH_SIZE),--background-batch-size $(BACKGROUND_BATCH_SIZE))

# k8s/manifests/: the Helm chart rendered with default values, for kubectl users (see docs/gke.md).
manifests: setup
	$(PY) -m k8s.render

# Load tests (loadtest/, docs/loadtest.md). HOST is read from the command line only, because
# some shells export HOST=<this machine's name>; empty means this machine's `make serve` ports.
PROTOCOL ?= grpc
# Empty: the finsent ensemble the server serves (finbert when it serves both; finsent.core.DEFAULT_MODEL).
MODEL ?=
USERS ?= 1 4 16
STEP_SECONDS ?= 10
SLO_MS ?= 200
TEXTS_PER_REQUEST ?= 1
GATEWAY_PATH ?= /
HARDWARE ?=
CORPUS ?=
OUT ?=
# Without HOST=: the ports this Makefile gives `make serve` and `make gateway`.
DEFAULT_HOST_grpc = localhost:$(GRPC_PORT)
DEFAULT_HOST_http = http://localhost:$(HTTP_PORT)
DEFAULT_HOST_gateway = http://localhost:$(GATEWAY_PORT)
DEFAULT_HOST_mixed = localhost:$(GRPC_PORT)
LOADTEST_HOST = $(if $(filter command line,$(origin HOST)),$(HOST),$(DEFAULT_HOST_$(PROTOCOL)))
LOADTEST_ARGS = --protocol $(PROTOCOL) $(if $(MODEL),--model $(MODEL)) --users "$(USERS)" --step-seconds $(STEP_SECONDS) \
	--slo-ms $(SLO_MS) --texts-per-request $(TEXTS_PER_REQUEST) --gateway-path $(GATEWAY_PATH) \
	$(if $(CORPUS),--corpus "$(CORPUS)") $(if $(HARDWARE),--hardware "$(HARDWARE)")

loadtest: setup
	$(PY) -m loadtest.sweep $(LOADTEST_ARGS) $(if $(LOADTEST_HOST),--host "$(LOADTEST_HOST)") \
		--out "$(or $(OUT),$(BUILD)/loadtest/{protocol}-{model})"

loadtest-local: setup
	$(PY) -m loadtest.local $(LOADTEST_ARGS) --build "$(BUILD)/loadtest-local" \
		--out "$(or $(OUT),$(BUILD)/loadtest/local-{protocol}-{model})"

# Empty: OUT=, else the newest sweep under $(BUILD)/loadtest/ (loadtest.cost --newest-in finds it).
SWEEPS ?= $(OUT)
loadtest-cost: setup
	$(PY) -m loadtest.cost $(SWEEPS) --newest-in "$(BUILD)/loadtest" --beside

finetune: setup
	$(PY) -m training.finetune --base "$(BASE)" $(if $(DATA),--data "$(DATA)") --out "$(or $(OUT),$(DISTILBERT))" $(FINETUNE_ARGS)

eval: setup
	$(PY) -m evaluation --checkpoint "$(CHECKPOINT)" --family "$(FAMILY)" --build "$(BUILD)" \
		$(if $(URL),--url "$(URL)") $(EVAL_ARGS)

clean:
	rm -rf $(BUILD)
