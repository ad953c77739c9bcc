"""Cost per million texts at a latency SLO, from measured sweeps and a price list.

    python -m loadtest.cost build/loadtest/grpc-finbert [more sweeps ...] --prices loadtest/prices.yaml

A sweep's knee (the highest throughput whose p95 met its SLO, no failures) is priced with
the hourly price of the hardware the sweep names (`--hardware` when it ran). Instance types
that no sweep measured are listed as not measured: a throughput is never carried over from
other hardware, and never invented.

    $ per million texts = hourly price / (texts per second x 3600) x 1,000,000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from loadtest.analysis import load_sweep

DEFAULT_PRICES = Path(__file__).resolve().parent / "prices.yaml"


def load_prices(path: str | Path = DEFAULT_PRICES) -> dict:
    expected = "expected a price list like loadtest/prices.yaml"
    try:
        prices = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ValueError(
            f"{path} is not valid YAML ({getattr(exc, 'problem', None) or exc}{where}): {expected}"
        ) from None
    if not isinstance(prices, dict) or not isinstance(prices.get("instances"), list):
        raise ValueError(f"{path} has no `instances:` list: {expected}")
    for item in prices["instances"]:
        missing = {"name", "usd_per_hour", "source"} - set(item)
        if missing:
            raise ValueError(f"{path}: instance {item.get('name', '?')} lacks {', '.join(sorted(missing))}")
    return prices


def usd_per_million(usd_per_hour: float, texts_per_s: float) -> float:
    return usd_per_hour / (texts_per_s * 3600.0) * 1e6


def cost_rows(sweeps: list[dict], prices: dict) -> list[dict]:
    """One row per priced instance type (measured or not), then measured sweeps with no price."""
    rows, used = [], set()
    for item in prices["instances"]:
        measured = [(i, s) for i, s in enumerate(sweeps) if s.get("hardware") == item["name"]]
        if not measured:
            rows.append(
                {
                    "instance": item["name"],
                    "description": item.get("description", ""),
                    "usd_per_hour": item["usd_per_hour"],
                    "verified": item.get("verified", False),
                    "status": "not measured on this hardware",
                    "texts_per_s": None,
                    "usd_per_million": None,
                }
            )
        for i, sweep in measured:
            used.add(i)
            rows.append(_measured_row(sweep, item))
    for i, sweep in enumerate(sweeps):
        if i not in used:
            rows.append(_measured_row(sweep, None))
    return rows


def _measured_row(sweep: dict, item: dict | None) -> dict:
    knee, target = sweep.get("knee"), sweep["target"]
    row = {
        "instance": item["name"] if item else sweep.get("hardware", "unknown"),
        "description": item.get("description", "") if item else sweep.get("machine", ""),
        "usd_per_hour": item["usd_per_hour"] if item else None,
        "verified": item.get("verified", False) if item else None,
        "workload": f"{target['model']} via {target['protocol']}, {target['texts_per_request']} text(s)/request",
        "slo_ms": sweep["slo_ms"],
        "date": sweep.get("date", ""),
        "texts_per_s": knee["texts_per_s"] if knee else None,
        "users": knee["users"] if knee else None,
        "p95_ms": knee["p95_ms"] if knee else None,
    }
    if not knee:
        row.update(status=f"measured: no step met p95 ≤ {sweep['slo_ms']:g} ms without failures", usd_per_million=None)
    elif item is None:
        row.update(status="measured, but this hardware has no price in the list", usd_per_million=None)
    else:
        row.update(status="measured", usd_per_million=usd_per_million(item["usd_per_hour"], knee["texts_per_s"]))
    return row


def markdown(rows: list[dict], prices: dict, sweep_paths: list[str]) -> str:
    lines = [
        f"Prices: on-demand, {prices.get('region', '?')}, {prices.get('currency', 'USD')}, copied "
        f"{prices.get('taken', '?')} (sources per row in loadtest/prices.yaml; rows marked † are from memory "
        "and unverified). Throughput: the knee of a sweep measured on that hardware "
        f"({', '.join(sweep_paths) or 'no sweep given'}).",
        "",
        "| instance | $/hour | workload | SLO p95 | texts/s at SLO | $ per million texts | status |",
        "|---|---:|---|---:|---:|---:|---|",
    ]
    for r in rows:
        price = "–" if r["usd_per_hour"] is None else f"{r['usd_per_hour']:.4f}" + ("" if r["verified"] else " †")
        tps = "–" if r.get("texts_per_s") is None else f"{r['texts_per_s']:.1f}"
        cost = "–" if r.get("usd_per_million") is None else f"{r['usd_per_million']:.2f}"
        slo = f"{r['slo_ms']:g} ms" if r.get("slo_ms") else "–"
        lines.append(
            f"| {r['instance']} | {price} | {r.get('workload', '–')} | {slo} | {tps} | {cost} | {r['status']} |"
        )
    return "\n".join(lines) + "\n"


def newest_sweep(folder: Path) -> Path:
    """The sweep folder under `folder` with the newest sweep.json, whether make loadtest or
    make loadtest-local wrote it."""
    found = sorted(Path(folder).glob("*/sweep.json"), key=lambda path: path.stat().st_mtime)
    if not found:
        raise ValueError(
            f"no sweep in {folder}/: run make loadtest (or make loadtest-local) first, or name one with SWEEPS="
        )
    return found[-1].parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", nargs="*", help="sweep directories or sweep.json files")
    parser.add_argument("--prices", default=str(DEFAULT_PRICES))
    parser.add_argument("--out", help="also write the markdown here")
    parser.add_argument("--newest-in", type=Path, help="without sweeps named: price the newest sweep in this folder")
    parser.add_argument("--beside", action="store_true", help="also write cost.md next to the first sweep")
    args = parser.parse_args(argv)
    try:
        if not args.sweeps and args.newest_in:
            args.sweeps = [str(newest_sweep(args.newest_in))]
        sweeps = [load_sweep(p) for p in args.sweeps]
        prices = load_prices(args.prices)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = markdown(cost_rows(sweeps, prices), prices, args.sweeps)
    print(text)
    beside = Path(args.sweeps[0]) if args.beside and args.sweeps else None
    if beside is not None:
        (beside if beside.is_dir() else beside.parent).joinpath("cost.md").write_text(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
