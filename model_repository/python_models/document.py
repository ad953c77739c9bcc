"""Triton Python model (BLS): one financial document per row -> its sentences scored by the
family's ensemble, and the document's verdict. Contract and aggregation: docs/documents.md.

Sentences come from sentences.py; one longer than the model's max length is scored in
overlapping windows (tokenizer.json only places the windows). Every sentence goes through the
family's ensemble, in small requests kept a bounded number in flight and interleaved across the
documents of an execute: they batch in its tokenizer and classifier with everyone's texts, and a
megabyte document never queues more than that bound ahead of a short request.
"""

import asyncio
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

from sentences import sentence_spans
from text_input import decode

# The client's wire contract (client/finsent/wire.py, copied next to this file by the assembler): the
# tensor names, BREAKDOWN's version, and the ensemble's refusals for load (a full queue, a queue
# timeout), for which a document is answered UNAVAILABLE, which the clients retry, not INVALID_ARG,
# which names a bad document.
from wire import BREAKDOWN_VERSION, DOCUMENT_OUTPUTS, INPUT, OVERLOADED, backoff

# A sentence request refused for load is retried after 50 ms, doubling to 1 s: the queue it waits
# for drains in classifier runs (~0.1-2 s on CPU), and a document has few requests in flight (2; 8 in the
# background copy on CPU).
OVERLOAD_BACKOFF_S = (0.05, 1.0)


class TritonPythonModel:
    def initialize(self, args):
        here = Path(args["model_repository"]) / args["model_version"]
        facts = json.loads((here / "model_facts.json").read_text())
        params = {k: v["string_value"] for k, v in json.loads(args["model_config"])["parameters"].items()}
        self.ensemble = params["ensemble"]
        self.max_bytes = int(params["max_document_bytes"])
        self.rows_per_request = int(params["sentences_per_request"])
        self.in_flight = int(params["requests_in_flight"])
        self.overload_wait_s = float(params["overload_wait_seconds"])
        self.labels = facts["canonical_labels"]
        self.tokenizer = Tokenizer.from_file(str(here / "tokenizer.json"))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        # Tokens a window may hold: the model's max length less [CLS]/[SEP], less a little for a
        # window that starts inside a word and re-tokenizes a token longer.
        self.window = facts["max_length"] - self.tokenizer.post_processor.num_special_tokens_to_add(False) - 2

    async def execute(self, requests):
        documents, errors = [], {}  # documents: (request, row, text, sentence spans)
        for i, request in enumerate(requests):
            for row, item in enumerate(pb_utils.get_input_tensor_by_name(request, INPUT).as_numpy().reshape(-1)):
                try:
                    text = decode(item, row, self.max_bytes)
                    spans = sentence_spans(text)
                    if not spans:
                        raise ValueError(f"TEXT[{row}] has no sentence to score (no letter or digit)")
                except ValueError as exc:
                    errors.setdefault(i, str(exc))
                    continue
                documents.append((i, row, text, spans))
        documents = [d for d in documents if d[0] not in errors]
        pieces = [self.pieces(text, spans) for _, _, text, spans in documents]
        probabilities = await self.score(
            [[text[s:e] for _, (s, e) in p] for (_, _, text, _), p in zip(documents, pieces)]
        )
        results = {}
        for (i, row, text, spans), p, probs in zip(documents, pieces, probabilities):
            if isinstance(probs, str):
                errors.setdefault(i, f"TEXT[{row}]: {probs}")
            else:
                results.setdefault(i, {})[row] = self.verdict(spans, [k for k, _ in p], probs)
        return [
            pb_utils.InferenceResponse(error=pb_utils.TritonError(errors[i], error_code(errors[i])))
            if i in errors
            else self.response([results[i][row] for row in sorted(results[i])])
            for i in range(len(requests))
        ]

    def pieces(self, text, spans):
        """(sentence index, (start, end)) of what is scored: each sentence, or its overlapping
        windows (half a window apart) where it has more tokens than a window holds."""
        out = []
        for k, (s, e) in enumerate(spans):
            if e - s <= self.window:  # a token covers at least one character: it fits
                out.append((k, (s, e)))
                continue
            offsets = self.tokenizer.encode(text[s:e], add_special_tokens=False).offsets
            if len(offsets) <= self.window:
                out.append((k, (s, e)))
                continue
            step = self.window // 2
            starts = list(range(0, len(offsets) - self.window, step)) + [len(offsets) - self.window]
            out.extend((k, (s + offsets[a][0], s + offsets[a + self.window - 1][1])) for a in starts)
        return out

    async def score(self, documents):
        """Each document's [pieces, 3] probabilities from the ensemble, or its error message."""
        limit = asyncio.Semaphore(self.in_flight)

        async def run(texts):
            texts = np.array([t.encode() for t in texts], dtype=np.object_).reshape(-1, 1)
            async with limit:
                # Refused for load (the background queue full, or its timeout): wait and retry, so a
                # document slows down behind a bulk job instead of failing whole after minutes of work.
                loop, waits = asyncio.get_running_loop(), backoff(*OVERLOAD_BACKOFF_S)
                deadline = loop.time() + self.overload_wait_s
                while True:
                    request = pb_utils.InferenceRequest(
                        model_name=self.ensemble,
                        requested_output_names=["PROBABILITIES"],
                        inputs=[pb_utils.Tensor(INPUT, texts)],
                    )
                    response = await request.async_exec()
                    delay = next(waits)
                    refused = response.has_error() and overloaded(response.error().message())
                    if not refused or loop.time() + delay > deadline:
                        break
                    await asyncio.sleep(delay)
            if response.has_error():
                return response.error().message()
            return pb_utils.get_output_tensor_by_name(response, "PROBABILITIES").as_numpy()

        n = self.rows_per_request
        chunks = [[texts[a : a + n] for a in range(0, len(texts), n)] for texts in documents]
        # Round robin over documents: a short one is not queued behind all of a long one.
        order = [
            (d, c) for c in range(max(map(len, chunks), default=0)) for d in range(len(chunks)) if c < len(chunks[d])
        ]
        done = await asyncio.gather(*(run(chunks[d][c]) for d, c in order))
        results = [[None] * len(c) for c in chunks]
        for (d, c), result in zip(order, done):
            results[d][c] = result
        return [next((r for r in parts if isinstance(r, str)), None) or np.concatenate(parts) for parts in results]

    def verdict(self, spans, owners, probs):
        """Sentence probabilities (the mean of a sentence's windows) and the document's (the mean
        over sentences: each statement counts once, however long)."""
        owners = np.asarray(owners)
        windows = np.bincount(owners, minlength=len(spans))
        sentences = np.zeros((len(spans), probs.shape[1]))
        np.add.at(sentences, owners, probs.astype(np.float64))
        sentences /= windows[:, None]
        labels = sentences.argmax(axis=1)
        document = sentences.mean(axis=0)
        net = sentences[:, 2] - sentences[:, 0]
        breakdown = {
            "version": BREAKDOWN_VERSION,
            "sentences": [
                {
                    "start": s,
                    "end": e,
                    "label": self.labels[label],
                    "probabilities": [round(float(p), 6) for p in probs_],
                    "net": round(float(n), 6),
                    "windows": int(w),
                }
                for (s, e), label, probs_, n, w in zip(spans, labels, sentences, net, windows)
            ],
        }
        return {
            "LABEL": self.labels[int(document.argmax())].encode(),
            "SCORE": document.max(),
            "PROBABILITIES": document,
            "NET": document[2] - document[0],
            "SENTENCES": len(spans),
            "NEGATIVE_SHARE": float(np.mean(labels == 0)),
            "POSITIVE_SHARE": float(np.mean(labels == 2)),
            "BREAKDOWN": json.dumps(breakdown, separators=(",", ":")).encode(),
        }

    def response(self, rows):
        types = {"LABEL": np.object_, "BREAKDOWN": np.object_, "SENTENCES": np.int32}
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor(
                    name, np.array([r[name] for r in rows], dtype=types.get(name, np.float32)).reshape(len(rows), -1)
                )
                for name in DOCUMENT_OUTPUTS
            ]
        )


def overloaded(message):
    return any(refusal in message for refusal in OVERLOADED)


def error_code(message):
    return pb_utils.TritonError.UNAVAILABLE if overloaded(message) else pb_utils.TritonError.INVALID_ARG
