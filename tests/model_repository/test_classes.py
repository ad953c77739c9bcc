"""Traffic classes (model_repository/classes.py) on real tritonservers: every queue ordered by the
caller's priority and bounded, the probes first and uncounted, overload refused with a clear,
retryable error, and the chart's liveness command passing while the server is saturated."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
from tritonclient.utils import InferenceServerException

from finsent import Client, OverloadedError, Retry
from finsent.traffic import (
    BACKGROUND,
    BACKGROUND_MODEL_PARAMETER,
    BACKGROUND_ROWS_PARAMETER,
    CLASSES,
    DEFAULT,
    HEALTH,
    INTERACTIVE,
)
from finsent.traffic import TRAFFIC_PARAMETER as PARAMETER
from model_repository import classes
from model_repository.assemble import STEPS, TargetOptions, assemble, load_config, render
from model_repository.classes import BACKGROUND_SUFFIX
from server import health
from tests.conftest import CONTAINER_PROFILES
from tests.model_repository.test_calibration_served import scrape, series
from tests.statistics import stats_of
from tests.waiting import wait_until

# Long texts make each background run slow enough, on the tiny model, to queue behind.
LONG = " ".join(["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn in the same period a year earlier."] * 20)
TARGETS = {"local": TargetOptions("local"), **CONTAINER_PROFILES}


@pytest.mark.parametrize("target", TARGETS)
def test_every_queue_orders_by_class_and_is_bounded(exports, target):
    from export.facts import ModelFacts

    options = TARGETS[target]
    facts = ModelFacts.load(exports["finbert"])
    for step in (*STEPS, "document"):
        batching = render("finbert", step, facts, options).dynamic_batching
        assert batching.priority_levels == len(CLASSES) and batching.default_priority_level == DEFAULT, step
        for level in CLASSES.values():
            assert batching.priority_queue_policy[level].max_queue_size > 0, (step, level)
        assert batching.default_queue_policy.max_queue_size > 0, step
    classifier = render("finbert", "classifier", facts, options).dynamic_batching
    assert list(classifier.preferred_batch_size) == [options.background_batch_size]
    if options.background_classifier:  # background work has its own classifier: the next test
        return
    # A document's sentences are background requests: none bigger than a joined run.
    document = render("finbert", "document", facts, options).parameters["sentences_per_request"]
    assert 0 < int(document.string_value) <= options.background_batch_size
    ensemble = render("finbert", None, facts, options)
    assert ensemble.parameters[BACKGROUND_ROWS_PARAMETER].string_value == str(options.background_batch_size)


@pytest.mark.parametrize("target", TARGETS)
def test_background_work_has_its_own_classifier_on_cpu(exports, target, tmp_path):
    options = TARGETS[target]
    out = assemble({"finbert": exports["finbert"]}, tmp_path / "repository", options)
    config = lambda model: load_config(out / model / "config.pbtxt")
    ensemble, document = config("finbert"), config("finbert_document")
    if options.classifier != "python":  # the gpu profile: runs take milliseconds, one classifier
        assert options.background_classifier is False
        assert sorted(p.name for p in out.iterdir() if BACKGROUND_SUFFIX in p.name) == []
        assert BACKGROUND_MODEL_PARAMETER not in ensemble.parameters
        assert document.parameters["ensemble"].string_value == "finbert"
        return
    copy, worker, main = (
        config("finbert_background"),
        config("finbert_classifier_background"),
        config("finbert_classifier"),
    )
    # Clients read where background work goes, and send it there whole.
    assert ensemble.parameters[BACKGROUND_MODEL_PARAMETER].string_value == "finbert_background"
    assert ensemble.parameters[BACKGROUND_ROWS_PARAMETER].string_value == str(classes.BACKGROUND_COPY_ROWS)
    steps = [step.model_name for step in copy.ensemble_scheduling.step]
    assert steps == ["finbert_tokenizer", "finbert_classifier_background", "finbert_postprocess"]
    assert document.parameters["ensemble"].string_value == "finbert_background"
    assert document.parameters["sentences_per_request"].string_value == "8"  # configs/document.pbtxt's
    assert document.parameters["requests_in_flight"].string_value == "8"  # a document fills a copy's run
    # The kernel preempts its runs for the main classifier's; the batcher joins them up to the full batch.
    assert (worker.parameters["nice"].string_value, main.parameters["nice"].string_value) == ("19", str(options.nice))
    assert not worker.dynamic_batching.preferred_batch_size and worker.max_batch_size == main.max_batch_size
    assert worker.dynamic_batching.priority_queue_policy[BACKGROUND].max_queue_size > 0  # bounded too
    # A document's sentences (no level of their own) pass bulk rows there; the main classifier's default
    # stays the background level (a plain request is served like background work, never worse).
    assert worker.dynamic_batching.default_priority_level == classes.DOCUMENT_LEVEL < BACKGROUND
    assert main.dynamic_batching.default_priority_level == DEFAULT
    same = ("1/model.py", "1/" + main.parameters["model_filename"].string_value)
    assert all(
        (out / "finbert_classifier_background" / f).read_bytes() == (out / "finbert_classifier" / f).read_bytes()
        for f in same
    )
    with pytest.raises(ValueError, match="background_classifier"):
        TargetOptions("container", "gpu", background_classifier=True)


@pytest.mark.parametrize("server", ["triton", "container_cpu"])
def test_background_work_runs_in_the_background_classifier(server, request):
    served = request.getfixturevalue(server)
    main, worker = "finbert_classifier", "finbert_classifier" + BACKGROUND_SUFFIX
    before = {model: stats_of(served, model)[0] for model in (main, worker)}
    with Client(served.grpc_url, model="finbert", traffic="background") as client:  # finsent score's class
        assert client.info.background_model == "finbert" + BACKGROUND_SUFFIX
        client.classify(["Profit rose."] * 10)
        client.classify_documents(["Profit rose. Sales fell."])
    with Client(served.grpc_url, model="finbert") as client:  # interactive
        client.classify(["Profit rose."] * 3)
    rows = lambda: {model: stats_of(served, model)[0] - before[model] for model in (main, worker)}
    # Triton counts a request after it answers it: wait for the counts rather than read them once.
    wait_until(lambda: rows() == {main: 3, worker: 12}, "12 rows in the background classifier, 3 in the main", 30)


def test_the_cap_is_small_on_cpu_and_the_whole_batch_on_gpu():
    assert TargetOptions("local").background_batch_size < 64
    assert TargetOptions("container", "cpu").background_batch_size == TargetOptions("local").background_batch_size
    assert TargetOptions("container", "gpu").background_batch_size == 64
    with pytest.raises(ValueError, match="background_batch_size"):
        TargetOptions("local", background_batch_size=-1)


def test_the_probes_level_and_parameter_are_the_clients():
    # server/health.py is copied into the image (standard library only): its copies must agree.
    assert (health.PRIORITY, health.TRAFFIC_PARAMETER) == (HEALTH, PARAMETER)
    assert all(level in classes.CLASSIFIER for level in CLASSES.values())


async def _completion_order(url: str, backlog: int, rows: int) -> tuple[int, int]:
    """Send `backlog` background requests of `rows` long texts, then one interactive text; return
    (background requests finished before the interactive one, background requests in all)."""
    client = grpcaio.InferenceServerClient(url)
    done: list[str] = []

    async def send(tag: str, n: int, priority: int):
        batch = np.array([[LONG.encode()]] * n, dtype=np.object_)
        tensor = grpcclient.InferInput("TEXT", [n, 1], "BYTES")
        tensor.set_data_from_numpy(batch)
        try:
            await client.infer("finbert", [tensor], priority=priority, parameters={PARAMETER: priority})
        except InferenceServerException as exc:
            # On a machine busy with other work a background request may wait out its queue timeout
            # (classes.py: shed, as designed): it ended then, which is what the order counts.
            if tag == "interactive" or "Request timeout expired" not in str(exc):
                raise
        done.append(tag)

    try:
        tasks = [asyncio.ensure_future(send("background", rows, BACKGROUND)) for _ in range(backlog)]
        while not done:  # the backlog is being served: the first request came back
            await asyncio.sleep(0.001)
        await send("interactive", 1, INTERACTIVE)
        await asyncio.gather(*tasks)
    finally:
        await client.close()
    return done.index("interactive"), backlog


@pytest.mark.parametrize("server", ["triton", "container_cpu", "container"])
def test_a_background_backlog_does_not_hold_back_an_interactive_text(server, request):
    served = request.getfixturevalue(server)
    options = TARGETS["local" if server == "triton" else server]
    rows = options.background_batch_size
    backlog = min(64, classes.CLASSIFIER[BACKGROUND].size(rows))  # within what the classifier queue holds
    sent = min(rows, 8)
    before, total = asyncio.run(_completion_order(served.grpc_url, backlog, sent))
    print(f"{server}: {before} of {total} background requests finished before the interactive text")
    # First come, first served, it would come back after nearly all of them (32 of 32 with a backlog of
    # 32, measured with traffic_classes=False). With priority it waits for the runs in progress at each step, never
    # for the queue behind them: it overtakes at least half the backlog, less one joined run (the gpu
    # profile joins up to 64 rows: 8 of these requests).
    assert before < total // 2 + rows // sent, f"{before} of {total} background requests finished first"


def niceness(server, model: str) -> dict[int, set[int]]:
    """Each Python stub of `model` under the server: its threads' nice values (/proc/PID/task/*/stat)."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        pid = int(stat.parent.name)
        try:
            ppid = int(health.proc_stat(stat)[1])
            args = (stat.parent / "cmdline").read_bytes().decode(errors="replace")
            if ppid != server.process.pid or f"/{model}/" not in args:
                continue
            out[pid] = {int(health.proc_stat(t)[16]) for t in stat.parent.glob("task/*/stat")}
        except (OSError, IndexError, ValueError):  # a process that ended meanwhile
            continue
    return out


def test_the_classifier_yields_the_cores_to_the_fast_steps(triton):
    # Its runs take the CPU for ~0.1 s; a tokenizer or Triton thread that waits for a core behind them
    # holds up refusals and probes that need a millisecond (docs/benchmarks/traffic-classes.md).
    classifier, tokenizer = niceness(triton, "finbert_classifier"), niceness(triton, "finbert_tokenizer")
    assert classifier and tokenizer, "no Python stub found under the server"
    assert all(TargetOptions().nice in nices for nices in classifier.values()), classifier
    assert all(nices == {0} for nices in tokenizer.values()), tokenizer
    # Background work's copy of it yields to it too (classes.background_copy).
    worker = niceness(triton, "finbert_classifier" + classes.BACKGROUND_SUFFIX)
    assert worker and all(classes.BACKGROUND_NICE in nices for nices in worker.values()), worker


def test_a_full_queue_is_refused_at_once_with_a_clear_retryable_error(triton):
    # 160 dashboards at once: the interactive queue holds a few runs' worth, the rest is shed.
    def flood(_):
        with Client(triton.grpc_url, model="finbert", retry=Retry(attempts=0)) as client:
            try:
                client.classify([LONG])
                return None
            except OverloadedError as exc:
                return str(exc)

    with ThreadPoolExecutor(160) as pool:
        outcomes = list(pool.map(flood, range(160)))
    refused = [o for o in outcomes if o]
    assert refused, "160 concurrent interactive requests never filled the queue"
    assert all("overloaded" in o and "retry later" in o and "Exceeds maximum queue size" in o for o in refused)
    assert len(refused) < len(outcomes), "the server must still serve what it admitted"
    with Client(triton.grpc_url, model="finbert") as client:  # and everyone after
        assert client.classify(["Profit rose."])[0].label


def test_a_patient_client_waits_out_the_overload(triton):
    # finsent score's retry policy: the same flood, but every text is classified in the end.
    def flood(_):
        retry = Retry(attempts=0, initial_s=0.05, max_s=0.2, patient=True)
        with Client(triton.grpc_url, model="finbert", retry=retry) as client:
            return len(client.classify([LONG]))

    with ThreadPoolExecutor(160) as pool:
        assert list(pool.map(flood, range(160))) == [1] * 160


def test_probe_texts_are_not_counted(triton):
    triton_check = health.Triton(triton.http_url)
    time.sleep(1.1)  # the postprocess flushes its counts at most once a second, at a request
    health.check(triton_check, ["finbert"])
    before = scrape(triton)
    time.sleep(1.1)
    for _ in range(3):
        assert health.check(triton_check, ["finbert"]) == {}
    time.sleep(1.1)
    health.check(triton_check, ["finbert"])  # flushes whatever the last three left pending
    after = scrape(triton)
    assert series(after, "finsent_top_probability_count", model="finbert") == series(
        before, "finsent_top_probability_count", model="finbert"
    )
    with Client(triton.grpc_url, model="finbert") as client:  # a client's texts are counted
        client.classify(["Profit rose."] * 3)
    time.sleep(1.1)
    health.check(triton_check, ["finbert"])
    assert (
        series(scrape(triton), "finsent_top_probability_count", model="finbert")
        == series(after, "finsent_top_probability_count", model="finbert") + 3
    )


def test_a_refusal_for_load_is_an_overloaded_error_and_retried():
    from finsent.core import server_error
    from finsent.errors import OverloadedError, UnavailableError

    for message in ("in ensemble 'finbert', Exceeds maximum queue size", "Request timeout expired"):
        error = server_error("StatusCode.UNAVAILABLE", message, "finbert")
        assert isinstance(error, OverloadedError) and isinstance(error, UnavailableError), message
        assert "retry later" in str(error)


def test_the_probes_copy_of_the_refusals_for_load_is_the_clients():
    # health.py runs in the image without the client installed: its copy of Triton's refusals for load
    # must stay the client's. (document.py imports them from finsent/wire.py: tests/client/test_wire.py.)
    from finsent.wire import OVERLOADED

    assert set(OVERLOADED) <= set(health.BUSY)


async def _document_order(served, backlog: int) -> tuple[int, int]:
    """Fill the background classifier's queue with `backlog` bulk requests (token ids straight to it, so
    only its queue is contended), then send one short document; return (bulk requests finished before
    the document, backlog)."""
    worker = "finbert_classifier" + BACKGROUND_SUFFIX
    client = grpcaio.InferenceServerClient(served.grpc_url)
    config = (await client.get_model_config(worker, as_json=True))["config"]
    rows, width = config["max_batch_size"] // 8, 512  # 8 requests fill a run; long rows make it slow
    ids = np.random.default_rng(0).integers(1000, 2000, (rows, width), dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    done: list[str] = []

    async def bulk():
        inputs = []
        for tensor in config["input"]:
            inputs.append(grpcclient.InferInput(tensor["name"], [rows, width], "INT64"))
            inputs[-1].set_data_from_numpy(feeds[tensor["name"]])
        await client.infer(worker, inputs, priority=BACKGROUND, parameters={PARAMETER: BACKGROUND})
        done.append("bulk")

    async def document():
        tensor = grpcclient.InferInput("TEXT", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[b"Profit rose. Sales fell. Costs were flat."]], dtype=np.object_))
        await client.infer("finbert_document", [tensor], priority=BACKGROUND, parameters={PARAMETER: BACKGROUND})
        done.append("document")

    try:
        tasks = [asyncio.ensure_future(bulk()) for _ in range(backlog)]
        while not done:  # the backlog is being served
            await asyncio.sleep(0.001)
        await document()
        await asyncio.gather(*tasks)
    finally:
        await client.close()
    return done.index("document"), backlog


@pytest.mark.parametrize("server", ["triton", "container_cpu"])
def test_a_documents_sentences_pass_a_bulk_backlog_in_the_background_classifier(server, request):
    served = request.getfixturevalue(server)
    before, total = asyncio.run(_document_order(served, 64))
    print(f"{server}: {before} of {total} bulk requests finished before the document")
    # Someone waits for a document's answer; a bulk job only for its throughput. First come, first served,
    # the document came back after 64 of 64 (8 runs of 8 requests). Its sentences (BLS requests: the
    # copy's default level) now wait for the run in progress when they reach the classifier and join the
    # next: 14-23 of 64 passed it (runs of 512- and 128-token rows), the document's own path
    # (document model, tokenizer, postprocess) taking the time of a run or so.
    assert before < total // 2, f"{before} of {total} bulk requests finished before the document"
