"""The HPA's queue signal, measured on the real tritonserver: requests wait in the classifier's queue,
while an ensemble's queue time ends when it dispatches its first step and stays near zero."""

from __future__ import annotations

import re
import urllib.request

import yaml

from k8s import render
from model_repository.assemble import FAMILIES
from tests.model_repository.test_ensemble import send_together
from tests.statistics import stats_of

QUEUE = "nv_inference_queue_duration_us"


def queued_us(triton) -> dict[str, float]:
    """{model: cumulative µs its requests spent queued}."""
    with urllib.request.urlopen(f"http://localhost:{triton.ports.metrics}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        model: float(value)
        for model, value in re.findall(rf'^{QUEUE}\{{model="([^"]+)",version="1"\}} (\S+)', text, re.M)
    }


def hpa_queue_models() -> list[str]:
    hpa = yaml.safe_load((render.MANIFESTS / "hpa.yaml").read_text())
    return [
        m["pods"]["metric"]["selector"]["matchLabels"]["metric.labels.model"]
        for m in hpa["spec"]["metrics"]
        if m["type"] == "Pods" and QUEUE in m["pods"]["metric"]["name"]
    ]


def test_the_hpa_scales_on_the_queue_that_fills_under_concurrent_load(triton):
    family = next(iter(FAMILIES))
    classifier = f"{family}_classifier"
    texts = [f"Quarter {i}: net profit rose {i} percent on strong demand." for i in range(48)]
    before, runs_before = queued_us(triton), stats_of(triton, classifier)
    for _ in range(3):
        send_together(triton, family, texts)
    after, (rows, runs) = queued_us(triton), (a - b for a, b in zip(stats_of(triton, classifier), runs_before))
    grew = {model: after[model] - before.get(model, 0.0) for model in after}
    # The classifier's requests waited in its queue: they were joined into fewer runs than requests.
    assert 0 < runs < rows, (rows, runs)
    # ...and that is where the waiting shows, not in the ensemble's queue (which ends once its first
    # step is dispatched). Per-step queue times are make bench's figures (benchmarks/serving.py).
    assert grew[family] < grew[classifier], grew
    assert hpa_queue_models() == [f"{f}_classifier" for f in FAMILIES]


def test_the_dashboard_shows_the_hpas_signal():
    import json

    dashboard = json.loads((render.HERE / "grafana" / "finsent-triton.json").read_text())
    (panel,) = [p for p in dashboard["panels"] if "HPA" in p["title"]]
    (target,) = panel["targets"]
    assert QUEUE in target["expr"] and 'model=~".+_classifier"' in target["expr"]
