"""finsent: classify text, score files, run the REST gateway.

    finsent classify "Profit rose 12%." "Shares fell."      # or one text per line on stdin; --json
    finsent score news.parquet -o scored.parquet --column headline
    finsent classify --document < filing.txt                # sentence by sentence; score --documents for files
    finsent aggregate scored.parquet --by ticker,date        # count, mean/std of net, shares per group
    finsent score news.parquet -o part-3.parquet --shard 3/8    # one of 8 workers; then finsent merge
    finsent gateway --host 0.0.0.0 --port 8080 --triton localhost:8001
    finsent models | finsent health | finsent model          # model: the one used when none is named
    finsent serve [python -m server arguments]               # from a finsent checkout

Triton's address: --url (default $FINSENT_URL, else localhost:8001 for gRPC / localhost:8000 for HTTP).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from finsent.access import KEY_FILE_ENV
from finsent.address import DEFAULT_URLS, GATEWAY_PORT
from finsent.bulk.errors import ScoreError
from finsent.cli_files import add_file_commands
from finsent.cli_options import MODEL_DEFAULT_HELP, add_connection, grpc_address, make_client, need
from finsent.core import log
from finsent.errors import FinsentError
from finsent.results import Failure


def cmd_classify(args) -> int:
    if args.document:
        return classify_documents(args)
    texts = args.texts or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise ScoreError("no text given: pass texts as arguments, or one per line on stdin")
    with make_client(args) as client:
        results = client.classify(texts, on_error="return")
    failed = sum(isinstance(r, Failure) for r in results)
    if args.json:
        rows = [
            {"text": t, "error": r.message} if isinstance(r, Failure) else {"text": t, **r.as_dict()}
            for t, r in zip(texts, results)
        ]
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 1 if failed else 0
    labels = client.info.labels
    width = min(60, max([4, *(len(t) for t in texts)]))
    print(f"{'text':<{width}}  {'label':<8}  {'score':>6}  " + "  ".join(f"{l[:8]:>8}" for l in labels) + "     net")
    for text, r in zip(texts, results):
        shown = text if len(text) <= width else text[: width - 1] + "…"
        if isinstance(r, Failure):
            print(f"{shown:<{width}}  error: {r.reason}")
        else:
            print(
                f"{shown:<{width}}  {r.label:<8}  {r.score:6.3f}  "
                + "  ".join(f"{r.probabilities[l]:8.3f}" for l in labels)
                + f"  {r.net:+6.3f}"
            )
    return 1 if failed else 0


def classify_documents(args) -> int:
    """--document: each argument is a document (or all of stdin is one); its verdict, then its sentences."""
    documents = args.texts or [sys.stdin.read()]
    with make_client(args) as client:
        results = client.classify_documents(documents, on_error="return")
    failed = sum(isinstance(r, Failure) for r in results)
    if args.json:
        print(
            json.dumps(
                [{"error": r.message} if isinstance(r, Failure) else r.as_dict() for r in results],
                indent=2,
                ensure_ascii=False,
            )
        )
        return 1 if failed else 0
    for i, r in enumerate(results):
        if isinstance(r, Failure):
            print(f"document {i}: error: {r.reason}")
            continue
        print(
            f"document: {r.sentence_count} sentences, {r.label} ({r.score:.3f}), net {r.net:+.3f}, "
            f"negative {r.negative_share:.0%}, positive {r.positive_share:.0%}"
        )
        print(f"  {'start-end':<13} {'label':<8} {'net':>6}  sentence")
        for s in r.sentences:
            text = " ".join(s.text.split())
            print(
                f"  {f'{s.start}-{s.end}':<13} {s.label:<8} {s.net:+6.3f}  {text if len(text) <= 70 else text[:69] + '…'}"
            )
    return 1 if failed else 0


MODELS_HELP = (
    "list the server's models and their state; where Triton restricts its repository index to an admin "
    "key (as make serve and the k8s chart run it), the finsent ensembles (finbert, distilbert, --model), "
    "their steps and document models, from the metadata any caller may read: READY, or UNAVAILABLE for "
    "one not loaded or not in the repository (without the index the two look alike)"
)


def cmd_models(args) -> int:
    with make_client(args) as client:
        for m in client.models():
            print(f"{m.name:<28} {m.version or '-':>3}  {m.state}{'  ' + m.reason if m.reason else ''}")
    return 0


def cmd_model(args) -> int:
    with make_client(args) as client:
        print(client.resolve())
    return 0


def cmd_health(args) -> int:
    with make_client(args) as client:
        health = client.health()
    print(json.dumps(health.__dict__ | {"ok": health.ok}))
    return 0 if health.ok else 1


def cmd_gateway(args) -> int:
    need("gateway", "starlette", "uvicorn")
    from finsent.access import ApiKeys
    from finsent.gateway import Settings, serve

    settings = Settings(
        triton=args.triton,
        model=args.model,
        api_key=args.api_key or None,
        api_key_file=args.api_key_file or None,
        rate_limit=args.rate_limit,
        rate_burst=args.rate_burst,
        max_items=args.max_items,
        max_body_bytes=args.max_body_bytes,
        timeout_s=args.timeout,
    )
    try:
        access = ApiKeys(settings.api_key, settings.api_key_file).describe()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    limit = f"; at most {settings.rate_limit:g} requests/s per key" if settings.rate_limit else ""
    print(
        f"finsent gateway on http://{args.host}:{args.port} -> Triton gRPC {args.triton} "
        f"(model {args.model or 'the one served'}; {access}{limit})",
        flush=True,
    )
    serve(settings, args.host, args.port, args.log_level)
    return 0


def cmd_serve(server_args: list[str]) -> int:
    # The launcher is the checkout's `server` package, not part of this client package: run it as
    # its own program (`python -m server` in the checkout) rather than importing it from here.
    if not os.path.isfile(os.path.join("server", "__main__.py")):
        print(
            "error: `finsent serve` runs the local launcher of a finsent checkout (`make serve`); "
            "run it from the repository root",
            file=sys.stderr,
        )
        return 2
    os.execv(sys.executable, [sys.executable, "-m", "server", *server_args])


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="finsent", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = root.add_subparsers(dest="command", required=True)

    p = sub.add_parser("classify", help="classify texts given as arguments or one per line on stdin")
    p.add_argument("texts", nargs="*")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--document",
        action="store_true",
        help="each argument (or all of stdin) is a document: its verdict and a table of its sentences",
    )
    add_connection(p)
    p.set_defaults(run=cmd_classify)

    add_file_commands(sub)

    for name, run, text in (
        ("models", cmd_models, MODELS_HELP),
        ("health", cmd_health, "server live/ready and the model ready (exit 1 if not)"),
        (
            "model",
            cmd_model,
            f"print the model used when none is named ({MODEL_DEFAULT_HELP}), e.g. for curl or perf_analyzer",
        ),
    ):
        p = sub.add_parser(name, help=text.split(";")[0], description=text)
        add_connection(p)
        p.set_defaults(run=run)

    p = sub.add_parser("gateway", help="run the REST gateway (Starlette + uvicorn, async gRPC to Triton)")
    p.add_argument(
        "--host",
        default=os.environ.get("GATEWAY_HOST", "127.0.0.1"),
        help="bind address (default $GATEWAY_HOST, else 127.0.0.1; 0.0.0.0 in a container)",
    )
    p.add_argument("--port", type=int, default=int(os.environ.get("GATEWAY_PORT", GATEWAY_PORT)))
    p.add_argument(
        "--triton",
        default=os.environ.get("TRITON_URL", DEFAULT_URLS["grpc"]),
        type=grpc_address,
        help=f"Triton gRPC address (default $TRITON_URL, else {DEFAULT_URLS['grpc']})",
    )
    p.add_argument(
        "-m",
        "--model",
        default=os.environ.get("FINSENT_MODEL") or None,
        help=f"model of POST / and /readyz ({MODEL_DEFAULT_HELP}, chosen at the first request)",
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("FINSENT_API_KEY"),
        help="require this key in header X-API-Key or Authorization: Bearer (default $FINSENT_API_KEY; unset: no auth)",
    )
    p.add_argument(
        "--api-key-file",
        default=os.environ.get(KEY_FILE_ENV),
        help="or any key in this file, one per line, re-read when it changes: a mounted Secret rotates "
        f"without a restart (default ${KEY_FILE_ENV})",
    )
    p.add_argument(
        "--rate-limit",
        type=float,
        default=float(os.environ.get("FINSENT_RATE_LIMIT") or 0),
        help="requests/s per API key, over it 429 with Retry-After (default $FINSENT_RATE_LIMIT, else 0: no limit)",
    )
    p.add_argument(
        "--rate-burst", type=float, default=None, help="requests at once per key (default: 1 s of --rate-limit)"
    )
    p.add_argument("--max-items", type=int, default=256, help="texts per request (default 256)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="request body size (default 1 MiB)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per request, retries included (default 10)")
    p.add_argument("--log-level", default="info")
    p.set_defaults(run=cmd_gateway)

    p = sub.add_parser("serve", help="export and serve the models locally (python -m server; from a checkout)")
    p.add_argument("server_args", nargs="*", help="arguments for python -m server (see its --help)")
    return root


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # everything after `serve` belongs to python -m server
        return cmd_serve(argv[1:])
    args = parser().parse_args(argv)
    if args.command != "gateway":  # the client's notes ("waiting for Triton ...") on stderr
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    try:
        return args.run(args)
    except FinsentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ScoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; `finsent score` resumes where it stopped when run again", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
