"""k8s/cluster.sh: --dry-run prints the gcloud commands; a real run creates only what is missing.

gcloud and kubectl are not installed here; the idempotency tests put recording stand-ins for them
on PATH (they are not what we ship: the script is)."""

from __future__ import annotations

import os
import re
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


def test_only_the_gpus_the_image_runs_on_get_a_pool():
    import yaml

    gpus = yaml.safe_load((SCRIPT.parent / "chart" / "finsent" / "files" / "accelerators.yaml").read_text())
    for gpu in gpus["supported"]:
        result = run("--project=demo", "--dry-run", "--gpu-type", gpu)
        assert result.returncode == 0 and f"type={gpu}," in result.stdout.replace("\\", ""), (gpu, result.stderr)
    for gpu, why in {**gpus["unsupported"], "nvidia-l40": "not a GPU type"}.items():
        result = run("--project=demo", "--dry-run", "--gpu-type", gpu, "--bulk-max-nodes=9")
        assert result.returncode == 2 and result.stdout == "", gpu
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"error: --gpu-type {gpu} is not supported: {why}") and "nvidia-l4" in line


def test_bad_invocations_fail_clearly(tmp_path):
    assert "--project (or PROJECT=) is required" in run("--dry-run").stderr
    assert "unknown option --gpu" in run("--project", "p", "--gpu", "x").stderr
    assert "--bulk-max-nodes wants a whole number, not 'nine'" in run("--project", "p", "--bulk-max-nodes=nine").stderr
    # A PATH without gcloud (this machine may have an unauthenticated one: never call it).
    for tool in ("bash", "tr", "sed", "grep"):
        (tmp_path / tool).symlink_to(
            subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        )
    result = run("--project", "p", env={"PATH": str(tmp_path)})
    assert result.returncode == 1 and "gcloud is not installed" in result.stderr


NODE_SA = "finsent-nodes@demo.iam.gserviceaccount.com"


def test_every_node_pool_runs_as_a_least_privilege_node_service_account():
    # Without it, nodes run as the Compute default account, which new organisations' policy leaves
    # without Editor: no Artifact Registry read, pods in ImagePullBackOff.
    cmds = commands(run("--project", "demo", "--dry-run", "--bulk-max-nodes", "2").stdout)
    assert ["gcloud", "--project", "demo", "iam", "service-accounts", "create", "finsent-nodes"] in [
        c[:7] for c in cmds
    ]
    created = [c for c in cmds if c[4:6] == ["clusters", "create"] or c[4:6] == ["node-pools", "create"]]
    assert {c[6] for c in created} == {"finsent", "gpu", "bulk"}
    for pool in created:
        assert pool[pool.index("--service-account") + 1] == NODE_SA, pool
    member = f"serviceAccount:{NODE_SA}"
    project_roles = {
        c[c.index("--role") + 1] for c in cmds if c[3:5] == ["projects", "add-iam-policy-binding"] and member in c
    }
    assert project_roles == {"roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/monitoring.viewer"}
    (registry,) = [c for c in cmds if c[3:6] == ["artifacts", "repositories", "add-iam-policy-binding"]]
    assert registry[6] == "finsent" and member in registry
    assert registry[registry.index("--role") + 1] == "roles/artifactregistry.reader"


def test_the_custom_metrics_adapter_is_pinned_to_a_release_tag():
    (apply,) = [c for c in commands(run("--project", "demo", "--dry-run").stdout) if c[:2] == ["kubectl", "apply"]]
    url = apply[apply.index("-f") + 1]
    tag = re.fullmatch(
        r"https://raw\.githubusercontent\.com/GoogleCloudPlatform/k8s-stackdriver/([^/]+)/"
        r"custom-metrics-stackdriver-adapter/deploy/production/adapter_new_resource_model\.yaml",
        url,
    ).group(1)
    assert re.fullmatch(r"cm-sd-adapter-v\d+\.\d+\.\d+", tag), f"{tag}: a branch, not a release tag"
    # One variable holds the version (--adapter-version).
    other = run("--project", "demo", "--dry-run", "--adapter-version", "cm-sd-adapter-v0.16.1").stdout
    assert "k8s-stackdriver/cm-sd-adapter-v0.16.1/custom-metrics" in other


@pytest.fixture
def fake_cloud(tmp_path):
    """gcloud/kubectl stand-ins that log their arguments; `describe`/`get` succeed when EXISTS=1; the
    first FAIL_BINDINGS add-iam-policy-binding calls fail, as they do while a new account propagates."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("gcloud", "kubectl"):
        (bin_dir / tool).write_text(
            f'#!/bin/bash\necho "{tool} $*" >> "$CALLS"\n'
            'for a in "$@"; do [[ $a == describe || $a == get ]] && '
            "{ [[ $EXISTS == 1 ]]; exit $?; }; done\n"
            'if [[ " $* " == *" add-iam-policy-binding "* ]]; then\n'
            '  echo x >> "$CALLS.bindings"\n'
            '  if (( $(wc -l < "$CALLS.bindings") <= ${FAIL_BINDINGS:-0} )); then\n'
            '    echo "ERROR: (gcloud) NOT_FOUND: Service account does not exist." >&2; exit 1\n'
            "  fi\n"
            "fi\n"
            "exit 0\n"
        )
        (bin_dir / tool).chmod(0o755)
    calls = tmp_path / "calls"
    return lambda exists, **env: (
        {
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "CALLS": str(calls),
            "EXISTS": "1" if exists else "0",
            "IAM_BACKOFF": "0",
            **env,
        },
        calls,
    )


def test_a_second_run_creates_nothing(fake_cloud):
    env, calls = fake_cloud(exists=True)
    result = run("--project", "demo", env=env)
    assert result.returncode == 0, result.stderr
    logged = calls.read_text().splitlines()
    assert not [c for c in logged if " create " in c], logged
    assert result.stdout.count("exists: ") == 7


def test_a_first_run_creates_everything(fake_cloud):
    env, calls = fake_cloud(exists=False)
    result = run("--project", "demo", env=env)
    assert result.returncode == 0, result.stderr
    created = [c for c in calls.read_text().splitlines() if " create " in c]
    assert len(created) == 7
    assert any("node-pools create gpu" in c and "gpu-driver-version=latest" in c for c in created)


def test_iam_bindings_wait_for_a_new_service_account_to_propagate(fake_cloud):
    env, calls = fake_cloud(exists=False, FAIL_BINDINGS="2")
    result = run("--project", "demo", env=env)
    assert result.returncode == 0, result.stderr
    assert "waiting for" in result.stderr and "attempt 2 of" in result.stderr, result.stderr
    logged = calls.read_text().splitlines()
    workload_identity = [c for c in logged if "roles/iam.workloadIdentityUser" in c]
    assert len(workload_identity) == 1  # the account's own bindings came first; this one went through once
    first = [c for c in logged if "add-iam-policy-binding" in c][0]
    assert sum(c == first for c in logged) == 3  # failed twice, then went through


def test_iam_bindings_give_up_with_a_clear_message(fake_cloud):
    env, _ = fake_cloud(exists=False, FAIL_BINDINGS="1000", IAM_ATTEMPTS="3")
    result = run("--project", "demo", env=env)
    assert result.returncode == 1
    assert "gave up after 3 attempts" in result.stderr and "rerun k8s/cluster.sh" in result.stderr, result.stderr
