"""Triton Python model (local target): token ids -> logits with ONNX Runtime.

The dynamic batcher hands over requests of different lengths together (the inputs allow
ragged batches). Their rows are sorted by real length and run in sub-batches padded only
to their own longest row, so batching never pays for padding to the longest text seen.
The container target serves the same model.onnx with Triton's native onnxruntime backend.
"""
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        here = Path(args["model_repository"]) / args["model_version"]
        facts = json.loads((here / "model_facts.json").read_text())
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_thread_count", "0"))
        options.inter_op_num_threads = int(params.get("inter_op_thread_count", "1"))
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(here / params.get("model_filename", "model.onnx")), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = facts["input_names"]
        self.output = facts["output_name"]
        self.tokens_per_batch = int(params.get("tokens_per_batch", "4096"))

    def execute(self, requests):
        per_request = [[pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in self.inputs]
                       for r in requests]
        counts = [arrays[0].shape[0] for arrays in per_request]
        rows = {name: [row for arrays in per_request for row in arrays[k]] for k, name in enumerate(self.inputs)}
        lengths = np.array([int(mask.sum()) for mask in rows["attention_mask"]])
        logits = np.empty((len(lengths), 3), dtype=np.float32)
        for group in length_groups(lengths, self.tokens_per_batch):
            width = int(lengths[group].max())
            feeds = {name: pad_rows([rows[name][i] for i in group], width) for name in self.inputs}
            logits[group] = self.session.run([self.output], feeds)[0]
        bounds = np.cumsum([0] + counts)
        return [pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("logits", logits[a:b])])
                for a, b in zip(bounds[:-1], bounds[1:])]


def pad_rows(rows, width):
    """Rows of different padded widths -> one [n, width] array (zeros are padding)."""
    out = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        n = min(width, len(row))
        out[i, :n] = row[:n]
    return out


def length_groups(lengths, tokens_per_batch):
    """Indices sorted by length, cut into groups whose padded size stays within the budget."""
    order = np.argsort(lengths, kind="stable")
    groups, start = [], 0
    for end in range(1, len(order) + 1):
        if end == len(order) or (end + 1 - start) * lengths[order[end]] > tokens_per_batch:
            groups.append(order[start:end])
            start = end
    return groups
