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
# Fine-tuning (issue 4). Financial PhraseBank is read from ../shared next to the clone when it is
# there (CC BY-NC-SA 3.0: never copied into the repo); with DATA empty it comes from the Hub.
BASE ?= distilbert-base-uncased
FPB_DIR := $(abspath $(CURDIR)/../shared/data/financial_phrasebank)
DATA ?= $(if $(wildcard $(FPB_DIR)/Sentences_75Agree.txt),$(FPB_DIR)/Sentences_75Agree.txt,)
OUT ?= $(DISTILBERT)
FINETUNE_ARGS ?=
# Served-accuracy evaluation: CHECKPOINT scored through the FAMILY ensemble (URL: a running server's gRPC).
CHECKPOINT ?= $(OUT)
FAMILY ?= distilbert
URL ?=
EVAL_ARGS ?=

.PHONY: help setup serve test repository finetune eval clean
help:
	@echo "make serve    export the models (cached) and serve them with a local tritonserver"
	@echo "              FINBERT=$(FINBERT) DISTILBERT=$(DISTILBERT)"
	@echo "              HTTP_PORT=$(HTTP_PORT) GRPC_PORT=$(GRPC_PORT) METRICS_PORT=$(METRICS_PORT)"
	@echo "make test     run the whole test suite offline (PYTEST_ARGS=...)"
	@echo "make setup    create $(VENV) and install the pinned requirements (done by serve/test)"
	@echo "make repository TARGET=container DEVICE=gpu   assemble a repository for the NGC image"
	@echo "make finetune  fine-tune BASE=$(BASE) on FPB 75%-agree into OUT=$(OUT)"
	@echo "              DATA=$(if $(DATA),$(DATA),<the Hub>)  BASE=minilm works offline  FINETUNE_ARGS=--epochs ..."
	@echo "make eval     score CHECKPOINT=$(CHECKPOINT) served by Triton (FAMILY=$(FAMILY), URL=) and in PyTorch;"
	@echo "              writes docs/accuracy.md"

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

finetune: setup
	$(PY) -m export.finetune --base "$(BASE)" $(if $(DATA),--data "$(DATA)") --out "$(OUT)" $(FINETUNE_ARGS)

eval: setup
	$(PY) -m export.evaluate --checkpoint "$(CHECKPOINT)" --family "$(FAMILY)" --build "$(BUILD)" \
		$(if $(URL),--url "$(URL)") $(EVAL_ARGS)

clean:
	rm -rf $(BUILD)
