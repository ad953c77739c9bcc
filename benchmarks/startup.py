"""Start-up time of `make serve` (`python -m server`): from the command to the first classified text.

    python -m benchmarks.startup                       # every scenario below, 3 warm starts each
    python -m benchmarks.startup --scenarios tiny --repeats 5

Each scenario runs once cold (exports and variants built: the first `make serve`) and then
--repeats times warm (exports cached: every later start). Per start it records the seconds to
"ready" (the launcher's own line, after Triton's /v2/health/ready), to the first classification
through every ensemble over HTTP, and to a clean exit after SIGINT (drain included).
Writes docs/benchmarks/startup.{md,json}.

Scenarios use random-weight checkpoints (offline). int8 is served only where random weights pass
the export's accuracy guard (random BERT-base and tiny DistilBERT do; random DistilBERT-base's
near-tied logits do not), so both base models together run fp32.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import runner
from benchmarks.markdown import table
from benchmarks.runner import refuse, unknown
from export.facts import FAMILIES
from loadtest import random_models
from model_repository.assemble import available_cores
from server.health import Triton
from server.triton import free_ports

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = {  # key: (name, families, checkpoint size, variant)
    "base": ("BERT-base + DistilBERT-base", ("finbert", "distilbert"), "base", "fp32"),
    "finbert-int8": ("BERT-base (FinBERT's size)", ("finbert",), "base", "int8"),
    "tiny": ("one tiny DistilBERT", ("distilbert",), "tiny", "int8"),
}


TIMES = ("ready_s", "first_classification_s", "stop_s")  # seconds, per start


def start_once(sources: dict[str, str], variant: str, build: Path, timeout_s: float = 600) -> dict:
    http, grpc, metrics = free_ports()
    command = [
        sys.executable,
        "-m",
        "server",
        "--variant",
        variant,
        "--build",
        str(build),
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        "--watchdog-interval",
        "0",
    ]
    for family in FAMILIES:  # every family not in the scenario is skipped
        command += [f"--{family}", sources.get(family, "")]
    began = time.monotonic()
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    lines, ready_s = [], None
    try:
        for line in proc.stdout:  # the launcher prints "ready in ..." once Triton is ready
            lines.append(line)
            if line.startswith("ready in "):
                ready_s = time.monotonic() - began
                break
            if time.monotonic() - began > timeout_s:
                break
        if ready_s is None:
            raise RuntimeError("the server did not start:\n" + "".join(lines[-20:]))
        pending, triton = set(sources), Triton(f"localhost:{http}", timeout_s=5.0)
        while pending and time.monotonic() - began < timeout_s:
            pending = {model for model in pending if triton.infer_error(model)}
            time.sleep(0.01 if pending else 0)
        if pending:
            raise RuntimeError(f"{', '.join(sorted(pending))} never classified a text")
        first_s = time.monotonic() - began
        stop_began = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=120)[0]
        stop_s = time.monotonic() - stop_began
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"the server exited with {proc.returncode}:\n{rest[-2000:]}")
    return {
        "ready_s": round(ready_s, 2),
        "first_classification_s": round(first_s, 2),
        "stop_s": round(stop_s, 2),
        "exported": any("] exporting " in line for line in lines),  # export/onnx.py's line: not cached
    }


def scenario(name: str, sources: dict[str, str], variant: str, build: Path, repeats: int, log=print) -> dict:
    shutil.rmtree(build / "export", ignore_errors=True)  # cold: nothing cached
    cold = start_once(sources, variant, build)
    log(f"{name}: cold {cold}")
    warm = []
    for i in range(repeats):
        warm.append(start_once(sources, variant, build))
        log(f"{name}: warm {i + 1}/{repeats} {warm[-1]}")
    median = {key: round(float(np.median([w[key] for w in warm])), 2) for key in TIMES} if warm else {}
    return {"name": name, "variant": variant, "sources": sources, "cold": cold, "warm": warm, "warm_median": median}


def markdown(results: dict) -> str:
    runs = results["runs"]
    repeats = max((len(run["warm"]) for run in runs), default=0)  # --repeats: every scenario's warm starts
    rows = []
    for run in runs:
        cold = run["cold"]
        rows.append(
            [run["name"], run["variant"], "cold", cold["ready_s"], cold["first_classification_s"], cold["stop_s"]]
        )
        if run["warm_median"]:
            m = run["warm_median"]
            rows.append(
                [
                    run["name"],
                    run["variant"],
                    f"warm (median of {len(run['warm'])})",
                    m["ready_s"],
                    m["first_classification_s"],
                    m["stop_s"],
                ]
            )
    lines = [
        f"# Start-up of `make serve` ({results['when']})",
        "",
        f"Machine: {results['machine']}. `python -m benchmarks.startup`: `python -m server "
        f'--variant ...` from the command to "ready" (Triton\'s /v2/health/ready), to the first '
        f"text classified through every ensemble (HTTP), and from SIGINT to a clean exit (drain included). "
        f"Cold: no export cached (export, parity check, variant build and guard); warm: median of "
        f"{repeats} starts with the exports cached.",
        "",
        *table(["scenario", "variant", "start", "ready s", "first classification s", "stop s"], rows),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="warm starts per scenario")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"of {', '.join(SCENARIOS)}")
    parser.add_argument("--build", type=Path, default=Path("build/startup"))
    parser.add_argument("--out", type=Path, default=runner.REPORTS)
    args = parser.parse_args(argv)
    keys = args.scenarios.split(",")
    refuse(parser, unknown("--scenarios", keys, SCENARIOS), args.repeats < 0 and "--repeats must be at least 0")
    runs = []
    for key in keys:
        name, families, size, variant = SCENARIOS[key]
        sources = {
            family: str(random_models.checkpoint(family, args.build / "checkpoints" / f"{family}-{size}", size))
            for family in families
        }
        runs.append(scenario(name, sources, variant, args.build / key, args.repeats))
    runner.write(
        args.out,
        "startup",
        {"when": runner.now(), "machine": runner.machine(available_cores()), "runs": runs},
        markdown,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
