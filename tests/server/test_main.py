"""`python -m server`'s choices before anything is built: what each target and device serves."""

from argparse import Namespace

import pytest

from export.runtime import DEFAULT_VARIANT
from server.__main__ import target_options


def args(**given) -> Namespace:
    return Namespace(**{"target": "local", "device": "cpu", "variant": None, "reproducible": False, **given})


@pytest.mark.parametrize(
    "target, device, gpu_here, variant, cpu_instances",
    [
        ("local", "cpu", False, DEFAULT_VARIANT["cpu"], False),
        ("container", "cpu", True, DEFAULT_VARIANT["cpu"], False),
        ("container", "gpu", True, DEFAULT_VARIANT["gpu"], False),  # as make repository DEVICE=gpu builds
        ("container", "gpu", False, DEFAULT_VARIANT["cpu"], True),  # no GPU: CPU instances, the CPU's variant
    ],
)
def test_default_variant_follows_where_the_classifier_runs(target, device, gpu_here, variant, cpu_instances):
    options = target_options(args(target=target, device=device), gpu_here=gpu_here)
    assert (options.variant, options.cpu_instances) == (variant, cpu_instances)


def test_a_named_variant_wins_and_reproducible_runs_texts_alone():
    options = target_options(args(variant="fp32", reproducible=True), gpu_here=False)
    assert (options.variant, options.max_rows_per_run) == ("fp32", 1)


def test_gpu_device_needs_the_container_target():
    with pytest.raises(ValueError, match="add --target container"):
        target_options(args(device="gpu"))


def test_usage_names_the_command_people_type(capsys):
    from server.__main__ import main

    with pytest.raises(SystemExit):
        main(["--help"])
    assert capsys.readouterr().out.startswith("usage: python -m server ")
