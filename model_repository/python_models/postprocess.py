"""Triton Python model: logits -> LABEL, SCORE, PROBABILITIES, LOGITS (canonical label order).

The checkpoint's id2label order and the fitted temperature come from model_facts.json; outputs
always follow the canonical order negative, neutral, positive. PROBABILITIES are
softmax(logits / temperature) (export/calibrate.py); LOGITS are the raw scores, before the
temperature, for callers who calibrate themselves (clients ask for them only when told to).
Every prediction is counted in Prometheus series on Triton's metrics port (docs/gke.md).
"""

import json
import time
from itertools import accumulate
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

# Upper bounds of the top-probability buckets (+Inf added); the top one of 3 is >= 1/3.
CONFIDENCE_BUCKETS = [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
# Every metric call is a synchronous message from this stub to the server: one per text (a native
# histogram's observe) made perf_analyzer's p99 unstable in make bench's test on 2 cores. So counts
# are summed here and sent at most once a second, at the next request (the idle remainder waits).
FLUSH_S = 1.0


class TritonPythonModel:
    def initialize(self, args):
        here = Path(args["model_repository"]) / args["model_version"]
        facts = json.loads((here / "model_facts.json").read_text())
        self.columns = facts["canonical_index"]  # checkpoint column of each canonical label
        self.labels = np.array([label.encode() for label in facts["canonical_labels"]], dtype=np.object_)
        self.temperature = float(facts.get("temperature", 1.0))
        # Series per served family (the ensemble's name), so one dashboard compares the models.
        # The top probability is a Prometheus histogram's series (_bucket{le}, _sum, _count) kept as
        # counters: a native histogram takes one value per call (see FLUSH_S).
        model = {"model": facts["name"]}

        def counters(name, description, labels):
            family = pb_utils.MetricFamily(name=name, description=description, kind=pb_utils.MetricFamily.COUNTER)
            return family, [family.Metric(labels={**model, **extra}) for extra in labels]

        self.families = {}  # kept alive as long as their metrics (the backend requires it)
        self.families["labels"], self.per_label = counters(
            "finsent_predictions_total",
            "Texts classified, by predicted label",
            [{"label": label} for label in facts["canonical_labels"]],
        )
        self.edges = np.array(CONFIDENCE_BUCKETS + [np.inf])
        self.families["buckets"], self.buckets = counters(
            "finsent_top_probability_bucket",
            "Texts classified whose SCORE (probability of LABEL) is <= le",
            [{"le": "+Inf" if np.isinf(edge) else f"{edge:g}"} for edge in self.edges],
        )
        self.families["sum"], (self.score_sum,) = counters(
            "finsent_top_probability_sum", "Sum of the SCORE of the texts classified", [{}]
        )
        self.families["count"], (self.score_count,) = counters(
            "finsent_top_probability_count", "Texts classified (the SCORE histogram's count)", [{}]
        )
        self.pending = self.zeros()
        self.flushed = 0.0
        # The health probes' texts (finsent.traffic: this parameter at the health level) are not counted.
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        self.traffic, self.health = params.get("traffic_parameter"), int(params.get("health_level", 0))

    def zeros(self):
        return {"labels": np.zeros(len(self.per_label)), "buckets": np.zeros(len(self.edges)), "sum": 0.0, "count": 0}

    def execute(self, requests):
        logits = [pb_utils.get_input_tensor_by_name(r, "logits").as_numpy() for r in requests]
        # Few numpy calls: at one request a Python step runs on cold caches, ~10 µs a call.
        raw = np.concatenate(logits)[:, self.columns]
        z = raw.astype(np.float64) / self.temperature  # T > 0: the argmax is the raw logits' argmax
        z = np.exp(z - z.max(axis=1, keepdims=True))
        probs = (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
        best = probs.argmax(axis=1)
        label = self.labels[best].reshape(-1, 1)
        score = probs.max(axis=1, keepdims=True)
        bounds = list(accumulate(map(len, logits), initial=0))
        counted = (
            [json.loads(r.parameters()).get(self.traffic) != self.health for r in requests] if self.traffic else [True]
        )
        if all(counted):
            self.count(best, score.ravel())
        else:  # the probes' rows are answered, not counted
            keep = np.repeat(counted, list(map(len, logits)))
            self.count(best[keep], score[keep].ravel())
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor("LABEL", label[a:b]),
                    pb_utils.Tensor("SCORE", score[a:b]),
                    pb_utils.Tensor("PROBABILITIES", probs[a:b]),
                    pb_utils.Tensor("LOGITS", raw[a:b]),
                ]
            )
            for a, b in zip(bounds[:-1], bounds[1:])
        ]

    def count(self, best, score):
        p = self.pending
        p["labels"] += np.bincount(best, minlength=len(self.per_label))
        p["buckets"] += (score[:, None] <= self.edges).sum(axis=0)  # cumulative, as Prometheus buckets are
        p["sum"] += float(score.sum())
        p["count"] += len(score)
        if time.monotonic() - self.flushed >= FLUSH_S:
            self.flush()

    def flush(self):
        p = self.pending
        for metric, n in [
            *zip(self.per_label, p["labels"]),
            *zip(self.buckets, p["buckets"]),
            (self.score_sum, p["sum"]),
            (self.score_count, p["count"]),
        ]:
            if n:
                metric.increment(float(n))
        self.pending, self.flushed = self.zeros(), time.monotonic()

    def finalize(self):
        self.flush()
