"""The drift alerts: one Prometheus rules file in the chart (files/alerts.yaml), unit-tested with
`promtool test rules` (files/alerts_test.yaml), and rendered as it is into the Managed Prometheus
`Rules` object that GKE evaluates. tests/k8s/test_prometheus.py runs the same expressions on a real
Prometheus scraping the local server."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from k8s import render

RULES = render.CHART / "files" / "alerts.yaml"
RULES_TEST = RULES.with_name("alerts_test.yaml")
# Fields of the monitoring.googleapis.com/v1 Rules CRD (GKE Managed Prometheus): no upstream schema.
GROUP_FIELDS = {"name", "interval", "rules"}
RULE_FIELDS = {"record", "alert", "expr", "for", "labels", "annotations"}


def binary(name: str) -> str:
    """Debian's prometheus package, which `make setup` installs (server/system_deps.sh)."""
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is absent: `make setup` installs it as root (apt-get install prometheus)")
    return path


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def test_promtool_checks_the_rules_and_passes_their_unit_tests():
    promtool = binary("promtool")
    for command in (["check", "rules", RULES.name], ["test", "rules", RULES_TEST.name]):
        result = subprocess.run([promtool, *command], cwd=RULES.parent, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"promtool {' '.join(command)}:\n{result.stdout}{result.stderr}"


def test_every_alert_is_unit_tested():
    tested = {
        case["alertname"]
        for test in yaml.safe_load(RULES_TEST.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert {rule["alert"] for rule in rules() if "alert" in rule} <= tested


@pytest.mark.parametrize("profile", ["default", "cpu", "gateway", "bulk"])
def test_the_chart_renders_the_rules_file_as_its_rules_object(profile):
    objects = render.objects(render.render([] if profile == "default" else [profile]))
    (obj,) = [o for o in objects if o["kind"] == "Rules"]
    assert obj["apiVersion"] == "monitoring.googleapis.com/v1"
    assert obj["metadata"]["namespace"] == render.NAMESPACE
    assert obj["spec"] == yaml.safe_load(RULES.read_text())  # the file, as it is: one source of truth
    for group in obj["spec"]["groups"]:
        assert set(group) <= GROUP_FIELDS and {"name", "interval", "rules"} <= set(group)
        for rule in group["rules"]:
            assert set(rule) <= RULE_FIELDS and "expr" in rule and ("alert" in rule) != ("record" in rule)


def test_the_rules_object_can_be_left_out():
    objects = render.objects(render.render(values={"metrics": {"rules": False}}))
    assert "Rules" not in {o["kind"] for o in objects}


def test_the_docs_point_at_the_rules_file_instead_of_copying_it():
    docs = (render.HERE.parent / "docs" / "gke.md").read_text()
    assert "files/alerts.yaml" in docs
    for rule in rules():
        copied = [line.strip() for line in rule["expr"].splitlines() if len(line.strip()) > 40 and line.strip() in docs]
        assert not copied, f"{rule['alert']}: docs/gke.md copies its expression: {copied}"
