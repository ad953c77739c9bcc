"""Every query the deployment relies on, run on a real Prometheus (Debian's binary) that scrapes the
local tritonserver's metrics port every second while the test sends traffic: each Grafana panel's
target and variable (k8s/grafana/finsent-triton.json), each alert of the chart's rules file and the
HPA's custom-metric series (k8s/manifests/hpa.yaml). A query that does not parse, or returns no
series with a number, fails the test by name."""

from __future__ import annotations

import json
import math
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml

from finsent import Client
from k8s import render
from model_repository.assemble import FAMILIES
from server.triton import free_ports
from tests.k8s.test_rules import binary, rules
from tests.waiting import wait_for_url

DASHBOARD = render.HERE / "grafana" / "finsent-triton.json"
# GKE Managed Prometheus labels a PodMonitoring's series with the target's namespace and pod (the
# dashboard's per-pod panels group by pod); the local scrape gets the same labels as static ones.
TARGET_LABELS = {"namespace": render.NAMESPACE, "pod": "finsent-triton-0", "container": "triton"}
# Grafana's $__rate_interval, wide enough for the whole test's traffic (rate() needs two scrapes in it).
RATE_INTERVAL = "1m"
# The Custom Metrics Stackdriver Adapter turns a counter into a per-second rate per pod.
ADAPTER_RATE = "1m"
# NVML's series: Triton exports them only with a GPU (test_image.py says the same of the dashboard).
GPU = re.compile(r"\bnv_gpu_")
WAIT_S = 60
TEXTS = [
    "Quarterly profit rose 12% on strong demand.",
    "The company cut its dividend after a loss.",
    "Shares were unchanged in early trading.",
    "Revenue fell short of analysts' estimates.",
]


def dashboard_queries() -> dict[str, str]:
    """{where: PromQL} for each panel target and query variable, the variables set as a user picks
    "All" (their allValue) and $__rate_interval set to RATE_INTERVAL."""
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v.get("allValue", ".*") for v in dashboard["templating"]["list"] if v["type"] == "query"}

    def fill(expr: str) -> str:
        expr = expr.replace("$__rate_interval", RATE_INTERVAL)
        for name, value in variables.items():
            expr = re.sub(rf"\$(\{{{name}\}}|{name}\b)", value, expr)
        assert "$" not in expr, f"a dashboard variable this test does not set: {expr}"
        return expr

    queries = {}
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            # Grafana's label_values(metric, label): the label's values among the metric's series.
            metric, label = re.fullmatch(r"label_values\((\w+), *(\w+)\)", variable["query"]).groups()
            queries[f"variable ${variable['name']}"] = f"count by ({label}) ({metric})"
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            queries[f"panel {panel['title']!r} ({target.get('legendFormat', '')})"] = fill(target["expr"])
    return queries


def firing_or_not(expr: str) -> str:
    """The alert's expression with each comparison made a `bool` one (outside label matchers): 1 where
    it holds, 0 where not, so the query returns the series it compares whether or not it fires
    (promtool's unit tests check when it fires)."""
    parts = re.split(r"(\{[^}]*\})", expr)
    for i in range(0, len(parts), 2):
        parts[i] = re.sub(r"(==|!=|>=|<=|>|<)(?!\s*bool\b)", r"\1 bool", parts[i])
    return "".join(parts)


def rule_queries() -> dict[str, str]:
    return {f"rule {r.get('alert') or r['record']}": firing_or_not(r["expr"]) for r in rules()}


def hpa_queries() -> dict[str, str]:
    """The HPA's Managed Prometheus metrics as the adapter reads them: `prometheus.googleapis.com|NAME|KIND`
    selected by `metric.labels.LABEL: VALUE`, per pod, a counter as its rate."""
    hpa = yaml.safe_load((render.MANIFESTS / "hpa.yaml").read_text())
    queries = {}
    for metric in hpa["spec"]["metrics"]:
        if metric["type"] != "Pods":
            continue
        _, name, kind = metric["pods"]["metric"]["name"].split("|")
        labels = metric["pods"]["metric"].get("selector", {}).get("matchLabels", {})
        matchers = ",".join(f'{k.removeprefix("metric.labels.")}="{v}"' for k, v in labels.items())
        series = f"{name}{{{matchers}}}" if matchers else name
        if kind == "counter":
            series = f"rate({series}[{ADAPTER_RATE}])"
        queries[f"HPA {name} {labels}"] = f"sum by (pod) ({series})"
    return queries


def query(url: str, promql: str) -> dict:
    """Prometheus's answer to an instant query: {"status": "success", "data": ...} or an error."""
    request = f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:  # 400: the query does not parse; 422: it cannot run
        return json.load(error)


def numbers(answer: dict) -> list[float]:
    """The finite values of a vector answer (a NaN is a panel with nothing to draw)."""
    values = [float(s["value"][1]) for s in answer["data"]["result"]] if answer["status"] == "success" else []
    return [v for v in values if math.isfinite(v)]


@pytest.fixture(scope="module")
def prometheus(triton, tmp_path_factory):
    exe = binary("prometheus")
    folder = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "finsent-triton",
                "static_configs": [{"targets": [f"localhost:{triton.ports.metrics}"], "labels": TARGET_LABELS}],
            }
        ],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    log = open(folder / "prometheus.log", "w")
    process = subprocess.Popen(
        [
            exe,
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_url(
            f"{url}/-/ready", "prometheus ready", process=process, detail=(folder / "prometheus.log").read_text
        )
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def answers(prometheus, triton) -> dict[str, dict]:
    """{where: Prometheus's answer} for every query, taken once each non-GPU query has a number (at
    most WAIT_S after the first scrape), classifying texts through both ensembles meanwhile: the
    postprocess sends its counts at most once a second, at a request, and rate() needs two scrapes."""
    queries = {**dashboard_queries(), **rule_queries(), **hpa_queries()}
    clients = [Client(triton.grpc_url, model=family) for family in FAMILIES]
    deadline = time.monotonic() + WAIT_S
    try:
        while True:
            for client in clients:
                client.classify(TEXTS)
            found = {where: query(prometheus, q) for where, q in queries.items()}
            waiting = [w for w, q in queries.items() if not GPU.search(q) and not numbers(found[w])]
            if not waiting or time.monotonic() > deadline:
                return {where: {"query": q, **found[where]} for where, q in queries.items()}
            time.sleep(1)
    finally:
        for client in clients:
            client.close()


def check(answers: dict[str, dict], prefix: str) -> None:
    mine = {w: a for w, a in answers.items() if w.startswith(prefix)}
    assert mine, f"no {prefix} queries"
    broken = [f"{w}: {a['query']}\n  -> {a.get('error')}" for w, a in mine.items() if a["status"] != "success"]
    assert not broken, "queries Prometheus refuses:\n" + "\n".join(broken)
    empty = [f"{w}: {a['query']}" for w, a in mine.items() if not GPU.search(a["query"]) and not numbers(a)]
    assert not empty, f"queries with no series (or only NaN) after {WAIT_S} s of traffic:\n" + "\n".join(empty)


def test_every_dashboard_query_returns_series(answers):
    check(answers, "panel")
    check(answers, "variable")


def test_every_alert_expression_returns_the_series_it_compares(answers):
    check(answers, "rule")


def test_the_hpas_series_return_a_rate_per_pod(answers):
    check(answers, "HPA")
    for where, answer in answers.items():
        if where.startswith("HPA") and not GPU.search(answer["query"]):
            assert {s["metric"].get("pod") for s in answer["data"]["result"]} == {TARGET_LABELS["pod"]}, where


def test_the_gpu_queries_return_series_where_there_is_a_gpu(answers, prometheus):
    gpu = {w: a for w, a in answers.items() if GPU.search(a["query"])}
    assert gpu and all(a["status"] == "success" for a in gpu.values()), gpu  # they parse, GPU or not
    if not numbers(query(prometheus, 'count({__name__=~"nv_gpu_.+"})')):
        pytest.skip(f"this tritonserver has no GPU (no nv_gpu_* series); {len(gpu)} GPU queries parse")
    empty = [f"{w}: {a['query']}" for w, a in gpu.items() if not numbers(a)]
    assert not empty, "GPU queries with no series on a server with a GPU:\n" + "\n".join(empty)


def test_a_misspelt_metric_or_a_broken_query_fails_by_name(answers, prometheus):
    for promql, why in [
        ("sum by (model) (rate(nv_inference_request_sucess[1m]))", "no series"),
        ("sum by (model) (rate(nv_inference_request_success[1m])", "parse error"),
    ]:
        with pytest.raises(AssertionError) as failed:
            check({"panel 'typo'": {"query": promql, **query(prometheus, promql)}}, "panel")
        assert promql in str(failed.value) and why in str(failed.value)
