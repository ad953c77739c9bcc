"""A quick demo sweep without `make serve`: tiny random-weight models on a local tritonserver.

    python -m loadtest.local --protocol grpc --users "1 4 16" --step-seconds 5

Builds tiny random-weight BERT and DistilBERT checkpoints (loadtest.random_models, the test
suite's), exports them (cached under build/loadtest-local), starts tritonserver on free loopback ports,
runs loadtest.sweep against it and stops the server. Latencies are those of toy models: they
show the machinery and the serving overhead, not FinBERT's throughput.
"""

from __future__ import annotations

import sys
from pathlib import Path

from export.facts import FAMILIES
from loadtest import sweep
from loadtest.random_models import serve_tiny


def main(argv: list[str] | None = None) -> int:
    parser = sweep.parser(local_models=tuple(FAMILIES))
    parser.description = __doc__
    parser.add_argument("--build", type=Path, default=Path("build/loadtest-local"))
    args = parser.parse_args(argv)
    from finsent.core import DEFAULT_MODEL
    from model_repository.assemble import SOURCE, load_config, source_config

    args.model = args.model or DEFAULT_MODEL  # it serves them all
    # The served ensemble's max_batch_size (the repository assembled below keeps it): larger
    # requests would all be refused by Triton.
    ensemble = source_config(None)
    limit = load_config(ensemble).max_batch_size
    why = (
        (args.host and "--host does not apply: loadtest.local serves on free local ports (loadtest.sweep takes a host)")
        or sweep.problem(args)
        or (
            args.texts_per_request > limit
            and f"--texts-per-request must be at most {limit} (max_batch_size of {ensemble.relative_to(SOURCE.parent)})"
        )
    )
    if why:  # before any export or server start
        parser.error(why)
    server = serve_tiny(args.build)
    try:
        host = server.grpc_url if args.protocol == "grpc" else f"http://{server.http_url}"
        forwarded = _without(list(argv if argv is not None else sys.argv[1:]), "--build")
        if not args.note:
            forwarded += ["--note", "tiny random-weight models (export.random_checkpoint), not real FinBERT/DistilBERT"]
        return sweep.main(forwarded + ["--host", host])
    finally:
        server.stop()


def _without(argv: list[str], flag: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out


if __name__ == "__main__":
    sys.exit(main())
