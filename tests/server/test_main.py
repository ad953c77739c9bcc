"""`python -m server`'s choices before anything is built: what each target and device serves."""

from argparse import Namespace

import pytest

from export.runtime import DEFAULT_VARIANT, served_choice
from server.__main__ import main, target_options


def args(**given) -> Namespace:
    return Namespace(
        **{"target": "local", "device": "cpu", "engine": None, "variant": None, "reproducible": False, **given}
    )


@pytest.mark.parametrize(
    "target, device, gpu_here, variant, cpu_instances",
    [
        ("local", "cpu", False, served_choice("cpu"), False),  # the default engine's default variant
        ("container", "cpu", True, served_choice("cpu"), False),
        ("container", "gpu", True, DEFAULT_VARIANT["gpu"], False),  # as make repository DEVICE=gpu builds
        # No GPU: CPU instances of the native onnxruntime backend, ONNX Runtime's CPU variant.
        ("container", "gpu", False, DEFAULT_VARIANT["cpu"], True),
    ],
)
def test_default_variant_follows_where_the_classifier_runs(target, device, gpu_here, variant, cpu_instances):
    options = target_options(args(target=target, device=device), gpu_here=gpu_here)
    assert (options.variant, options.cpu_instances) == (variant, cpu_instances)


def test_a_named_variant_wins_and_reproducible_runs_texts_alone():
    options = target_options(args(variant="fp32", reproducible=True), gpu_here=False)
    assert (options.variant, options.max_rows_per_run) == ("fp32", 1)


@pytest.mark.parametrize("target", ["local", "container"])
def test_the_engine_knob_picks_the_engines_variant_on_both_cpu_targets(target):
    assert target_options(args(target=target, engine="openvino")).variant == "openvino-int8-static"
    assert target_options(args(target=target, engine="openvino", variant="fp32")).variant == "openvino-fp32"
    assert target_options(args(target=target, engine="onnxruntime")).variant == DEFAULT_VARIANT["cpu"]


def test_a_variant_alone_names_its_engine():
    # fp32, int8, fp16 run on ONNX Runtime as before the engine knob; int8-static is OpenVINO's.
    assert [target_options(args(variant=v)).variant for v in ("fp32", "int8", "int8-static")] == [
        "fp32",
        "int8",
        "openvino-int8-static",
    ]


@pytest.mark.parametrize(
    "given, message",
    [
        ({"engine": "openvino", "variant": "int8"}, "variant 'int8' is not openvino's: one of fp32, int8-static"),
        ({"variant": "int8-static", "engine": "onnxruntime"}, "variant 'int8-static' is not onnxruntime's"),
        ({"variant": "fp16", "engine": "openvino"}, "variant 'fp16' is not openvino's"),
        ({"target": "container", "device": "gpu", "engine": "openvino"}, "the gpu profile runs onnxruntime only"),
    ],
)
def test_an_engine_and_variant_that_do_not_go_together_are_one_clear_error(given, message):
    with pytest.raises(ValueError, match=message):
        target_options(args(**given), gpu_here=True)


def test_an_unknown_engine_is_refused_before_anything_is_built(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--engine", "tensorrt"])
    assert exc.value.code == 2
    assert "argument --engine: invalid choice: 'tensorrt' (choose from 'onnxruntime', 'openvino')" in (
        capsys.readouterr().err
    )


def test_gpu_device_needs_the_container_target():
    with pytest.raises(ValueError, match="add --target container"):
        target_options(args(device="gpu"))


def test_usage_names_the_command_people_type(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert capsys.readouterr().out.startswith("usage: python -m server ")
