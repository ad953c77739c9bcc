"""Traffic classes in the repository: every queue ordered by priority, every level bounded.

The levels are the clients' (finsent.traffic: 1 health, 2 interactive, 3 background, the default).
An ensemble passes its caller's priority to each step (core r24.10 ensemble_scheduler.cc), and a
step keeps it when its `priority_levels` covers it, so the tokenizer, classifier and postprocess
serve the probes first, interactive texts next, and bulk rows, documents' sentences and requests
that name no priority after them. Priority orders a queue; it cannot stop a run in progress. So the
batcher joins requests into classifier runs of at most `background_batch_size` rows
(`preferred_batch_size`, max_queue_delay 0: core r24.10 dynamic_batch_scheduler.cc cuts the batch
there), and the finsent clients send background work in requests that small: an interactive text
waits for at most one such run. Past a level's bound a request is refused at once (gRPC
UNAVAILABLE "Exceeds maximum queue size"; past its timeout, "Request timeout expired"): the
clients back off and retry, `finsent score` without giving up.

The bounds are chosen by measurement (docs/benchmarks/traffic-classes.md) and live here only.
"""

from __future__ import annotations

from dataclasses import dataclass

from tritonclient.grpc import model_config_pb2 as mc

from finsent.traffic import (
    BACKGROUND,
    BACKGROUND_MODEL_PARAMETER,
    BACKGROUND_ROWS_PARAMETER,
    CLASSES,
    DEFAULT,
    HEALTH,
    INTERACTIVE,
    TRAFFIC_PARAMETER,
)


@dataclass(frozen=True)
class Bound:
    requests: int = 0  # requests that may wait at this level (max_queue_size); one more is refused at once
    runs: int = 0  # or: this many joined classifier runs of single texts (runs x background_batch_size)
    timeout_s: float = 0.0  # how long one may wait before it is refused (0: as long as it takes)

    def size(self, run_rows: int) -> int:
        return self.requests or self.runs * run_rows


# Where requests wait: the classifier, whose runs take the time. An admitted interactive text waits for
# at most four joined runs of those queued before it, and the run in progress, at any load (a burst of
# dashboards past that is refused at once, and the finsent clients retry it). Background work may queue
# deep (a plain request is background: perf_analyzer at 64 clients must not be refused) but waits at
# most 10 s behind interactive texts before it is refused (and retried): shorter than a client's
# timeout, so a starved bulk request comes back as "retry later", not as a timeout.
CLASSIFIER = {HEALTH: Bound(8), INTERACTIVE: Bound(runs=4), BACKGROUND: Bound(256, timeout_s=10.0)}
# The other steps run in milliseconds: their bounds only stop a flood from growing without end; a
# burst of every client at once must pass them (a tokenizer execute takes 64 rows).
FAST_STEP = {HEALTH: Bound(8), INTERACTIVE: Bound(256), BACKGROUND: Bound(256, timeout_s=10.0)}
# The document model's queue holds documents (each up to 4 MiB); two instances score them.
DOCUMENT = {HEALTH: Bound(8), INTERACTIVE: Bound(16), BACKGROUND: Bound(16, timeout_s=10.0)}
BOUNDS = {"classifier": CLASSIFIER, "tokenizer": FAST_STEP, "postprocess": FAST_STEP, "document": DOCUMENT}


def apply(config: mc.ModelConfig, role: str, background_batch_size: int | None = None) -> None:
    """Give `config` (a step or the document model) the priority levels and bounds of `role`; the
    classifier also its join cap, the ensemble (role None) the parameter clients read it from."""
    if role is None:
        config.parameters[BACKGROUND_ROWS_PARAMETER].string_value = str(background_batch_size)
        return
    batching = config.dynamic_batching
    batching.priority_levels = len(CLASSES)
    batching.default_priority_level = DEFAULT
    for level, bound in BOUNDS[role].items():
        policy = batching.priority_queue_policy[level]
        policy.max_queue_size = bound.size(background_batch_size)
        if bound.timeout_s:
            policy.default_timeout_microseconds = int(bound.timeout_s * 1e6)
            policy.timeout_action = mc.ModelQueuePolicy.REJECT
    # Levels beyond those named (none today) would fall back to this: bounded too.
    batching.default_queue_policy.max_queue_size = BOUNDS[role][DEFAULT].size(background_batch_size)
    if role in ("classifier", "postprocess") and config.backend == "python":  # see finsent.traffic
        config.parameters["traffic_parameter"].string_value = TRAFFIC_PARAMETER
        config.parameters["health_level"].string_value = str(HEALTH)
        config.parameters["background_level"].string_value = str(BACKGROUND)
    if role == "classifier" and background_batch_size:
        del batching.preferred_batch_size[:]
        batching.preferred_batch_size.append(background_batch_size)
    if role == "document" and background_batch_size:
        # A document's sentences are background requests too: no bigger than a joined run, or an
        # interactive text waits for a run of 8 long sentences (~0.25 s on 2 cores) behind one.
        rows = config.parameters["sentences_per_request"]
        rows.string_value = str(min(int(rows.string_value), background_batch_size))


# On CPU the kernel can preempt what Triton cannot. Background work (finsent score, documents) runs in
# its own copy of the classifier, behind its own ensemble (same tokenizer and postprocess), whose threads
# run at nice 19: CFS weight 15 against the main classifier's 110 (nice 10) and 1024 for the steps that
# take milliseconds. An interactive run then no longer waits for the background run in progress: the
# kernel runs it in that run's stead. Background runs are joined up to max_batch_size again (a run of 4
# rows cost a quarter of the throughput), and interactive texts, probes and plain requests keep the main
# classifier. The cost is one more copy of the model in memory. GPU runs take milliseconds: no copy there.
BACKGROUND_NICE = 19
BACKGROUND_SUFFIX = "_background"
# Rows of a finsent client's background request to the copy: whole batches (its batcher joins requests up
# to max_batch_size too). Measured in the mix of docs/benchmarks/traffic-classes.md (2 cores), requests of
# 16 rows left the bulk job 10.8 texts/s against 14.7 with 64: smaller runs, more requests to tokenize.
BACKGROUND_COPY_ROWS = 64
# The copy's level for requests that name none: a document's sentences (see background_copy).
DOCUMENT_LEVEL = INTERACTIVE


def background_copy(
    ensemble: mc.ModelConfig, classifier: mc.ModelConfig, document: mc.ModelConfig, sentences_per_request: str
) -> tuple[mc.ModelConfig, mc.ModelConfig]:
    """The background copies of a family's ensemble and classifier; `ensemble` is told their name and
    the rows of a background request (its clients send background work there), and `document` sends
    its sentences there."""
    copy = mc.ModelConfig()
    copy.CopyFrom(ensemble)
    copy.name = ensemble.name + BACKGROUND_SUFFIX
    copy.parameters.pop(BACKGROUND_ROWS_PARAMETER, None)
    worker = mc.ModelConfig()
    worker.CopyFrom(classifier)
    worker.name = classifier.name + BACKGROUND_SUFFIX
    worker.parameters["nice"].string_value = str(BACKGROUND_NICE)
    del worker.dynamic_batching.preferred_batch_size[:]
    # Someone waits for a document's answer, a bulk job only for its throughput: a document's sentences,
    # BLS requests that cannot name a level (they get the step's default), pass the bulk rows the
    # clients send at the background level. Only background work reaches the copy.
    worker.dynamic_batching.default_priority_level = DOCUMENT_LEVEL
    for step in copy.ensemble_scheduling.step:
        if step.model_name == classifier.name:
            step.model_name = worker.name
    ensemble.parameters[BACKGROUND_MODEL_PARAMETER].string_value = copy.name
    ensemble.parameters[BACKGROUND_ROWS_PARAMETER].string_value = str(
        min(BACKGROUND_COPY_ROWS, ensemble.max_batch_size)
    )
    document.parameters["ensemble"].string_value = copy.name
    document.parameters["sentences_per_request"].string_value = sentences_per_request
    # In flight, a document fills one run of the copy: its sentences pass the bulk rows (above) and no
    # longer share runs with them, and interactive texts are in the main classifier, not behind them.
    document.parameters["requests_in_flight"].string_value = str(BACKGROUND_COPY_ROWS // int(sentences_per_request))
    return copy, worker
