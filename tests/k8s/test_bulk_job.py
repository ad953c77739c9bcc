"""Issue 19: the chart's optional Indexed Job of `finsent score --shard K/N` (k8s/values/bulk.yaml:
a second release with its own Triton on its own node pool), rendered with Helm's engine and
validated like the rest of the chart (the profile is also in test_chart.PROFILES)."""

from __future__ import annotations

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from finsent.cli import parser
from k8s import render
from tests.k8s.test_chart import GKE_KUBERNETES, find

BULK = yaml.safe_load((render.PROFILES / "bulk.yaml").read_text())


def job_of(objects):
    jobs = [o for o in objects if o["kind"] == "Job"]
    return jobs[0] if jobs else None


def test_no_job_unless_asked_for():
    for profiles in ([], ["gateway"], ["gcs"]):
        assert job_of(render.objects(render.render(profiles))) is None


def test_the_bulk_profile_runs_one_shard_per_completion_index_against_its_own_triton():
    objects = render.objects(render.render(["bulk"]))
    job = job_of(objects)
    assert job is not None, "bulk.enabled renders a Job"
    kubernetes_validate.validate(job, GKE_KUBERNETES, strict=True)
    spec, values = job["spec"], BULK["bulk"]
    assert spec["completionMode"] == "Indexed"
    assert (spec["completions"], spec["parallelism"]) == (values["completions"], values["parallelism"])
    pod = spec["template"]["spec"]
    # backoffLimitPerIndex: a failing shard is retried (it resumes) without failing the others
    assert pod["restartPolicy"] == "Never" and spec["backoffLimitPerIndex"] >= 1
    (container,) = pod["containers"]
    command = container["command"] + container["args"]
    # the client package's console script, and arguments its own parser accepts, shard by shard
    assert command[0] == "finsent" and command[1] == "score"
    n = values["completions"]
    for k in (0, n - 1):
        argv = [a.replace("$(JOB_COMPLETION_INDEX)", str(k)) for a in command[1:]]
        args = parser().parse_args(argv)
        assert (args.shard.index, args.shard.count) == (k, n)
        assert args.input == values["input"] and args.output == f"{values['output']}/part-{k}.parquet"
        assert args.no_progress
        (triton_service,) = find(objects, "Service")
        assert args.url == f"{triton_service['metadata']['name']}.{render.NAMESPACE}.svc.cluster.local:8001"
    # Workload Identity for the bucket: the release's service account, annotated
    (account,) = [o for o in objects if o["kind"] == "ServiceAccount"]
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert (
        account["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
        == BULK["serviceAccount"]["gcpServiceAccount"]
    )
    # its own Triton, on its own node pool (tainted: interactive pods never land there); the Job's
    # pods (CPU only) stay off the GPU nodes
    (deployment,) = find(objects, "Deployment")
    triton_pod = deployment["spec"]["template"]["spec"]
    assert (
        triton_pod["nodeSelector"]["cloud.google.com/gke-nodepool"]
        == BULK["nodeSelector"]["cloud.google.com/gke-nodepool"]
    )
    assert {"key": "finsent-bulk", "operator": "Equal", "value": "true", "effect": "NoSchedule"} in triton_pod[
        "tolerations"
    ]
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    # the client image (the gateway's: Dockerfile.gateway installs the cli and gcs extras)
    chart = yaml.safe_load((render.CHART / "values.yaml").read_text())
    assert container["image"] == f"{chart['gateway']['image']['repository']}:{chart['gateway']['image']['tag']}"
    assert "cli,gcs" in (render.HERE / "Dockerfile.gateway").read_text()


def test_a_bulk_job_without_its_paths_fails_with_the_values_to_set():
    with pytest.raises(helm.HelmRenderError, match="bulk.input and bulk.output"):
        render.render(values={"bulk": {"enabled": True}})
    with pytest.raises(helm.HelmRenderError, match="gs://"):
        render.render(values={"bulk": {"enabled": True, "input": "news.parquet", "output": "gs://b/out"}})
