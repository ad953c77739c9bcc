"""Every values profile's Triton pod fits a fresh node of a pool k8s/cluster.sh creates, or it stays
Pending: the cluster autoscaler adds a node only for a pod that fits an empty one."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from k8s import render
from tests.k8s.test_chart import PROFILES, triton_container

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


def pools() -> dict[str, str]:
    """{pool: machine type} of the pools `cluster.sh --dry-run` creates (default options)."""
    dry_run = subprocess.run(
        ["bash", str(render.HERE / "cluster.sh"), "--project", "demo", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    out = {}
    for command in (shlex.split(line) for line in dry_run.splitlines() if line and not line.startswith("#")):
        if command[3:6] == ["container", "clusters", "create"]:
            out["default"] = command[command.index("--machine-type") + 1]
        elif command[3:6] == ["container", "node-pools", "create"]:
            out[command[6]] = command[command.index("--machine-type") + 1]
    return out


def test_the_reservations_give_gkes_published_allocatable_cpu():
    # plan-node-sizes: a 4-vCPU node has 3.92 allocatable CPUs, an 8-vCPU one 7.91.
    assert allocatable("e2-standard-4")[0] + DAEMONSETS_CPU == pytest.approx(3.92)
    assert allocatable("g2-standard-8")[0] + DAEMONSETS_CPU == pytest.approx(7.91)


@pytest.mark.parametrize("name", list(PROFILES))
def test_each_profiles_pod_fits_a_fresh_node_of_a_pool_cluster_sh_creates(name):
    deployment, container = triton_container(render.objects(render.render(PROFILES[name])))
    pod = deployment["spec"]["template"]["spec"]
    # GKE taints GPU nodes with nvidia.com/gpu: only a pod that tolerates it and selects the GPU goes there.
    pool = "gpu" if "cloud.google.com/gke-accelerator" in pod.get("nodeSelector", {}) else "default"
    machine = pools()[pool]
    cpu, gib = allocatable(machine)
    requests = container["resources"]["requests"]
    assert quantity(requests["cpu"]) <= cpu, f"{name}: {requests['cpu']} CPUs on {machine} ({cpu:.2f} free)"
    assert quantity(requests["memory"]) <= gib, f"{name}: {requests['memory']} on {machine} ({gib:.2f} GiB free)"
