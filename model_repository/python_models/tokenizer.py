"""Triton Python model: TEXT -> input_ids, attention_mask[, token_type_ids].

Copied to <family>_tokenizer/1/model.py by model_repository/assemble.py, next to the
export's tokenizer.json and model_facts.json.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

from text_input import decode

# Text past this many characters per token of max length cannot reach the classifier:
# cutting it (at a space) first keeps a megabyte text from stalling everyone's batch.
CHARS_PER_TOKEN_BOUND = 16


class TritonPythonModel:
    def initialize(self, args):
        here = Path(args["model_repository"]) / args["model_version"]
        facts = json.loads((here / "model_facts.json").read_text())
        params = json.loads(args["model_config"]).get("parameters", {})
        padding = params.get("padding", {}).get("string_value", "longest")
        self.buckets = [int(b) for b in padding.split(":", 1)[1].split(",")] if padding.startswith("buckets:") else []
        self.max_length = facts["max_length"]
        self.max_chars = self.max_length * CHARS_PER_TOKEN_BOUND
        self.outputs = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in facts["input_names"]]
        self.tokenizer = Tokenizer.from_file(str(here / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length)
        self.specials = self.tokenizer.post_processor.num_special_tokens_to_add(False)  # [CLS] ... [SEP]

    def execute(self, requests):
        texts, spans, errors = [], [], {}
        for i, request in enumerate(requests):
            raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            try:
                decoded = [decode(item, row) for row, item in enumerate(raw)]
            except ValueError as exc:
                errors[i] = str(exc)
                decoded = []
            spans.append((len(texts), len(texts) + len(decoded)))
            texts.extend(self.cut(t) for t in decoded)
        encodings = self.tokenizer.encode_batch(texts) if texts else []
        lengths = [len(e) for e in encodings]
        responses = []
        for i, (start, end) in enumerate(spans):
            blank = next((row for row, n in enumerate(lengths[start:end]) if n <= self.specials), None)
            if i not in errors and blank is not None:  # zero-width spaces, NULs, a lone BOM: nothing to read
                errors[i] = f"TEXT[{blank}] has no token the model can read (only invisible or control characters)"
            if i in errors:
                responses.append(
                    pb_utils.InferenceResponse(error=pb_utils.TritonError(errors[i], pb_utils.TritonError.INVALID_ARG))
                )
                continue
            arrays = self.pad(encodings[start:end], lengths[start:end])
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor(name, arrays[name]) for name in self.outputs]
                )
            )
        return responses

    def cut(self, text):
        if len(text) <= self.max_chars:
            return text
        # Whitespace makes no token: a run of it must not push the words past the cut.
        text = " ".join(text.split())
        if len(text) <= self.max_chars:
            return text
        space = text.rfind(" ", 0, self.max_chars)
        return text[: space if space > 0 else self.max_chars]

    def pad(self, encodings, lengths):
        """Pad one request's rows (of these token counts) to its longest row (or the next length bucket)."""
        width = max(lengths)
        if self.buckets:
            width = next((b for b in self.buckets if b >= width), self.max_length)
        arrays = {name: np.zeros((len(encodings), width), dtype=np.int64) for name in self.outputs}
        fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
        for row, (encoding, length) in enumerate(zip(encodings, lengths)):
            for name in self.outputs:
                arrays[name][row, :length] = getattr(encoding, fields[name])
        return arrays
