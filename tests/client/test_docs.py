"""The docs say what the client retries as the code does it (issue 17: errors.md said "not retried"
for the two errors of a model being repaired, which client.md and core.TRANSIENT retry)."""

from pathlib import Path

from finsent.core import TRANSIENT

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_errors_md_and_client_md_agree_with_the_code_on_what_is_retried():
    rows = [
        line
        for line in (DOCS / "errors.md").read_text().splitlines()
        if line.startswith("| ") and any(error in line for error in TRANSIENT)
    ]
    assert len(rows) == len(TRANSIENT)
    for row in rows:
        assert row.split("|")[3].strip().startswith("retried"), row
    client = " ".join((DOCS / "client.md").read_text().split())
    assert all(f"`... {error}`" in client for error in TRANSIENT)
