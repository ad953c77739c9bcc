"""The Makefile stays thin: every knob it reads is documented, `make help` is short; `make test-fast`
leaves out what needs a server (tests/conftest.py marks it `triton`) and keeps the rest."""

import re
import subprocess
import sys
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
    for target in ("serve", "test", "test-fast", "finetune", "eval", "repository", "loadtest", "bench", "gateway"):
        assert f"make {target}" in out


def collected(*args: str) -> set[str]:
    """The test ids `pytest --collect-only` selects with these arguments."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line for line in out.splitlines() if "::" in line}


def test_test_fast_leaves_out_every_test_that_reaches_a_server():
    assert (
        '-m "not triton"'
        in subprocess.run(["make", "-n", "test-fast"], cwd=ROOT, capture_output=True, text=True).stdout
    )
    files = [
        "tests/client/test_client.py",
        "tests/client/test_address.py",
        "tests/model_repository/test_classes.py",
        "tests/server/test_main.py",
    ]
    everything, fast = collected(*files), collected("-m", "not triton", *files)
    left_out = everything - fast
    # A server fixture, directly or through another fixture (restricted_triton: exports, checkpoints).
    assert "tests/client/test_client.py::test_health_models_and_model_info" in left_out
    assert "tests/client/test_client.py::test_a_restricted_api_is_refused_at_once_and_named" in left_out
    # A parameter naming the server fixture the test asks for (request.getfixturevalue).
    assert (
        "tests/model_repository/test_classes.py::test_a_background_backlog_does_not_hold_back_an_interactive_text[triton]"
        in left_out
    )
    # No server: kept, a parameter that only looks like a fixture's name included.
    assert "tests/client/test_address.py::test_the_address_is_checked_when_the_client_is_made" in fast
    assert (
        "tests/server/test_main.py::test_default_variant_follows_where_the_classifier_runs[container-cpu-True-int8-False]"
        in fast
    )
    assert not [test for test in left_out if test.startswith("tests/server/test_main.py")]
