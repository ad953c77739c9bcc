"""The wire contract (finsent/wire.py) is the one statement of the tensor names and BREAKDOWN's
version: the configs serve it, the document model imports it in Triton's Python stub, the docs say it."""

from __future__ import annotations

import ast
from pathlib import Path

from finsent import wire
from model_repository.assemble import DOCUMENT, HELPERS, PYTHON_MODELS, load_config, source_config

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("INPUT", "OUTPUTS", "LOGITS", "DOCUMENT_OUTPUTS", "BREAKDOWN_VERSION", "OVERLOADED")


def test_the_ensemble_config_serves_the_wire_names():
    config = load_config(source_config(None))
    assert [i.name for i in config.input] == [wire.INPUT]
    assert tuple(o.name for o in config.output) == (*wire.OUTPUTS, wire.LOGITS)


def test_the_document_config_serves_the_wire_names_and_breakdown_version():
    path = source_config(DOCUMENT)
    config = load_config(path)
    assert [i.name for i in config.input] == [wire.INPUT]
    assert tuple(o.name for o in config.output) == wire.DOCUMENT_OUTPUTS
    assert f"BREAKDOWN (JSON, version {wire.BREAKDOWN_VERSION}:" in " ".join(path.read_text().replace("#", "").split())
    assert f"`BREAKDOWN`, version {wire.BREAKDOWN_VERSION} " in (ROOT / "docs" / "documents.md").read_text()


def test_the_document_model_takes_the_contract_from_wire_and_restates_none_of_it():
    tree = ast.parse((PYTHON_MODELS / "document.py").read_text())
    imported = {a.name for n in tree.body if isinstance(n, ast.ImportFrom) and n.module == "wire" for a in n.names}
    assert {"BREAKDOWN_VERSION", "DOCUMENT_OUTPUTS", "INPUT", "OVERLOADED"} <= imported
    assigned = {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert not assigned & set(NAMES)
    # The assembler copies wire.py next to it, as it does its sibling modules.
    assert Path(wire.__file__) in HELPERS[DOCUMENT]


def test_wire_imports_nothing_so_the_python_stub_can_import_it():
    # Triton's Python stub has no finsent installed: the copy must stand alone.
    tree = ast.parse(Path(wire.__file__).read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
