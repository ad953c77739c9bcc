"""What every benchmark run shares: its arguments' checks, the machine and time it ran on, and
writing <name>.json/.md/.png into docs/benchmarks/ (or --out)."""

from __future__ import annotations

import argparse
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

REPORTS = Path("docs/benchmarks")


def shared_arguments(parser: argparse.ArgumentParser) -> None:
    """Cores, the build folder (exports cached there are shared by the benchmarks) and the report folder."""
    from model_repository.assemble import available_cores

    parser.add_argument("--cores", type=int, default=available_cores())
    parser.add_argument("--build", type=Path, default=Path("build/bench"))
    parser.add_argument("--out", type=Path, default=REPORTS)


def client_counts(text: str) -> list[int]:
    """ "1,4,16" -> [1, 4, 16]; "" -> [] (no such levels)."""
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        counts = [0]
    if min(counts, default=1) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: comma-separated positive integers, e.g. 1,4,16")
    return counts


def refuse(parser: argparse.ArgumentParser, *problems) -> None:
    """parser.error (one line, exit 2) for the first problem (falsy: none); called before any export or server."""
    for why in problems:
        if why:
            parser.error(why)


def unknown(option: str, names: list[str], known) -> str:
    """What is wrong with names given to `option` that are not in `known` ('' when all are)."""
    wrong = [n for n in names if n not in known]
    return f"{option}: unknown {', '.join(map(repr, wrong))} (choose from {', '.join(known)})" if wrong else ""


def machine(cores: int) -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return f"{cpu}, {cores} cores given, {platform.system()} {platform.release()}"


def now() -> str:
    """A run's time stamp as most reports print it (UTC, to the second)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def date() -> str:
    """A run's time stamp as the faults, soak and bulk reports print it (UTC, to the minute)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def shared_machine() -> str:
    """The machine as the faults and soak reports describe it (they run on every core there is)."""
    return f"{platform.machine()}, {os.cpu_count()} cores (shared), no GPU"


def header(cores: int, source: str, variant: str, corpus: str) -> dict:
    """What every results file of a served-model benchmark starts with: when, where, which model and texts."""
    return {"when": now(), "machine": machine(cores), "source": source, "variant": variant, "corpus": corpus}


def write(out: Path, name: str, results: dict, markdown, plot=None, indent: int = 2, echo: bool = True) -> Path:
    """<out>/<name>.json, .md (markdown(results)) and, with a plot, .png (plot(results, path));
    prints the markdown when echo. Returns the .md's path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=indent) + "\n")
    if plot:
        plot(results, out / f"{name}.png")
    text = markdown(results)
    (out / f"{name}.md").write_text(text)
    if echo:
        print(text)
    return out / f"{name}.md"
