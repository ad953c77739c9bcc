"""Triton Python model (local target, container cpu profile): token ids -> logits with ONNX Runtime
or OpenVINO (the `engine` parameter; export/openvino.py: its precision hint is pinned, never bf16).

The dynamic batcher hands over requests of different lengths together (the inputs allow
ragged batches). Their rows are sorted by real length and split into runs padded only to
their own longest row, at the split points that minimise padding plus a fixed cost per
run: batching then never pays for padding short texts to the longest one.
The container target serves the same model.onnx with Triton's native onnxruntime backend.
"""

import json
import os
from itertools import accumulate
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        here = Path(args["model_repository"]) / args["model_version"]
        facts = json.loads((here / "model_facts.json").read_text())
        # Every knob is written by model_repository/assemble.py (TargetOptions): its defaults live there only.
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        # Runs yield the cores to the steps that take milliseconds (TargetOptions.nice). Linux niceness
        # is per thread: this one runs execute(), and the engine's pool threads, created below, inherit it.
        os.nice(int(params["nice"]))
        model = str(here / params.get("model_filename", "model.onnx"))
        threads = int(params["intra_op_thread_count"])
        if params.get("engine", "onnxruntime") == "openvino":
            self.infer = openvino_runner(model, threads, params["precision"], facts["output_name"])
        else:
            self.infer = onnxruntime_runner(model, threads, params, facts["output_name"])
        self.inputs = facts["input_names"]
        self.output = facts["output_name"]
        self.run_overhead_tokens = float(params["run_overhead_tokens"])
        self.max_tokens = int(params["max_tokens_per_run"])
        self.max_rows = int(params["max_rows_per_run"])  # 1: each text alone (see length_groups)
        # Traffic classes (model_repository/classes.py): requests below the background level run first.
        self.traffic, self.background = params.get("traffic_parameter"), int(params.get("background_level", 0))

    def execute(self, requests):
        urgent = [self.urgent(r) for r in requests] if self.traffic else [False]
        if all(urgent) or not any(urgent):
            return self.classify(requests)
        # Interactive texts and probes handed over with background rows run first and are answered at
        # once: they wait for the background run in progress when they arrived, not for this one too.
        for group in ([r for r, u in zip(requests, urgent) if u], [r for r, u in zip(requests, urgent) if not u]):
            for request, response in zip(group, self.classify(group)):
                request.get_response_sender().send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None

    def urgent(self, request):
        return json.loads(request.parameters()).get(self.traffic, self.background) < self.background

    def classify(self, requests):
        arrays = {
            name: [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests] for name in self.inputs
        }
        rows = {name: stack(arrays[name]) for name in self.inputs}
        lengths = rows["attention_mask"].sum(axis=1)
        logits = np.empty((len(lengths), 3), dtype=np.float32)
        for group in length_groups(lengths, self.run_overhead_tokens, self.max_tokens, self.max_rows):
            width = int(lengths[group].max())
            logits[group] = self.infer({name: rows[name][group, :width] for name in self.inputs})
        bounds = list(accumulate((a.shape[0] for a in arrays["attention_mask"]), initial=0))
        return [
            pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("logits", logits[a:b])])
            for a, b in zip(bounds[:-1], bounds[1:])
        ]


def onnxruntime_runner(model, threads, params, output):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = int(params["inter_op_thread_count"])
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Threads spin-wait between ops (faster runs), but by default stop when a run returns so
    # they do not take the cores the tokenizer, postprocess and Triton need between runs
    # (docs/benchmarks/classifier-knobs.md). "always" is ORT's default, "off" never spins.
    spinning = params["spinning"]
    options.add_session_config_entry("session.intra_op.allow_spinning", "0" if spinning == "off" else "1")
    options.add_session_config_entry("session.force_spinning_stop", "1" if spinning == "runs" else "0")
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return lambda feeds: session.run([output], feeds)[0]


def openvino_runner(model, threads, precision, output):
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    compiled = core.compile_model(core.read_model(model), "CPU", config)
    request = compiled.create_infer_request()
    port = compiled.output(output)
    return lambda feeds: request.infer(feeds)[port].copy()


def stack(arrays):
    """Requests' [rows, width] arrays (widths differ) -> one [all rows, widest] array; zeros pad."""
    if len(arrays) == 1:  # one request (one client): already one array; no copy
        return arrays[0]
    out = np.zeros((sum(a.shape[0] for a in arrays), max(a.shape[1] for a in arrays)), dtype=np.int64)
    row = 0
    for a in arrays:
        out[row : row + a.shape[0], : a.shape[1]] = a
        row += a.shape[0]
    return out


def length_groups(lengths, run_overhead_tokens, max_tokens, max_rows=0):
    """Split the length-sorted rows into runs minimising padded tokens + overhead per run.

    Cost of a run = rows x its longest row (padding included) + run_overhead_tokens (a run's
    fixed cost, in tokens); exact by dynamic programming over split points (n <= 64).
    max_rows (0: no bound) bounds a run's rows: 1 runs each text alone, which an int8 model needs
    for probabilities that do not depend on the other texts (its activations are quantized with
    one scale per run).
    """
    order = np.argsort(lengths, kind="stable")
    n = len(order)
    if n == 1:  # one text: nothing to split (and a Python step runs cold: ~85 µs saved)
        return [order]
    sorted_lengths = lengths[order]
    best = np.zeros(n + 1)
    cut = np.zeros(n + 1, dtype=int)
    for end in range(1, n + 1):
        starts = np.arange(end)
        cost = best[:end] + run_overhead_tokens + (end - starts) * sorted_lengths[end - 1]
        cost[(end - starts) * sorted_lengths[end - 1] > max_tokens] = np.inf
        if max_rows:
            cost[end - starts > max_rows] = np.inf
        cost[end - 1] = best[end - 1] + run_overhead_tokens + sorted_lengths[end - 1]  # a row alone always fits
        cut[end] = int(np.argmin(cost))
        best[end] = cost[cut[end]]
    groups, end = [], n
    while end > 0:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]
