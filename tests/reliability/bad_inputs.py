"""The bad-input corpus: every way a request to an ensemble can be wrong, and the answer it gets.

One row per case: (name, protocol, request, expected status, message pattern). `request` is the
raw HTTP/JSON body for protocol "http" (model in "model", default finbert), or (model, TEXT rows,
datatype) for "grpc". docs/errors.md is the same table in words.
"""

from __future__ import annotations

MB = 1 << 20


def text_input(data, shape=None, datatype="BYTES", name="TEXT"):
    return {"name": name, "datatype": datatype, "shape": shape or [len(data), 1], "data": data}


CASES = [
    # name, protocol, request, status, message (regex)
    ("empty string", "http", {"inputs": [text_input([""])]}, 400, r"TEXT\[0\] is empty or whitespace only"),
    ("whitespace only", "http", {"inputs": [text_input([" \t\n "])]}, 400, r"TEXT\[0\] is empty or whitespace only"),
    (
        "one bad row of three",
        "http",
        {"inputs": [text_input(["Profit rose.", "", "Shares fell."])]},
        400,
        r"TEXT\[1\] is empty",
    ),
    (
        "only invisible characters",
        "http",
        {"inputs": [text_input(["\u200b\u200b\ufeff"])]},
        400,
        r"TEXT\[0\] has no token the model can read",
    ),
    (
        "invalid UTF-8",
        "grpc",
        ("finbert", [b"Profit \xff\xfe rose"], "BYTES"),
        "INVALID_ARGUMENT",
        r"TEXT\[0\] is not valid UTF-8 \(byte 7",
    ),
    (
        "invalid UTF-8, second row",
        "grpc",
        ("distilbert", [b"fine", b"\xc3\x28"], "BYTES"),
        "INVALID_ARGUMENT",
        r"TEXT\[1\] is not valid UTF-8",
    ),
    (
        "wrong datatype FP32",
        "http",
        {"inputs": [text_input([1.5], datatype="FP32")]},
        400,
        r"inference input 'TEXT' data-type is 'FP32', but model 'finbert' expects 'BYTES'",
    ),
    (
        "wrong datatype INT32",
        "grpc",
        ("finbert", [1, 2], "INT32"),
        "INVALID_ARGUMENT",
        r"inference input 'TEXT' data-type is 'INT32', but model 'finbert' expects 'BYTES'",
    ),
    (
        "wrong shape: no batch dimension",
        "http",
        {"inputs": [text_input(["Profit rose."], shape=[1])]},
        400,
        r"unexpected shape for input 'TEXT'",
    ),
    (
        "wrong shape: two texts per row",
        "http",
        {"inputs": [text_input(["a", "b"], shape=[1, 2])]},
        400,
        r"unexpected shape for input 'TEXT'",
    ),
    (
        "shape and data disagree",
        "http",
        {"inputs": [text_input(["only one"], shape=[2, 1])]},
        400,
        r"expected 2 string elements for inference input 'TEXT' for model 'finbert', got 1",
    ),
    ("missing TEXT", "http", {"inputs": []}, 400, r"expected 1 inputs but got 0 inputs for model 'finbert'"),
    (
        "wrong input name",
        "http",
        {"inputs": [text_input(["Profit rose."], name="TEXTS")]},
        400,
        r"unexpected inference input 'TEXTS' for model 'finbert'",
    ),
    (
        "65 texts (max batch 64)",
        "http",
        {"inputs": [text_input(["Profit rose."] * 65)]},
        400,
        r"inference request batch-size must be <= 64 for 'finbert'",
    ),
    (
        "unknown model",
        "http",
        {"model": "gpt", "inputs": [text_input(["Profit rose."])]},
        404,
        r"Request for unknown model: 'gpt' is not found",
    ),
    (
        "unknown model, gRPC",
        "grpc",
        ("gpt", [b"Profit rose."], "BYTES"),
        "NOT_FOUND",
        r"Request for unknown model: 'gpt' is not found",
    ),
    (
        "unknown output",
        "http",
        {"inputs": [text_input(["Profit rose."])], "outputs": [{"name": "EMBEDDINGS"}]},
        400,
        r"unexpected inference output 'EMBEDDINGS' for model 'finbert'",
    ),
    # Triton answers 500 here (its HTTP frontend's choice); the gateway answers 400.
    ("body is not JSON", "http", b"TEXT=Profit rose.", 500, r"failed to parse the request JSON buffer"),
    ("JSON without inputs", "http", {}, 500, r"Unable to parse 'inputs'"),
    # Not errors: served, truncated to the model's max_length tokens (ensemble config parameter).
    ("1 MB text", "http", {"inputs": [text_input(["Profit rose. " * (MB // 13)])]}, 200, None),
    ("1 MB without a space", "http", {"inputs": [text_input(["x" * MB])]}, 200, None),
    ("1 MB of spaces, then a sentence", "http", {"inputs": [text_input([" " * MB + "Profit rose."])]}, 200, None),
    ("64 texts (max batch)", "http", {"inputs": [text_input(["Profit rose."] * 64)]}, 200, None),
]

# The gateway (default limits: 1 MiB body, 256 texts): (name, path, body, status, message).
GATEWAY_CASES = [
    ("not JSON", "/", b"text=Profit rose.", 400, "not valid JSON"),
    ("truncated JSON", "/v1/classify", b'{"texts": ["Profit', 400, "not valid JSON"),
    ("body over 1 MiB", "/", b'[{"text": "' + b"x" * MB + b'"}]', 413, "over the limit"),
    ("257 texts", "/v1/classify", {"texts": ["Profit rose."] * 257}, 413, "over the limit of 256"),
    ("a 900 kB text (under the body limit)", "/", [{"text": "Profit rose. " * 70000}], 200, None),
    ("whitespace text", "/v1/classify", {"texts": ["ok", " "]}, 422, "item 1: text is empty or whitespace only"),
]
