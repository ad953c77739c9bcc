"""Run NVIDIA's perf_analyzer (shipped in the tritonclient 2.50.0 wheel) against an ensemble.

    python -m server.perf_analyzer -m finbert -u localhost:8001 -i grpc --concurrency-range 1:16:4

Adds what the binary needs on CPU-only machines (libcudart.so.12 from PyPI
nvidia-cuda-runtime-cu12) and, unless --input-data is given, a file of financial sentences
as string input data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from export.sentences import PARITY_SENTENCES


def binary() -> Path:
    path = Path(sys.executable).parent / "perf_analyzer"
    if not path.exists():
        raise SystemExit("perf_analyzer is missing: it ships in tritonclient==2.50.0 (make setup installs it)")
    return path


def environment() -> dict[str, str]:
    import nvidia.cuda_runtime

    lib = Path(list(nvidia.cuda_runtime.__path__)[0]) / "lib"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(lib), env.get("LD_LIBRARY_PATH")]))
    return env


def input_data(texts: list[str], path: Path) -> Path:
    """perf_analyzer's string input format: one {"TEXT": {"content": [...], "shape": [1]}} per request."""
    path.write_text(json.dumps({"data": [{"TEXT": {"content": [t], "shape": [1]}} for t in texts]}))
    return path


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    if not any(a.startswith("--input-data") for a in args):
        data = input_data(PARITY_SENTENCES[:-1], Path(tempfile.mkdtemp()) / "sentences.json")
        args = [*args, f"--input-data={data}"]
    return subprocess.run([str(binary()), *args], env=environment(), **kwargs)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]).returncode)
