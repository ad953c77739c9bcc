"""Documents through Triton: the BLS document model against a client that splits and sends the
sentences itself, side by side in one run -> docs/benchmarks/documents.{md,json}.

    python -m benchmarks.documents [--documents 16] [--rounds 2] [--finbert CHECKPOINT]

Corpus: Financial PhraseBank sentences (detokenized, as written) joined into documents of 20-60
sentences, paragraphs of 3-8; without the data, the project's own parity sentences. Model:
FinBERT's architecture with random weights (BERT-base) unless --finbert, int8 as `make serve`.
Modes, interleaved in rounds (a drifting shared machine falls on both), each with --clients
concurrent callers working through the same documents:
  bls      Client.classify_documents: one request per document to finbert_document
  client   the caller splits with the same splitter (model_repository/python_models/sentences.py),
           sends the sentences with Client.classify (requests of up to 64) and averages them
Then short requests against a long document: --clients single-text callers alone, then while
one document of --long-bytes is scored (p50/p99 of the short ones).
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from benchmarks import runner
from benchmarks.inputs import checkpoint
from benchmarks.markdown import table
from benchmarks.runner import shared_arguments
from benchmarks.splitters import sentences as splitter
from export import fpb
from export.onnx import export_model
from export.optimize import build_variants
from export.runtime import DEFAULT_VARIANT
from export.sentences import PARITY_SENTENCES
from finsent import Client
from model_repository.assemble import TargetOptions
from server import stack


def corpus(n_documents: int, seed: int = 0) -> tuple[list[str], str]:
    path = fpb.shared_file("75")
    pool = [fpb.detokenize(s) for s, _ in fpb.read(path)] if path else list(PARITY_SENTENCES[:-2])
    rng = random.Random(seed)
    documents = []
    for _ in range(n_documents):
        picked = [rng.choice(pool) for _ in range(rng.randint(20, 60))]
        paragraphs, i = [], 0
        while i < len(picked):
            k = rng.randint(3, 8)
            paragraphs.append(" ".join(picked[i : i + k]))
            i += k
        documents.append("\n\n".join(paragraphs))
    return documents, (
        f"Financial PhraseBank 75% agreement sentences, {n_documents} documents of 20-60"
        if path
        else f"the parity sentences (no Financial PhraseBank file), {n_documents} documents of 20-60"
    )


def classifier_counts(server, family: str) -> tuple[int, int]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        s = client.get_inference_statistics(f"{family}_classifier")["model_stats"][0]
        return int(s["inference_count"]), int(s["execution_count"])
    finally:
        client.close()


def by_bls(url: str, family: str, documents: list[str], clients: int) -> int:
    with Client(url, model=family, timeout_s=600, max_in_flight=clients) as client:
        return sum(d.sentence_count for d in client.classify_documents(documents))


def by_client(url: str, family: str, documents: list[str], clients: int) -> int:
    def one(client, text):
        spans = splitter.sentence_spans(text)
        predictions = client.classify([text[s:e] for s, e in spans])
        np.mean([[p.probabilities[l] for l in ("negative", "neutral", "positive")] for p in predictions], axis=0)
        return len(spans)

    with Client(url, model=family, timeout_s=600, max_in_flight=4) as client, ThreadPoolExecutor(clients) as pool:
        return sum(pool.map(lambda text: one(client, text), documents))


MODES = {"bls": by_bls, "client": by_client}


def short_latencies(url: str, family: str, clients: int, until) -> list[float]:
    """Single-text requests from `clients` threads until until() is true: their latencies (ms)."""
    out, lock = [], threading.Lock()

    def caller():
        with Client(url, model=family) as client:
            while not until():
                began = time.perf_counter()
                client.classify(["Operating profit rose to EUR 13.1 mn from EUR 8.7 mn."])
                with lock:
                    out.append((time.perf_counter() - began) * 1000)

    threads = [threading.Thread(target=caller) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def long_document(documents: list[str], n_bytes: int) -> str:
    """The documents joined (again and again) into one of n_bytes (a filing, a transcript)."""
    long = ""
    while len(long.encode()) < n_bytes:
        long += "\n\n".join(documents) + "\n\n"
    return long.encode()[:n_bytes].decode(errors="ignore")


def starvation(server, family: str, documents: list[str], clients: int, long_bytes: int, baseline_s: float) -> dict:
    long = long_document(documents, long_bytes)
    ends = time.monotonic() + baseline_s
    alone = short_latencies(server.grpc_url, family, clients, lambda: time.monotonic() > ends)
    done, result = threading.Event(), {}

    def score():
        began = time.perf_counter()
        result["sentences"] = by_bls(server.grpc_url, family, [long], 1)
        result["seconds"] = time.perf_counter() - began
        done.set()

    thread = threading.Thread(target=score)
    thread.start()
    during = short_latencies(server.grpc_url, family, clients, done.is_set)
    thread.join()
    pct = lambda xs, q: float(np.percentile(xs, q))
    return {
        "long_bytes": len(long.encode()),
        "long_sentences": result["sentences"],
        "long_seconds": result["seconds"],
        "short_alone": {"requests": len(alone), "p50_ms": pct(alone, 50), "p99_ms": pct(alone, 99)},
        "short_during": {"requests": len(during), "p50_ms": pct(during, 50), "p99_ms": pct(during, 99)},
    }


def markdown(results: dict) -> str:
    s = results["starvation"]
    lines = [
        "# Documents: the BLS document model vs a client that splits itself",
        "",
        f"Run {results['when']} on {results['machine']}; model {results['source']} ({results['variant']}); "
        f"{results['corpus']}; {results['clients']} concurrent callers, {results['rounds']} interleaved rounds "
        "(median). Written by `python -m benchmarks.documents` (see its docstring).",
        "",
        *table(
            ["mode", "documents/s", "sentences/s", "classifier executions", "mean classifier batch"],
            [
                [
                    mode,
                    f"{r['documents_per_s']:.2f}",
                    f"{r['sentences_per_s']:.1f}",
                    r["executions"],
                    f"{r['mean_batch']:.1f}",
                ]
                for mode, r in results["modes"].items()
            ],
        ),
        "",
        f"Short single-text requests ({results['clients']} callers) alone and while one document of "
        f"{s['long_bytes']:,} bytes ({s['long_sentences']} sentences, {s['long_seconds']:.1f} s) is scored:",
        "",
        *table(
            ["short requests", "requests", "p50 ms", "p99 ms"],
            [
                [k.replace("short_", ""), v["requests"], f"{v['p50_ms']:.0f}", f"{v['p99_ms']:.0f}"]
                for k, v in s.items()
                if k.startswith("short_")
            ],
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--finbert", help="checkpoint (default: random-weight BERT-base)")
    parser.add_argument("--variant", default=DEFAULT_VARIANT["cpu"])
    parser.add_argument("--documents", type=int, default=12)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--long-bytes",
        type=int,
        default=100_000,
        help="the long document of the starvation check (1 MB: --long-bytes 1000000, minutes on 2 cores)",
    )
    shared_arguments(parser)
    args = parser.parse_args(argv)
    family = "finbert"
    source = checkpoint(family, args.finbert, args.build)
    export_dir = export_model(source, family, args.build / "export" / family).path
    if args.variant != "fp32":
        build_variants(export_dir, [args.variant], min_agreement=0.0 if not args.finbert else 0.98)
    documents, described = corpus(args.documents)
    server = stack.serve(
        {family: export_dir}, args.build / "documents", TargetOptions("local", cores=args.cores, variant=args.variant)
    )
    try:
        by_bls(server.grpc_url, family, documents[:2], 1)  # warm up both paths
        by_client(server.grpc_url, family, documents[:2], 1)
        runs = {mode: [] for mode in MODES}
        for r in range(args.rounds):
            for mode, run in MODES.items():
                before = classifier_counts(server, family)
                began = time.perf_counter()
                sentences = run(server.grpc_url, family, documents, args.clients)
                seconds = time.perf_counter() - began
                rows, executions = (a - b for a, b in zip(classifier_counts(server, family), before))
                runs[mode].append({"seconds": seconds, "sentences": sentences, "rows": rows, "executions": executions})
                print(
                    f"round {r + 1} {mode}: {len(documents) / seconds:.2f} documents/s, {sentences / seconds:.1f} "
                    f"sentences/s, {rows} rows in {executions} classifier executions",
                    flush=True,
                )
        modes = {
            mode: {
                "documents_per_s": float(np.median([len(documents) / x["seconds"] for x in xs])),
                "sentences_per_s": float(np.median([x["sentences"] / x["seconds"] for x in xs])),
                "executions": int(np.median([x["executions"] for x in xs])),
                "mean_batch": sum(x["rows"] for x in xs) / max(1, sum(x["executions"] for x in xs)),
                "runs": xs,
            }
            for mode, xs in runs.items()
        }
        print("short requests alone, then during a long document ...", flush=True)
        starved = starvation(server, family, documents, args.clients, args.long_bytes, baseline_s=10)
    finally:
        server.stop()
    results = {
        **runner.header(
            args.cores, args.finbert or "random-weight BERT-base (FinBERT's architecture)", args.variant, described
        ),
        "clients": args.clients,
        "rounds": args.rounds,
        "modes": modes,
        "starvation": starved,
    }
    runner.write(args.out, "documents", results, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
