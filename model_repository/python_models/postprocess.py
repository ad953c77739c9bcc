"""Triton Python model: logits -> LABEL, SCORE, PROBABILITIES, LOGITS (canonical label order).

The checkpoint's id2label order and the fitted temperature come from model_facts.json; outputs
always follow the canonical order negative, neutral, positive. PROBABILITIES are
softmax(logits / temperature) (export/calibrate.py); LOGITS are the raw scores, before the
temperature, for callers who calibrate themselves (clients ask for them only when told to).
Every prediction is counted in Prometheus series on Triton's metrics port (docs/gke.md).
"""
import json
from itertools import accumulate
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

# Upper bounds of the top-probability histogram (+Inf is implicit); the top one of 3 is >= 1/3.
CONFIDENCE_BUCKETS = [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]


class TritonPythonModel:
    def initialize(self, args):
        here = Path(args["model_repository"]) / args["model_version"]
        facts = json.loads((here / "model_facts.json").read_text())
        self.columns = facts["canonical_index"]  # checkpoint column of each canonical label
        self.labels = np.array([label.encode() for label in facts["canonical_labels"]], dtype=np.object_)
        self.temperature = float(facts.get("temperature", 1.0))
        # Series per served family (the ensemble's name), so one dashboard compares the models.
        model = {"model": facts["name"]}
        self.predictions = pb_utils.MetricFamily(
            name="finsent_predictions_total", description="Texts classified, by predicted label",
            kind=pb_utils.MetricFamily.COUNTER)
        self.per_label = [self.predictions.Metric(labels={**model, "label": label})
                          for label in facts["canonical_labels"]]
        self.confidence = pb_utils.MetricFamily(
            name="finsent_top_probability", description="SCORE (the probability of LABEL) of each text classified",
            kind=pb_utils.MetricFamily.HISTOGRAM)
        self.top = self.confidence.Metric(labels=model, buckets=CONFIDENCE_BUCKETS)

    def execute(self, requests):
        logits = [pb_utils.get_input_tensor_by_name(r, "logits").as_numpy() for r in requests]
        # Few numpy calls: at one request a Python step runs on cold caches, ~10 µs a call.
        raw = np.concatenate(logits)[:, self.columns]
        z = raw.astype(np.float64) / self.temperature   # T > 0: the argmax is the raw logits' argmax
        z = np.exp(z - z.max(axis=1, keepdims=True))
        probs = (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
        best = probs.argmax(axis=1)
        label = self.labels[best].reshape(-1, 1)
        score = probs.max(axis=1, keepdims=True)
        self.count(best, score)
        bounds = list(accumulate(map(len, logits), initial=0))
        return [pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("LABEL", label[a:b]), pb_utils.Tensor("SCORE", score[a:b]),
                    pb_utils.Tensor("PROBABILITIES", probs[a:b]), pb_utils.Tensor("LOGITS", raw[a:b])])
                for a, b in zip(bounds[:-1], bounds[1:])]

    def count(self, best, score):
        # Each metric call is a message to the server: one per label seen, one per text observed.
        for index, n in enumerate(np.bincount(best, minlength=len(self.per_label))):
            if n:
                self.per_label[index].increment(float(n))
        for value in score.ravel().tolist():
            self.top.observe(value)
