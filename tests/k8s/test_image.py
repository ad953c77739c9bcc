"""The serving image, its Cloud Build config and the Grafana dashboard, held to what runs locally:
the same Triton release, the same Python pins, the metric names the real tritonserver exports."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml

from export.openvino import OPENVINO_VERSION
from k8s import ngc, render
from model_repository.assemble import FAMILIES, HELPERS, SOURCE
from server import native_backend

K8S = render.HERE
ROOT = K8S.parent
CUDA_CHECK = render.CHART / "files" / "cuda_check.py"


def requirement(name: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.split("#")[0].strip().startswith(f"{name}=="):
            return line.split("#")[0].strip()
    raise AssertionError(f"{name} is not pinned in requirements.txt")


def dockerfile() -> str:
    return (K8S / "Dockerfile").read_text()


def ngc_release() -> str:
    assert re.search(r"^FROM nvcr\.io/nvidia/tritonserver:\$\{NGC_RELEASE\}-py3$", dockerfile(), re.M)
    return ngc.pinned()


def test_image_is_the_ngc_release_of_the_local_triton(triton):
    release = ngc_release()
    local = httpclient.InferenceServerClient(triton.http_url).get_server_metadata()["version"]
    assert ngc.RELEASES[release].triton == local
    with open(render.CHART / "Chart.yaml") as f:
        assert yaml.safe_load(f)["appVersion"] == release


def test_container_variants_are_judged_under_the_images_onnx_runtime():
    from export.runtime import CONTAINER_ORT

    assert CONTAINER_ORT == ngc.RELEASES[ngc_release()].onnxruntime
    assert native_backend.TRITON_BRANCH == f"r{ngc_release()}"  # the sources it builds
    assert native_backend.ORT_VERSION == CONTAINER_ORT  # the runtime the native backend is built against


def test_image_adds_exactly_what_the_python_models_import_pinned_as_locally():
    (install,) = re.findall(r"pip install --no-cache-dir (.+)$", dockerfile(), re.M)
    # ONNX Runtime for the cpu profile's Python classifier: the image's own version, not the venv's.
    assert sorted(install.split()) == sorted(
        [
            requirement("numpy"),
            requirement("tokenizers"),
            requirement("nupunkt"),
            f"onnxruntime=={native_backend.ORT_VERSION}",
            # OpenVINO for the cpu profile's classifier with ENGINE=openvino: the release its guard judged.
            requirement("openvino"),
        ]
    )
    assert requirement("openvino") == f"openvino=={OPENVINO_VERSION}"
    # The container runs the tokenizer, postprocess, document (and the cpu profile's classifier) as
    # Python models; their helpers (sentences.py, finsent's wire.py, ...) are copied next to them.
    imported = set()
    local = {path.stem for path in (SOURCE / "python_models").glob("*.py")}
    local |= {path.stem for helpers in HELPERS.values() for path in helpers}
    for path in (SOURCE / "python_models").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"triton_python_backend_utils"} - local
    assert third_party == {"numpy", "tokenizers", "onnxruntime", "openvino", "nupunkt"}


def test_image_bakes_the_container_repository_as_the_unprivileged_user():
    assert "COPY --chown=1000:1000 build/repository/container /models" in dockerfile()
    assert re.search(r"^USER 1000", dockerfile(), re.M)
    values = yaml.safe_load((render.CHART / "values.yaml").read_text())
    assert values["modelRepository"]["path"] == "/models"
    assert values["securityContext"]["runAsUser"] == 1000


def test_image_has_the_probes_health_script_stdlib_only():
    values = yaml.safe_load((render.CHART / "values.yaml").read_text())
    assert f"COPY server/health.py {values['probes']['healthScript']}" in dockerfile()
    assert "!server/health.py" in (K8S / "Dockerfile.dockerignore").read_text().splitlines()
    # The NGC image's python3 has no finsent packages: the script may import the standard library only.
    tree = ast.parse((ROOT / "server" / "health.py").read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}


def test_cloud_build_pushes_the_image_the_chart_pulls():
    config = yaml.safe_load((K8S / "cloudbuild.yaml").read_text())
    build = next(s for s in config["steps"] if s["id"] == "build")
    assert build["args"][:3] == ["build", "-f", "k8s/Dockerfile"] and build["args"][-1] == "."
    image = build["args"][build["args"].index("-t") + 1]
    gateway = next(s for s in config["steps"] if s["id"] == "build-gateway")
    assert gateway["args"][:3] == ["build", "-f", "k8s/Dockerfile.gateway"] and (K8S / "Dockerfile.gateway").exists()
    gateway_image = gateway["args"][gateway["args"].index("-t") + 1]
    assert config["images"] == [image, gateway_image]
    subs = {f"${{{k}}}": str(v) for k, v in config["substitutions"].items()}
    subs["${PROJECT_ID}"] = "PROJECT_ID"
    for key, value in subs.items():
        image, gateway_image = image.replace(key, value), gateway_image.replace(key, value)
    chart = yaml.safe_load((render.CHART / "values.yaml").read_text())
    values = chart["image"]
    assert image == f"{values['repository']}:{values['tag']}"
    assert gateway_image == f"{chart['gateway']['image']['repository']}:{chart['gateway']['image']['tag']}"
    cpu = yaml.safe_load((render.PROFILES / "cpu.yaml").read_text())["image"]["tag"]
    assert cpu == values["tag"].replace("-gpu", "-cpu")


def dashboard_metrics() -> set[str]:
    dash = json.loads((K8S / "grafana" / "finsent-triton.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert {p["title"] for p in dash["panels"]} >= {
        "Request rate",
        "Errors",
        "Queue time per request",
        "Compute time per execution",
        "Batch size",
        "Predicted label mix",
        "Mean confidence (SCORE)",
    }
    return set(re.findall(r"\b((?:nv|finsent)_[a-z_]+)\b", " ".join(exprs)))


def test_dashboard_and_autoscaler_read_metrics_the_real_server_exports(triton):
    client = httpclient.InferenceServerClient(triton.http_url)
    for family in FAMILIES:
        text = httpclient.InferInput("TEXT", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([[b"Profit rose 12%."]], dtype=object))
        client.infer(family, [text])
    with urllib.request.urlopen(f"http://localhost:{triton.ports.metrics}/metrics", timeout=10) as response:
        exported = response.read().decode()
    names = set(re.findall(r"^((?:nv|finsent)_[a-z_]+)\{", exported, re.M))  # finsent_: the postprocess's
    wanted = dashboard_metrics()
    gpu_only = {m for m in wanted if m.startswith("nv_gpu_")}  # NVML metrics: absent without a GPU
    assert wanted - gpu_only <= names, wanted - gpu_only - names
    # The HPA's queue-time series exist per ensemble, under the model label it selects on.
    hpa = yaml.safe_load((render.MANIFESTS / "hpa.yaml").read_text())
    for metric in hpa["spec"]["metrics"]:
        if metric["type"] != "Pods":
            continue
        name = metric["pods"]["metric"]["name"].split("|")[1]
        assert name in wanted
        model = metric["pods"]["metric"].get("selector", {}).get("matchLabels", {}).get("metric.labels.model")
        if model:
            assert re.search(rf'^{name}\{{model="{model}",version="1"\}} ', exported, re.M), (name, model)


def test_gpu_pods_check_the_nodes_driver_first_through_the_images_entrypoint():
    release = ngc_release()
    for profiles in ([], ["gpu"], ["gcs"], ["cpu"]):
        (deployment,) = [o for o in render.objects(render.render(profiles)) if o["kind"] == "Deployment"]
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        if profiles == ["cpu"]:
            assert "initContainers" not in pod
            continue
        (check,) = pod["initContainers"]
        # args only: the entrypoint's forward compatibility applies to the check as to Triton.
        assert "command" not in check and check["image"] == container["image"]
        assert check["args"] == ["python3", "-c", CUDA_CHECK.read_text(), ngc.RELEASES[release].cuda]
        assert check["resources"]["limits"]["nvidia.com/gpu"] == container["resources"]["limits"]["nvidia.com/gpu"]
        assert check["securityContext"] == container["securityContext"]


def cuda_check():
    """The chart's check script, imported from its file (the chart runs it with python3 -c)."""
    spec = importlib.util.spec_from_file_location("cuda_check", CUDA_CHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "version, status, code, says",
    [
        (
            12020,
            0,
            1,
            "error: the node's NVIDIA driver serves CUDA 12.2 (cuInit status 0) and this image needs CUDA 12.6",
        ),
        (12060, 0, 0, "the driver serves CUDA 12.6: enough for 12.6"),
        (12080, 0, 0, "the driver serves CUDA 12.8: enough for 12.6"),
        # new enough by its version, but cuInit fails: forward compatibility unavailable on this GPU
        (12080, 804, 1, "error: the node's NVIDIA driver serves CUDA 12.8 (cuInit status 804)"),
    ],
    ids=["old-driver", "exactly", "newer", "cuinit-fails"],
)
def test_the_driver_check_decides_on_the_version_the_driver_reports(version, status, code, says):
    # The decision on its inputs, the same on any host (a GPU host's own driver never enters it).
    got, line = cuda_check().verdict(ngc.RELEASES[ngc.pinned()].cuda, version, status)
    assert (got, "\n" in line) == (code, False) and line.startswith(says), line
    assert ("gpu-driver-version=latest" in line) == bool(code)


def test_without_a_driver_library_the_check_says_what_to_do_in_one_line(tmp_path):
    # A library path that is not there, as on a GPU-less node: the same on a host with a driver.
    missing = tmp_path / "libcuda.so.1"
    result = subprocess.run(
        [sys.executable, "-c", CUDA_CHECK.read_text(), ngc.RELEASES[ngc.pinned()].cuda, str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: no NVIDIA driver in the container") and "gpu-driver-version=latest" in line
