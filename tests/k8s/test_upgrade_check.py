"""k8s/upgrade_check.py: what another NGC release would break, checked for the pinned one on the tiny
test exports (under the cached side install of its ONNX Runtime, build/ort: no network when cached)."""

from __future__ import annotations

import pytest

from k8s import ngc, upgrade_check


def test_an_unknown_release_is_refused_in_one_line(capsys):
    assert upgrade_check.main(["--tag", "99.01"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: NGC release 99.01 is unknown to k8s/ngc.py (known: 24.10)")


def test_a_config_field_or_enum_value_the_release_lacks_is_named():
    messages, enums = upgrade_check.parse_proto(upgrade_check.release_proto("24.10"))
    config = 'name: "m" bogus: 1 instance_group [ { kind: KIND_NPU } ] parameters { key: "k" value { nope: "v" } }'
    assert upgrade_check.config_problems(config, messages, enums) == [
        "bogus: no such field in ModelConfig",
        "instance_group.kind: KIND_NPU is not a value of ModelInstanceGroup.Kind",
        "parameters.value.nope: no such field in ModelParameter",
    ]
    assert upgrade_check.release_proto("99.01") is None  # not here: said to be unverified, not passed


def test_the_pinned_release_passes_on_the_test_exports(exports, tmp_path, capsys):
    from export.optimize import GuardError, side_runtime

    release = ngc.RELEASES[ngc.pinned()]
    try:
        side_runtime(release.onnxruntime, log=lambda *_: None)
    except GuardError as exc:  # offline with an empty build/ort cache
        pytest.skip(str(exc))
    before = {p: sorted(f.name for f in p.iterdir()) for p in exports.values()}
    args = ["--tag", ngc.pinned(), "--guard-sentences", "40", "--min-agreement", "0"]  # random weights
    code = upgrade_check.main(args + [f"--export={path}" for path in exports.values()])
    out = capsys.readouterr().out
    assert code == 0, out
    for family in exports:
        assert f"ok: {family}: fp32 load in onnxruntime {release.onnxruntime}" in out
        assert f"ok: {family}: the int8 and fp16 guard passes under onnxruntime {release.onnxruntime}" in out
    assert "config.pbtxt files exists in r24.10's model_config.proto" in out
    assert "FAILED" not in out and "unverified here: the image on a GPU node" in out
    assert {p: sorted(f.name for f in p.iterdir()) for p in exports.values()} == before  # judged on copies
