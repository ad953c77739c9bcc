"""k8s/cluster.sh: --dry-run prints the gcloud commands; a real run creates only what is missing.

gcloud and kubectl are not installed here; the idempotency tests put recording stand-ins for them
on PATH (they are not what we ship: the script is)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "k8s" / "cluster.sh"


def run(*args, env=None):
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def commands(stdout: str) -> list[list[str]]:
    return [shlex.split(line) for line in stdout.splitlines() if line and not line.startswith("#")]


def test_dry_run_prints_a_gpu_node_pool_with_driver_install_and_autoscaling():
    result = run("--project", "demo", "--dry-run")
    assert result.returncode == 0, result.stderr
    cmds = commands(result.stdout)
    (pool,) = [c for c in cmds if c[4:7] == ["node-pools", "create", "gpu"]]
    # The default driver of a GKE version may be older than the 560 CUDA 12.6 (NGC 24.10) wants.
    assert "type=nvidia-l4,count=1,gpu-driver-version=latest" in pool
    assert pool[pool.index("--machine-type") + 1] == "g2-standard-8"
    assert {"--enable-autoscaling", "--min-nodes", "--max-nodes"} <= set(pool)
    (cluster,) = [c for c in cmds if c[4:6] == ["clusters", "create"]]
    assert cluster[cluster.index("--workload-pool") + 1] == "demo.svc.id.goog"
    assert "--enable-managed-prometheus" in cluster
    bindings = [c for c in cmds if "add-iam-policy-binding" in c]
    members = {c[c.index("--member") + 1] for c in bindings}
    assert "serviceAccount:demo.svc.id.goog[finsent/finsent-triton]" in members


def test_the_triton_account_can_read_the_bucket_as_tritons_gcs_filesystem_does():
    # Triton's GCS filesystem (core r24.10 gcs.h, IsDirectory) reads the bucket's metadata
    # (storage.buckets.get), which roles/storage.objectViewer lacks; Triton's docs (server issue
    # 2253) ask for roles/storage.legacyBucketReader too.
    cmds = commands(run("--project", "demo", "--dry-run").stdout)
    roles = {
        c[c.index("--role") + 1]
        for c in cmds
        if c[3:6] == ["storage", "buckets", "add-iam-policy-binding"]
        and c[c.index("--member") + 1] == "serviceAccount:finsent-triton@demo.iam.gserviceaccount.com"
    }
    assert roles == {"roles/storage.objectViewer", "roles/storage.legacyBucketReader"}


def test_accelerator_type_and_count_are_parameters():
    result = run("--project=demo", "--dry-run", "--gpu-type", "nvidia-tesla-t4", "--gpu-count=2")
    assert result.returncode == 0, result.stderr
    assert "type=nvidia-tesla-t4,count=2,gpu-driver-version=latest" in result.stdout.replace("\\", "")
    # The chart must be told the same GPU, or its node selector (nvidia-l4 by default) leaves pods Pending.
    assert "--set gpu.accelerator=nvidia-tesla-t4" in result.stdout


def test_bad_invocations_fail_clearly(tmp_path):
    assert "--project (or PROJECT=) is required" in run("--dry-run").stderr
    assert "unknown option --gpu" in run("--project", "p", "--gpu", "x").stderr
    # A PATH without gcloud (this machine may have an unauthenticated one: never call it).
    for tool in ("bash", "tr", "sed", "grep"):
        (tmp_path / tool).symlink_to(
            subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        )
    result = run("--project", "p", env={"PATH": str(tmp_path)})
    assert result.returncode == 1 and "gcloud is not installed" in result.stderr


@pytest.fixture
def fake_cloud(tmp_path):
    """gcloud/kubectl stand-ins that log their arguments; `describe`/`get` succeed when EXISTS=1."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gcloud", "kubectl"):
        (bin_dir / tool).write_text(
            f'#!/bin/bash\necho "{tool} $*" >> "$CALLS"\n'
            'for a in "$@"; do [[ $a == describe || $a == get ]] && '
            "{ [[ $EXISTS == 1 ]]; exit $?; }; done\nexit 0\n"
        )
        (bin_dir / tool).chmod(0o755)
    calls = tmp_path / "calls"
    return lambda exists: (
        {"PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls), "EXISTS": "1" if exists else "0"},
        calls,
    )


def test_a_second_run_creates_nothing(fake_cloud):
    env, calls = fake_cloud(exists=True)
    result = run("--project", "demo", env=env)
    assert result.returncode == 0, result.stderr
    logged = calls.read_text().splitlines()
    assert not [c for c in logged if " create " in c], logged
    assert result.stdout.count("exists: ") == 6


def test_a_first_run_creates_everything(fake_cloud):
    env, calls = fake_cloud(exists=False)
    result = run("--project", "demo", env=env)
    assert result.returncode == 0, result.stderr
    created = [c for c in calls.read_text().splitlines() if " create " in c]
    assert len(created) == 6
    assert any("node-pools create gpu" in c and "gpu-driver-version=latest" in c for c in created)
