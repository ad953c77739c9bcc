import json
import shutil

import numpy as np
import pytest

from export.optimize import REPORT_FILENAME, GuardError, build_variants
from export.runtime import OnnxClassifier
from export.sentences import PARITY_SENTENCES
from model_repository.assemble import TargetOptions, assemble
from server.triton import Ports, TritonServer, free_ports
from tests.model_repository.test_ensemble import infer


@pytest.fixture(scope="module")
def variants(exports, tmp_path_factory):
    """Copies of both exports with int8 and fp16 variants built and guarded."""
    out = {}
    for family, path in exports.items():
        copy = shutil.copytree(path, tmp_path_factory.mktemp("variants") / family)
        build_variants(copy, ["int8", "fp16"], guard_limit=200, min_agreement=0.0, log=lambda *_: None)
        out[family] = copy
    return out


def test_variants_are_built_guarded_and_cached(variants):
    report = json.loads((variants["finbert"] / REPORT_FILENAME).read_text())
    assert set(report) == {"int8", "fp16"}
    for variant in ("int8", "fp16"):
        assert (variants["finbert"] / f"model.{variant}.onnx").exists()
        assert 0.0 <= report[variant]["agreement"] <= 1.0 and report[variant]["passed"]
    assert (variants["finbert"] / "model.int8.onnx").stat().st_size < (variants["finbert"] / "model.onnx").stat().st_size
    assert not (variants["finbert"] / "model.fused.onnx").exists()          # intermediate removed
    messages = []
    build_variants(variants["finbert"], ["int8"], guard_limit=200, min_agreement=0.0, log=messages.append)
    assert messages == ["[finbert] int8 variant cached (agreement {:.2%})".format(report["int8"]["agreement"])]


def test_fp16_stays_close_to_fp32(variants):
    fp32 = OnnxClassifier(variants["distilbert"], "fp32").probabilities(PARITY_SENTENCES)
    fp16 = OnnxClassifier(variants["distilbert"], "fp16").probabilities(PARITY_SENTENCES)
    np.testing.assert_allclose(fp16, fp32, atol=5e-3)


def test_a_variant_below_the_agreement_limit_is_refused_and_removed(exports, tmp_path):
    copy = shutil.copytree(exports["distilbert"], tmp_path / "d")
    with pytest.raises(GuardError, match="int8 variant refused"):
        build_variants(copy, ["int8"], guard_limit=50, min_agreement=1.01, log=lambda *_: None)
    assert not (copy / "model.int8.onnx").exists()
    assert json.loads((copy / REPORT_FILENAME).read_text())["int8"]["passed"] is False


def test_served_int8_matches_in_process_int8(variants, tmp_path):
    repository = assemble(variants, tmp_path / "repo", TargetOptions("local", variant="int8"))
    facts = json.loads((repository / "finbert_classifier" / "1" / "model_facts.json").read_text())
    assert facts["variant"] == "int8"
    local = {family: OnnxClassifier(path, "int8") for family, path in variants.items()}
    with TritonServer(repository, Ports(*free_ports()), work_dir=tmp_path / "w", log_path=tmp_path / "w" / "log") as server:
        for family in variants:
            for text in PARITY_SENTENCES[:4]:   # one text per request: dynamic int8 depends on the batch
                _, _, probs = infer(server, "grpc", family, [text])
                np.testing.assert_allclose(probs, local[family].probabilities([text]), atol=1e-5)


def test_reproducible_int8_does_not_depend_on_the_texts_batched_with_it(variants, tmp_path):
    from tests.model_repository.test_ensemble import MANY
    local = OnnxClassifier(variants["finbert"], "int8")
    alone = np.concatenate([local.probabilities([text]) for text in MANY])
    together = local.probabilities(MANY, batch_size=len(MANY))
    assert np.abs(together - alone).max() > 1e-4        # the effect: one activation scale per run
    options = TargetOptions("local", variant="int8", max_rows_per_run=1)      # make serve REPRODUCIBLE=1
    repository = assemble({"finbert": variants["finbert"]}, tmp_path / "repo", options)
    with TritonServer(repository, Ports(*free_ports()), work_dir=tmp_path / "w", log_path=tmp_path / "w" / "log") as server:
        _, _, probs = infer(server, "grpc", "finbert", MANY)
    np.testing.assert_allclose(probs, alone, atol=1e-5)
