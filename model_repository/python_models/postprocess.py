"""Triton Python model: logits -> LABEL, SCORE, PROBABILITIES (canonical label order).

The checkpoint's id2label order comes from model_facts.json; outputs always follow the
canonical order negative, neutral, positive.
"""
import json
from itertools import accumulate
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        here = Path(args["model_repository"]) / args["model_version"]
        facts = json.loads((here / "model_facts.json").read_text())
        self.columns = facts["canonical_index"]  # checkpoint column of each canonical label
        self.labels = np.array([label.encode() for label in facts["canonical_labels"]], dtype=np.object_)

    def execute(self, requests):
        logits = [pb_utils.get_input_tensor_by_name(r, "logits").as_numpy() for r in requests]
        # Few numpy calls: at one request a Python step runs on cold caches, ~10 µs a call.
        z = np.concatenate(logits)[:, self.columns].astype(np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        probs = (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
        label = self.labels[probs.argmax(axis=1)].reshape(-1, 1)
        score = probs.max(axis=1, keepdims=True)
        bounds = list(accumulate(map(len, logits), initial=0))
        return [pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("LABEL", label[a:b]), pb_utils.Tensor("SCORE", score[a:b]),
                    pb_utils.Tensor("PROBABILITIES", probs[a:b])])
                for a, b in zip(bounds[:-1], bounds[1:])]
