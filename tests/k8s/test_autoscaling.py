"""The HPA's queue signal, measured on the real tritonserver: requests wait in the classifier's queue,
while an ensemble's queue time ends when it dispatches its first step and stays near zero."""

from __future__ import annotations

import re
import urllib.request

import yaml

from k8s import render
from model_repository.assemble import FAMILIES
from tests.model_repository.test_ensemble import send_together

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
    texts = [f"Quarter {i}: net profit rose {i} percent on strong demand." for i in range(48)]
    before = queued_us(triton)
    for _ in range(3):
        send_together(triton, family, texts)
    after = queued_us(triton)
    grew = {model: after[model] - before.get(model, 0.0) for model in after}
    requests = 3 * len(texts)
    # The classifier's requests wait for the runs before them; the ensemble's hardly wait at all.
    classifier = f"{family}_classifier"
    assert grew[classifier] / requests > 200, grew  # > 0.2 ms queued per request (7 ms measured)
    assert grew[family] < grew[classifier] / 20, grew
    assert hpa_queue_models() == [f"{f}_classifier" for f in FAMILIES]


def test_the_dashboard_shows_the_hpas_signal():
    import json

    dashboard = json.loads((render.HERE / "grafana" / "finsent-triton.json").read_text())
    (panel,) = [p for p in dashboard["panels"] if "HPA" in p["title"]]
    (target,) = panel["targets"]
    assert QUEUE in target["expr"] and 'model=~".+_classifier"' in target["expr"]
