import json
import os
import shutil

import numpy as np
import pytest

from export.optimize import REPORT_FILENAME, GuardError, build_variants
from export.runtime import OnnxClassifier
from export.sentences import PARITY_SENTENCES
from model_repository.assemble import TargetOptions
from server import stack
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
    assert (variants["finbert"] / "model.int8.onnx").stat().st_size < (
        variants["finbert"] / "model.onnx"
    ).stat().st_size
    assert not (variants["finbert"] / "model.fused.onnx").exists()  # intermediate removed
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
    server = stack.serve(variants, tmp_path / "w", TargetOptions("local", variant="int8"), started=False)
    facts = json.loads((server.model_repository / "finbert_classifier" / "1" / "model_facts.json").read_text())
    assert facts["variant"] == "int8"
    local = {family: OnnxClassifier(path, "int8") for family, path in variants.items()}
    with server:
        for family in variants:
            for text in PARITY_SENTENCES[:4]:  # one text per request: dynamic int8 depends on the batch
                _, _, probs = infer(server, "grpc", family, [text])
                np.testing.assert_allclose(probs, local[family].probabilities([text]), atol=1e-5)


def test_reproducible_int8_does_not_depend_on_the_texts_batched_with_it(variants, tmp_path):
    from tests.model_repository.test_ensemble import MANY

    local = OnnxClassifier(variants["finbert"], "int8")
    alone = np.concatenate([local.probabilities([text]) for text in MANY])
    together = local.probabilities(MANY, batch_size=len(MANY))
    assert np.abs(together - alone).max() > 1e-4  # the effect: one activation scale per run
    options = TargetOptions("local", variant="int8", max_rows_per_run=1)  # make serve REPRODUCIBLE=1
    with stack.serve({"finbert": variants["finbert"]}, tmp_path / "w", options, started=False) as server:
        _, _, probs = infer(server, "grpc", "finbert", MANY)
    np.testing.assert_allclose(probs, alone, atol=1e-5)


def test_the_guard_runs_batches_of_the_sizes_the_batcher_forms_of_similar_lengths():
    from export.optimize import GUARD_BATCH_SIZES, served_batches

    lengths = np.random.default_rng(1).integers(5, 120, size=1500)
    batches = served_batches(lengths)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1500))  # every row once
    sizes = [len(b) for b in batches]  # each bucket's last batch holds what is left
    assert set(GUARD_BATCH_SIZES) <= set(sizes) and max(sizes) == 64 and 1 in GUARD_BATCH_SIZES
    assert any((np.diff(b) < 0).any() for b in batches)  # not in file order
    buckets = (16, 32, 64, 128)  # the container's, from 16
    for b in batches:  # one padding bucket per batch, as Triton batches only equal shapes there
        assert len({np.searchsorted(buckets, n) for n in lengths[b]}) == 1


def test_the_guard_judges_confident_agreement_and_accuracy_separately():
    from export.optimize import judge

    # 200 sentences: fp32 is confident (0.95) on 150, unsure (0.5) on 50; the labels are fp32's.
    reference = np.array([[0.95, 0.03, 0.02]] * 150 + [[0.5, 0.3, 0.2]] * 50)
    labels = ["negative"] * 200
    unsure_flips = reference.copy()
    unsure_flips[150:152] = [0.3, 0.5, 0.2]  # 2 ambiguous sentences flip: 99.0% agreement overall
    r = judge(reference, unsure_flips, labels)
    assert r["agreement"] == 0.99 and r["confident"] == 150 and r["confident_agreement"] == 1.0
    assert r["accuracy_drop_points"] == pytest.approx(1.0) and not r["passed"]  # but accuracy fell 1 point
    assert judge(reference, unsure_flips, labels, max_accuracy_drop=0.01)["passed"]
    assert judge(reference, unsure_flips, None)["passed"]  # no labels: agreement only
    confident_flip = reference.copy()
    confident_flip[0] = [0.02, 0.95, 0.03]
    r = judge(reference, confident_flip, None)
    assert r["confident_agreement"] == pytest.approx(149 / 150) and not r["passed"]


def test_without_pypi_the_side_runtime_fails_in_one_line_that_says_so(tmp_path, monkeypatch):
    """The one network fetch of the guard (tests/conftest.py): a pip whose index is a closed port."""
    from export import optimize

    monkeypatch.setattr(optimize, "ORT_DIR", tmp_path / "ort")
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no configured index or wheel folder either
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    with pytest.raises(optimize.GuardError) as info:
        optimize.side_runtime(optimize.CONTAINER_ORT, log=lambda *_: None)
    message = str(info.value)
    assert "\n" not in message and "PyPI (or the index pip is set to) cannot be reached" in message
    assert str(tmp_path / "ort" / optimize.CONTAINER_ORT) in message
    assert not (tmp_path / "ort" / optimize.CONTAINER_ORT).exists()


@pytest.fixture(scope="module")
def container_runtime():
    from export.optimize import CONTAINER_ORT, GuardError, side_runtime

    try:
        return CONTAINER_ORT, side_runtime(CONTAINER_ORT, log=lambda *_: None)
    except GuardError as exc:  # offline with an empty build/ort cache: nothing to judge with
        pytest.skip(str(exc))


def test_variants_are_judged_under_the_runtime_that_serves_them(container_runtime, exports, tmp_path):
    version, _ = container_runtime
    copy = shutil.copytree(exports["finbert"], tmp_path / "f")
    report = build_variants(
        copy, ["fp32", "int8"], guard_limit=100, min_agreement=0.0, runtime=version, log=lambda *_: None
    )
    assert set(report) == {"int8"} and report["int8"]["runtime"] == version
    assert report["int8"]["settings"]["runtime"] == version
    fp32 = json.loads((copy / "fp32_runtime.json").read_text())
    assert fp32["runtime"] == version and fp32["files"]["fp32"]["loads"]
    for variant in ("fp32", "int8"):
        assert report["int8"]["files"][variant]["loads"] and report["int8"]["files"][variant]["ir_version"] <= 10
    # The venv's ONNX Runtime scores the same file (batch for batch) within float noise of 1.19.2's.
    from export.optimize import served_logits

    local = served_logits(OnnxClassifier(copy, "int8"), PARITY_SENTENCES)
    from export.optimize import under_runtime

    there = under_runtime(
        version, {"export": str(copy), "load": ["int8"], "score": ["int8"], "texts": list(PARITY_SENTENCES)}
    )["int8"]
    np.testing.assert_allclose(there, local, atol=1e-3)


def test_a_file_the_container_runtime_cannot_load_is_refused(container_runtime, exports, tmp_path):
    import onnx

    from export.optimize import GuardError, under_runtime

    version, _ = container_runtime
    copy = shutil.copytree(exports["distilbert"], tmp_path / "d")
    model = onnx.load(str(copy / "model.onnx"))
    model.ir_version = 11  # ONNX 1.18's IR: newer than ONNX Runtime 1.19 reads
    onnx.save(model, str(copy / "model.onnx"))
    with pytest.raises(GuardError, match="IR version 11"):
        under_runtime(version, {"export": str(copy), "load": ["fp32"]})
    under_runtime(None, {"export": str(copy), "load": ["fp32"]})  # the venv's newer ONNX Runtime reads it
