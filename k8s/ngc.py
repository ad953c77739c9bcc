"""The NGC tritonserver release the serving image is built FROM, and what each known release ships.

The pin is k8s/Dockerfile's `ARG NGC_RELEASE` (the image tag knob, docs/gke.md); RELEASES holds only
releases whose versions were read from NVIDIA's release notes. Copies that cannot import this
(Chart.yaml's appVersion, the chart's gpu.cudaVersion, export.runtime.CONTAINER_ORT, the native
backend's branch) are held to it by tests/k8s/test_image.py. Standard library only."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parent / "Dockerfile"


@dataclass(frozen=True)
class Release:
    triton: str  # the tritonserver version (its `r<release>` branches hold the sources)
    cuda: str  # major.minor the image is built on: the node driver must serve it
    onnxruntime: str  # the onnxruntime backend's ONNX Runtime: the container's variants are judged under it


# NVIDIA's Triton 24.10 release notes: Triton 2.51.0, CUDA 12.6.2, ONNX Runtime 1.19.2.
RELEASES = {"24.10": Release(triton="2.51.0", cuda="12.6", onnxruntime="1.19.2")}


def pinned() -> str:
    """The release k8s/Dockerfile builds FROM (its ARG NGC_RELEASE default)."""
    (release,) = re.findall(r"^ARG NGC_RELEASE=(\d\d\.\d\d)$", DOCKERFILE.read_text(), re.M)
    return release
