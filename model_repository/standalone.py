"""A Triton Python model's module, imported outside Triton: its functions, for benchmarks and tests."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

PYTHON_MODELS = Path(__file__).resolve().parent / "python_models"


def python_model(step: str):
    """model_repository/python_models/<step>.py as a module (its pb_utils import is satisfied, not used)."""
    sys.modules.setdefault("triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    spec = importlib.util.spec_from_file_location(f"finsent_{step}", PYTHON_MODELS / f"{step}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
