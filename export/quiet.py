"""Library warnings a newcomer reads past on every export, each harmless here (the reason is next
to it), silenced where finsent triggers them so that the warnings that matter stand out."""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings

# logger -> the start of the message dropped from it, and why it is harmless here.
KNOWN = {
    # A BERT WordPiece vocabulary loaded as DistilBERT's tokenizer on purpose (fine-tuning MiniLM,
    # random checkpoints): the same vocabulary; DistilBERT's only drops token_type_ids.
    "transformers.tokenization_utils_base": "The tokenizer class you load from this checkpoint",
    # optimum's tied-weight deduplication needs accelerate; a classifier ties no weights to dedupe,
    # and the parity check compares every export with PyTorch anyway.
    "optimum.exporters.onnx.base": "Weight deduplication check in the ONNX export requires accelerate",
    # onnxruntime's quantizer suggests shape pre-processing; the accuracy guard measures what
    # the int8 model predicts instead (export.optimize).
    "": "Please consider to run pre-processing before quantization",
}


class _Drop(logging.Filter):
    def __init__(self, start: str):
        super().__init__()
        self.start = start

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.start)


@contextlib.contextmanager
def known_noise_silenced():
    filters = [(logging.getLogger(name or None), _Drop(start)) for name, start in KNOWN.items()]
    for logger, drop in filters:
        logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            if "torch" in sys.modules:
                # The tracer keeps DistilBERT's mask fill value and shape checks as constants: exact for
                # the traced model, which the parity check then compares with PyTorch at every length.
                from torch.jit import TracerWarning

                warnings.filterwarnings("ignore", category=TracerWarning)
            yield
    finally:
        for logger, drop in filters:
            logger.removeFilter(drop)
