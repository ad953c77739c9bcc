"""Both targets render from the one source and parse as Triton ModelConfig protobufs."""

import shutil
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export.facts import CANONICAL_LABELS, ModelFacts
from model_repository.assemble import DOCUMENT, FAMILIES, STEPS, TargetOptions, assemble

ROOT = Path(__file__).resolve().parents[2]
TARGETS = [TargetOptions("local", cores=2), TargetOptions("container", "gpu"), TargetOptions("container", "cpu")]


@pytest.fixture(scope="module", params=TARGETS, ids=lambda o: f"{o.target}-{o.device}")
def repository(request, exports, tmp_path_factory):
    options = request.param
    out = assemble(exports, tmp_path_factory.mktemp("repo") / "r", options)
    configs = {d.name: text_format.Parse((d / "config.pbtxt").read_text(), mc.ModelConfig()) for d in out.iterdir()}
    return options, out, configs


def test_every_model_is_there_and_parses(repository):
    options, out, configs = repository
    # On CPU, background work's copy of the ensemble and its classifier (model_repository/classes.py).
    copies = ["_background", "_classifier_background"] if options.background_classifier else []
    assert set(configs) == {f"{f}{s}" for f in FAMILIES for s in ["", *(f"_{s}" for s in (*STEPS, DOCUMENT)), *copies]}
    for name, config in configs.items():
        assert config.name == name and config.max_batch_size > 0
        assert (out / name / "1").is_dir()


def test_no_folder_is_empty(repository):
    # A bucket upload (gcloud storage cp -r) drops empty folders: an ensemble without its version
    # folder has no version to load in the gcs profile, and the server exits.
    _, out, _ = repository
    empty = [str(d.relative_to(out)) for d in out.rglob("*") if d.is_dir() and not any(d.iterdir())]
    assert not empty


def test_ensemble_contract_is_identical_for_both_models(repository):
    _, _, configs = repository
    for family in FAMILIES:
        config = configs[family]
        assert config.platform == "ensemble"
        assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("TEXT", mc.TYPE_STRING, [1])]
        assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
            ("LABEL", mc.TYPE_STRING, [1]),
            ("SCORE", mc.TYPE_FP32, [1]),
            ("PROBABILITIES", mc.TYPE_FP32, [3]),
            ("LOGITS", mc.TYPE_FP32, [3]),
        ]
        assert config.parameters["labels"].string_value.split(",") == list(CANONICAL_LABELS)
        assert [s.model_name for s in config.ensemble_scheduling.step] == [f"{family}_{s}" for s in STEPS]


def test_distilbert_has_no_token_type_ids_anywhere(repository):
    _, out, _ = repository
    for path in out.glob("distilbert*/config.pbtxt"):
        assert "token_type_ids" not in path.read_text(), path
    assert "token_type_ids" in (out / "finbert_classifier" / "config.pbtxt").read_text()


def test_target_differences(repository, exports):
    options, out, configs = repository
    for family in FAMILIES:
        classifier, tokenizer = configs[f"{family}_classifier"], configs[f"{family}_tokenizer"]
        threads = classifier.parameters
        assert threads["inter_op_thread_count"].string_value == "1"
        assert classifier.dynamic_batching.max_queue_delay_microseconds <= 1000
        padding = tokenizer.parameters["padding"].string_value
        kind = classifier.instance_group[0].kind
        if options.classifier == "python":  # local, and the container's cpu profile
            assert classifier.backend == "python" and (out / classifier.name / "1" / "model.py").exists()
            assert all(t.allow_ragged_batch for t in classifier.input)
            assert padding == "longest"
            assert threads["intra_op_thread_count"].string_value == str(options.cores)
        else:  # the container's gpu profile
            assert classifier.backend == "onnxruntime" and classifier.default_model_filename == "model.onnx"
            assert not (out / classifier.name / "1" / "model.py").exists()
            assert not any(t.allow_ragged_batch for t in classifier.input)  # ORT would get them concatenated
            # One bucket for sentences, the max length past it: requests share a shape, so they batch.
            assert padding == f"buckets:128,{ModelFacts.load(exports[family]).max_length}"
        assert kind == (mc.ModelInstanceGroup.KIND_GPU if options.device == "gpu" else mc.ModelInstanceGroup.KIND_CPU)
        model = out / classifier.name / "1" / "model.onnx"
        if options.target == "local":
            assert model.is_symlink()
        else:
            assert model.is_file() and not model.is_symlink()  # copied: goes into an image / bucket


def test_a_config_that_disagrees_with_the_export_is_refused(exports, tmp_path):
    with pytest.raises(ValueError, match="unknown model family"):
        assemble({"bert": exports["finbert"]}, tmp_path / "r")
    # distilbert's configs have no token_type_ids: a BERT export under that name cannot be served as is
    with pytest.raises(ValueError, match="differ from the export"):
        assemble({"distilbert": exports["finbert"]}, tmp_path / "r")


def test_local_target_cannot_be_gpu():
    with pytest.raises(ValueError, match="local target is cpu"):
        TargetOptions("local", "gpu")


def test_inputs_are_checked_before_anything_is_replaced(exports, tmp_path):
    out = assemble({"finbert": exports["finbert"]}, tmp_path / "r", TargetOptions("local", cores=2))
    with pytest.raises(ValueError, match="is not an export"):
        assemble({"finbert": tmp_path / "typo"}, out)
    assert (out / "finbert_classifier" / "config.pbtxt").is_file()  # a running server's repository survives
    # An --out that holds an export, or a folder that is not a repository, is never deleted.
    copy = tmp_path / "exports" / "finbert"
    shutil.copytree(exports["finbert"], copy)
    with pytest.raises(ValueError, match="replacing it would delete the export"):
        assemble({"finbert": copy}, copy.parent)
    assert (copy / "model_facts.json").is_file()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a model repository"):
        assemble({"finbert": exports["finbert"]}, other)
    assert (other / "keep.txt").read_text() == "mine"


def test_cli_errors_are_one_line(exports, tmp_path, capsys):
    from model_repository.assemble import main

    with pytest.raises(SystemExit) as exc:
        main(["--export", "finbert"])
    assert exc.value.code == 2 and "--export takes FAMILY=DIR" in capsys.readouterr().err
    assert main(["--export", f"finbert={tmp_path / 'missing'}", "--out", str(tmp_path / "r")]) == 2
    assert "is not an export (no model_facts.json)" in capsys.readouterr().err


def test_the_container_cpu_target_is_built_for_the_charts_cpu_request(exports, tmp_path):
    from model_repository.assemble import main

    assert (
        main(
            [
                "--target",
                "container",
                "--device",
                "cpu",
                "--export",
                f"finbert={exports['finbert']}",
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    config = text_format.Parse((tmp_path / "r" / "finbert_classifier" / "config.pbtxt").read_text(), mc.ModelConfig())
    # One source of truth: the cores the chart's CPU profile requests.
    requests = yaml.safe_load((ROOT / "k8s" / "values" / "cpu.yaml").read_text())["resources"]["requests"]
    assert config.parameters["intra_op_thread_count"].string_value == str(requests["cpu"]) == "3"


def test_a_cpu_profile_without_whole_cores_is_refused(tmp_path):
    from model_repository.assemble import _requested_cores

    profile = tmp_path / "cpu.yaml"
    profile.write_text("resources: {requests: {cpu: 3500m}}\n")
    with pytest.raises(ValueError, match="'3500m' must be whole cores"):
        _requested_cores(profile)
