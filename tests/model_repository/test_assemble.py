"""Both targets render from the one source and parse as Triton ModelConfig protobufs."""
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export.facts import CANONICAL_LABELS
from model_repository.assemble import FAMILIES, STEPS, TargetOptions, assemble

TARGETS = [TargetOptions("local", cores=2), TargetOptions("container", "gpu"), TargetOptions("container", "cpu")]


@pytest.fixture(scope="module", params=TARGETS, ids=lambda o: f"{o.target}-{o.device}")
def repository(request, exports, tmp_path_factory):
    options = request.param
    out = assemble(exports, tmp_path_factory.mktemp("repo") / "r", options)
    configs = {d.name: text_format.Parse((d / "config.pbtxt").read_text(), mc.ModelConfig())
               for d in out.iterdir()}
    return options, out, configs


def test_every_model_is_there_and_parses(repository):
    _, out, configs = repository
    assert set(configs) == {f"{f}{s}" for f in FAMILIES for s in ["", *(f"_{s}" for s in STEPS)]}
    for name, config in configs.items():
        assert config.name == name and config.max_batch_size > 0
        assert (out / name / "1").is_dir()


def test_ensemble_contract_is_identical_for_both_models(repository):
    _, _, configs = repository
    for family in FAMILIES:
        config = configs[family]
        assert config.platform == "ensemble"
        assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("TEXT", mc.TYPE_STRING, [1])]
        assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
            ("LABEL", mc.TYPE_STRING, [1]), ("SCORE", mc.TYPE_FP32, [1]), ("PROBABILITIES", mc.TYPE_FP32, [3])]
        assert config.parameters["labels"].string_value.split(",") == list(CANONICAL_LABELS)
        assert [s.model_name for s in config.ensemble_scheduling.step] == [f"{family}_{s}" for s in STEPS]


def test_distilbert_has_no_token_type_ids_anywhere(repository):
    _, out, _ = repository
    for path in out.glob("distilbert*/config.pbtxt"):
        assert "token_type_ids" not in path.read_text(), path
    assert "token_type_ids" in (out / "finbert_classifier" / "config.pbtxt").read_text()


def test_target_differences(repository):
    options, out, configs = repository
    for family in FAMILIES:
        classifier, tokenizer = configs[f"{family}_classifier"], configs[f"{family}_tokenizer"]
        threads = classifier.parameters
        assert threads["inter_op_thread_count"].string_value == "1"
        assert classifier.dynamic_batching.max_queue_delay_microseconds <= 1000
        padding = tokenizer.parameters["padding"].string_value
        kind = classifier.instance_group[0].kind
        if options.target == "local":
            assert classifier.backend == "python" and (out / classifier.name / "1" / "model.py").exists()
            assert all(t.allow_ragged_batch for t in classifier.input)
            assert padding == "longest"
            assert threads["intra_op_thread_count"].string_value == str(options.cores)
            assert (out / classifier.name / "1" / "model.onnx").is_symlink()
        else:
            assert classifier.backend == "onnxruntime" and classifier.default_model_filename == "model.onnx"
            assert not (out / classifier.name / "1" / "model.py").exists()
            assert not any(t.allow_ragged_batch for t in classifier.input)   # ORT would get them concatenated
            assert padding == "buckets:16,32,64,128,256,512"
            assert kind == (mc.ModelInstanceGroup.KIND_GPU if options.device == "gpu" else mc.ModelInstanceGroup.KIND_CPU)
            model = out / classifier.name / "1" / "model.onnx"
            assert model.is_file() and not model.is_symlink()                  # copied: goes into an image / bucket


def test_a_config_that_disagrees_with_the_export_is_refused(exports, tmp_path):
    with pytest.raises(ValueError, match="unknown model family"):
        assemble({"bert": exports["finbert"]}, tmp_path / "r")
    # distilbert's configs have no token_type_ids: a BERT export under that name cannot be served as is
    with pytest.raises(ValueError, match="differ from the export"):
        assemble({"distilbert": exports["finbert"]}, tmp_path / "r")


def test_local_target_cannot_be_gpu():
    with pytest.raises(ValueError, match="local target is cpu"):
        TargetOptions("local", "gpu")
