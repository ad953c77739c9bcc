"""The Makefile stays thin: every knob it reads is documented, `make help` is short."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def knobs() -> list[str]:
    return re.findall(r"^([A-Z][A-Z_]*) \?=", (ROOT / "Makefile").read_text(), flags=re.M)


def test_every_knob_is_documented():
    docs = (ROOT / "README.md").read_text() + "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    undocumented = [k for k in knobs() if f"`{k}`" not in docs and f"{k}=" not in docs]
    assert not undocumented, f"document these make knobs in README.md or docs/: {undocumented}"


def test_help_is_short_and_names_every_served_target():
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert len(out.splitlines()) <= 12
    for target in ("serve", "test", "finetune", "eval", "repository", "loadtest", "bench", "gateway"):
        assert f"make {target}" in out
