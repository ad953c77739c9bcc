"""One TEXT element as str, or ValueError naming the row: what the Python models that read TEXT
(tokenizer, document) share. Copied next to their model.py by model_repository/assemble.py."""


def decode(item, row, max_bytes=None):
    if not isinstance(item, bytes):
        item = str(item).encode()
    if max_bytes is not None and len(item) > max_bytes:
        raise ValueError(
            f"TEXT[{row}] is {len(item):,} bytes: a document may have at most {max_bytes:,} (max_document_bytes)"
        )
    try:
        text = item.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"TEXT[{row}] is not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
    if not text.strip():
        raise ValueError(f"TEXT[{row}] is empty or whitespace only")
    return text
