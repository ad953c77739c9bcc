"""Every values profile's Triton pod fits a fresh node of a pool k8s/cluster.sh creates, or it stays
Pending: the cluster autoscaler adds a node only for a pod that fits an empty one. And the pool holds
the HPA's maximum plus the rollout's surge, or a rollout at maximum scale waits for a node that never
comes; the PodDisruptionBudget lets a drain through at the HPA's minimum."""

from __future__ import annotations

import math
import shlex
import subprocess

import pytest

from k8s import render
from tests.k8s.test_chart import PROFILES, find, triton_container

# vCPUs and GiB of the machine types cluster.sh chooses (its defaults and GPU_TYPE table).
MACHINES = {
    "e2-standard-4": (4, 16),
    "g2-standard-8": (8, 32),
    "g2-standard-24": (24, 96),
    "g2-standard-48": (48, 192),
    "g2-standard-96": (96, 384),
    "n1-standard-8": (8, 30),
}
# Requested by GKE's per-node DaemonSets (kube-proxy 100m, fluentbit-gke 100m, gke-metrics-agent,
# pdcsi-node, the Managed Prometheus collector, the GPU device plugin): an estimate with headroom,
# not measured here (no cluster); docs/gke.md quotes it.
DAEMONSETS_CPU, DAEMONSETS_GIB = 0.4, 0.6


def allocatable(machine: str) -> tuple[float, float]:
    """(CPUs, GiB) a pod can request on a fresh node, after GKE's reservations
    (cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes) and the DaemonSets."""
    cores, gib = MACHINES[machine]
    cpu_reserved = sum(
        share * max(0.0, min(cores, upto) - start)
        for start, upto, share in ((0, 1, 0.06), (1, 2, 0.01), (2, 4, 0.005), (4, 1e9, 0.0025))
    )
    memory_reserved = 0.1 / 1.024 + sum(
        share * max(0.0, min(gib, upto) - start)
        for start, upto, share in ((0, 4, 0.25), (4, 8, 0.2), (8, 16, 0.1), (16, 128, 0.06), (128, 1e9, 0.02))
    )
    return cores - cpu_reserved - DAEMONSETS_CPU, gib - memory_reserved - DAEMONSETS_GIB


def quantity(value) -> float:
    """A Kubernetes CPU or memory quantity in CPUs or GiB."""
    value = str(value)
    for suffix, scale in (("m", 1e-3), ("Gi", 1.0), ("Mi", 1 / 1024)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * scale
    return float(value)


def pools(*options: str) -> dict[str, dict]:
    """{pool: {machine, max_nodes, gpus}} of the pools `cluster.sh --dry-run [options]` creates:
    cluster.sh's variables are the one source of the pools' sizes."""
    dry_run = subprocess.run(
        ["bash", str(render.HERE / "cluster.sh"), "--project", "demo", "--dry-run", *options],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    out = {}
    for command in (shlex.split(line) for line in dry_run.splitlines() if line and not line.startswith("#")):
        if command[3:6] == ["container", "clusters", "create"]:
            name = "default"
        elif command[3:6] == ["container", "node-pools", "create"]:
            name = command[6]
        else:
            continue
        flag = lambda f: command[command.index(f) + 1]
        accelerator = (
            dict(kv.split("=") for kv in flag("--accelerator").split(",")) if "--accelerator" in command else {}
        )
        out[name] = {
            "machine": flag("--machine-type"),
            "max_nodes": int(flag("--max-nodes")),
            "gpus": int(accelerator.get("count", 0)),
        }
    return out


# docs/gke.md's line that creates the pool a profile selects by name (k8s/values/bulk.yaml: "bulk"), when
# cluster.sh creates it only on request.
DOCS = render.HERE.parent / "docs" / "gke.md"


def pool_options(pool: str) -> list[str]:
    if pool in ("default", "gpu"):
        return []
    lines = [
        shlex.split(line.split("#")[0])
        for line in DOCS.read_text().splitlines()
        if line.startswith("k8s/cluster.sh") and f"--{pool}-max-nodes" in line
    ]
    assert len(lines) == 1, f"docs/gke.md should say once how cluster.sh creates pool {pool} (--{pool}-max-nodes)"
    return lines[0][1:]


def profile_pool(pod: dict) -> str:
    """The pool a Triton pod lands on: the one it names, else GKE's GPU pool (only a pod that tolerates
    the nvidia.com/gpu taint and selects the GPU goes there), else the default pool."""
    selector = pod.get("nodeSelector", {})
    if "cloud.google.com/gke-nodepool" in selector:
        return selector["cloud.google.com/gke-nodepool"]
    return "gpu" if "cloud.google.com/gke-accelerator" in selector else "default"


def test_the_reservations_give_gkes_published_allocatable_cpu():
    # plan-node-sizes: a 4-vCPU node has 3.92 allocatable CPUs, an 8-vCPU one 7.91.
    assert allocatable("e2-standard-4")[0] + DAEMONSETS_CPU == pytest.approx(3.92)
    assert allocatable("g2-standard-8")[0] + DAEMONSETS_CPU == pytest.approx(7.91)


@pytest.mark.parametrize("name", list(PROFILES))
def test_each_profiles_pod_fits_a_fresh_node_of_a_pool_cluster_sh_creates(name):
    deployment, container = triton_container(render.objects(render.render(PROFILES[name])))
    pool = profile_pool(deployment["spec"]["template"]["spec"])
    machine = pools(*pool_options(pool))[pool]["machine"]
    cpu, gib = allocatable(machine)
    requests = container["resources"]["requests"]
    assert quantity(requests["cpu"]) <= cpu, f"{name}: {requests['cpu']} CPUs on {machine} ({cpu:.2f} free)"
    assert quantity(requests["memory"]) <= gib, f"{name}: {requests['memory']} on {machine} ({gib:.2f} GiB free)"


def test_the_profiles_cover_every_values_file():
    named = {profile for profiles in PROFILES.values() for profile in profiles if isinstance(profile, str)}
    assert named == {path.stem for path in render.PROFILES.glob("*.yaml")}


# Kube-system, the metrics adapter and the gateway run on the default pool too: one node of it is theirs.
DEFAULT_POOL_RESERVED_NODES = 1


def scaled(value, replicas: int, round_up: bool) -> int:
    """An int-or-percent rollout or disruption field, as Kubernetes resolves it for `replicas` pods."""
    if isinstance(value, str) and value.endswith("%"):
        share = float(value[:-1]) / 100 * replicas
        return math.ceil(share) if round_up else math.floor(share)
    return int(value)


@pytest.mark.parametrize("name", list(PROFILES))
def test_a_rollout_at_the_hpas_maximum_fits_the_pool(name):
    objects = render.objects(render.render(PROFILES[name]))
    deployment, container = triton_container(objects)
    (hpa,) = find(objects, "HorizontalPodAutoscaler")
    pod = deployment["spec"]["template"]["spec"]
    pool_name = profile_pool(pod)
    pool = pools(*pool_options(pool_name))[pool_name]
    # Kubernetes' default when the chart says nothing: surge 25% (rounded up), unavailable 25% (down).
    rolling = deployment["spec"].get("strategy", {}).get("rollingUpdate", {})
    top = hpa["spec"]["maxReplicas"]
    surge = scaled(rolling.get("maxSurge", "25%"), top, round_up=True)
    assert surge + scaled(rolling.get("maxUnavailable", "25%"), top, round_up=False) >= 1
    # Pods one node holds: its GPUs, CPUs and memory, whichever runs out first.
    cpu, gib = allocatable(pool["machine"])
    requests = container["resources"]["requests"]
    per_node = min(int(cpu // quantity(requests["cpu"])), int(gib // quantity(requests["memory"])))
    if gpus := container["resources"].get("limits", {}).get("nvidia.com/gpu"):
        per_node = min(per_node, pool["gpus"] // int(gpus))
    nodes = pool["max_nodes"] - (DEFAULT_POOL_RESERVED_NODES if pool_name == "default" else 0)
    assert nodes * per_node >= top + surge, (
        f"{name}: a rollout at maxReplicas {top} with maxSurge {surge} needs {top + surge} pods; pool "
        f"{pool_name} holds {nodes} nodes x {per_node} pods (k8s/cluster.sh {' '.join(pool_options(pool_name)) or 'defaults'})"
    )


@pytest.mark.parametrize("name", list(PROFILES))
def test_the_disruption_budget_lets_a_drain_through_at_the_hpas_minimum(name):
    objects = render.objects(render.render(PROFILES[name]))
    (pdb,) = find(objects, "PodDisruptionBudget")
    hpas = find(objects, "HorizontalPodAutoscaler")
    low = hpas[0]["spec"]["minReplicas"] if hpas else triton_container(objects)[0]["spec"]["replicas"]
    budget = pdb["spec"]
    if "maxUnavailable" in budget:
        allowed = scaled(budget["maxUnavailable"], low, round_up=True)
    else:
        allowed = low - scaled(budget["minAvailable"], low, round_up=True)
    # 0 would block every node drain (upgrades, scale-down) until someone deletes the budget.
    assert allowed >= 1, f"{name}: the budget allows {allowed} evictions of {low} pods"
