"""Random-weight checkpoints (real vocab, export.random_checkpoint) built once into a build folder,
and the tiny ones' ONNX exports: what the test suite, `make faults`, `make soak`, loadtest.local and
the client benchmark serve, and the base-size checkpoints the serving benchmarks measure.

Here, not in export/, because it is the recipe its users share (build once, export, serve), and
loadtest is the lowest layer all of them import."""

from __future__ import annotations

import sys
from pathlib import Path

from export.facts import FAMILIES


def checkpoint(family: str, path: Path, size: str = "tiny", labels: tuple[str, ...] | None = None) -> Path:
    """`family`'s random-weight checkpoint of `size` in `path`, built unless one is there already
    (a cached one keeps the labels it was built with)."""
    from export import random_checkpoint

    if not (path / "config.json").exists():
        random_checkpoint.build(FAMILIES[family].arch, path, size=size, **({"labels": labels} if labels else {}))
    return path


def tiny_checkpoints(build: Path, labels: dict[str, tuple[str, ...]] | None = None) -> dict[str, Path]:
    """Every family's tiny checkpoint, in build/checkpoints/<family>; labels: id2label order by family."""
    labels = labels or {}
    return {
        family: checkpoint(family, build / "checkpoints" / family, labels=labels.get(family)) for family in FAMILIES
    }


def exports(checkpoints: dict[str, Path], build: Path) -> dict[str, Path]:
    """Each checkpoint exported to ONNX (parity-checked; cached while the source is unchanged) in
    build/export/<family>: {family: export directory}."""
    from export.onnx import export_model

    return {
        family: export_model(str(path), family, build / "export" / family, log=lambda *_: None).path
        for family, path in checkpoints.items()
    }


def tiny_exports(build: Path) -> dict[str, Path]:
    """The tiny checkpoints of every family, exported: all under `build`, built on the first call."""
    return exports(tiny_checkpoints(build), build)


def tiny_repository(build: Path) -> Path:
    """The tiny models' repository for the local target, in build/repository."""
    from model_repository.assemble import TargetOptions, assemble

    return assemble(tiny_exports(build), build / "repository", TargetOptions("local"))


def serve_tiny(build: Path, **start_args):
    """A tritonserver on free loopback ports serving tiny_repository(build) (server.stack.start's
    start_args), started; its work folder and log in build/triton."""
    from server import stack

    server = stack.start(tiny_repository(build), build / "triton", started=False, **start_args)
    print(f"starting tritonserver with tiny random-weight models (log: {server.log_path}) ...", file=sys.stderr)
    return server.start()
