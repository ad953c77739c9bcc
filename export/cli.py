"""Argument types shared by the export CLIs. argparse applies them while parsing, so a bad value
is refused with one `error: argument --x: ...` line (exit 2) before any slow work starts."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from export.facts import FACTS_FILENAME


def bounded(kind, low=None, high=None, *, above=None, hint: str = ""):
    """A `kind` (int or float) >= low (or > above) and <= high; `hint` follows the complaint."""
    if low is not None and high is not None:
        need = f"between {low} and {high}"
    else:
        need = " and ".join(
            [f">= {low}"] * (low is not None)
            + [f"> {above}"] * (above is not None)
            + [f"<= {high}"] * (high is not None)
        )

    def parse(text: str):
        value = kind(text)  # a ValueError becomes argparse's own "invalid int value: 'x'"
        if not (
            math.isfinite(value)
            and (low is None or value >= low)
            and (above is None or value > above)
            and (high is None or value <= high)
        ):
            raise argparse.ArgumentTypeError(f"must be {need}, got {text}{hint}")
        return value

    parse.__name__ = kind.__name__
    return parse


# The variant guard's --min-agreement: 99.5 would ask for 9950% and refuse every variant.
fraction = bounded(float, 0, 1, hint=" (a fraction: 0.995 means 99.5%)")


def existing_export(text: str) -> Path:
    """A directory written by export.onnx (it holds the model-facts file)."""
    if not (Path(text) / FACTS_FILENAME).is_file():
        raise argparse.ArgumentTypeError(
            f"{text} is not an export directory (no {FACTS_FILENAME}; python -m export.onnx writes one)"
        )
    return Path(text)
