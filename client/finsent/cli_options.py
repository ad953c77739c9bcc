"""What the finsent CLI's commands share: Triton's address and model options, the client they make,
argument types, and the message for an optional extra that is not installed."""

from __future__ import annotations

import argparse
import os

from finsent.address import DEFAULT_URLS, split_url
from finsent.bulk.errors import ScoreError
from finsent.client import Client
from finsent.core import DEFAULT_MODEL, Retry

MODEL_DEFAULT_HELP = (
    f"default $FINSENT_MODEL, else the finsent ensemble the server serves ({DEFAULT_MODEL} when it serves several)"
)


def add_connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("FINSENT_URL"),
        help=f"Triton address host:port (default $FINSENT_URL, else {DEFAULT_URLS['grpc']} gRPC / {DEFAULT_URLS['http']} HTTP)",
    )
    parser.add_argument("--protocol", choices=("grpc", "http"), default=os.environ.get("FINSENT_PROTOCOL", "grpc"))
    parser.add_argument(
        "-m", "--model", default=os.environ.get("FINSENT_MODEL") or None, help=f"ensemble name ({MODEL_DEFAULT_HELP})"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default 30)")
    parser.add_argument(
        "--retries", type=int, default=7, help="retries when Triton is unreachable (default 7: 8-16 s of backoff)"
    )


def make_client(args, patient: bool = False, **kw) -> Client:
    """patient: retry an overloaded server without limit (finsent score slows down, never fails for load)."""
    try:
        return Client(
            args.url or DEFAULT_URLS[args.protocol],
            args.protocol,
            args.model,
            timeout_s=args.timeout,
            retry=Retry(attempts=args.retries, patient=patient),
            **kw,
        )
    except ValueError as exc:  # an address that is not host:port: said before any connection is tried
        raise ScoreError(str(exc)) from None


def at_least_one(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number, 1 or more, got {value!r}")
    return number


def grpc_address(url: str) -> str:
    try:
        return split_url(url, "grpc")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def need(extra: str, *modules: str) -> None:
    """A clear message when an optional extra of the package is not installed."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ScoreError(
            f"this command needs {', '.join(missing)}: pip install 'finsent-client[{extra}]' "
            f"(from a checkout: pip install './client[{extra}]')"
        )
