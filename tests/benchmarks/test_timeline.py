"""`make timeline` on a tiny model: Triton's trace cut into segments that add up, and the report."""

import json

import pytest

from benchmarks import timeline


def test_the_traced_segments_add_up_to_the_time_inside_triton(checkpoints, tmp_path):
    out = tmp_path / "out"
    assert (
        timeline.main(
            [
                "--model",
                "distilbert",
                "--checkpoint",
                str(checkpoints["distilbert"]),
                "--variant",
                "fp32",
                "--rounds",
                "2",
                "--warmup",
                "3",
                "--sentences",
                "8",
                "--build",
                str(tmp_path / "build"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "one-client-distilbert-fp32.json").read_text())
    s = results["summary"]
    assert results["requests"] == 16 and results["rounds"] == 2
    segments = [s["segments"][name]["mean_us"] for name in timeline.SEGMENTS]
    assert sum(segments) == pytest.approx(s["segments"]["inside Triton"]["mean_us"], abs=1)
    assert min(segments) >= 0  # the cuts never run backwards
    # A step's segment is at most its compute (input + execute + output), and the model's is real.
    for step in timeline.STEPS:
        parts = sum(s["segments"][f"{step}: {part}"]["mean_us"] for part, _, _ in timeline.STEP_PARTS[1:])
        assert 0 < s["segments"][step]["mean_us"] <= parts + 1
    # Within each request's client latency: the gRPC read follows the client's send, the send's
    # start precedes its receipt (the send's end need not: CI once saw 2.02 ms inside, 1.94 out).
    assert 0 < s["segments"]["inside Triton"]["mean_us"] < s["client"]["mean_us"]
    assert sum(s["added"].values()) == pytest.approx(s["excess_mean_us"], abs=1)
    assert s["in_process"]["ORT run"]["mean_us"] > 0
    report = (out / "one-client-distilbert-fp32.md").read_text()
    assert "| **inside Triton** (gRPC read → send starts) |" in report and "sum = excess" in report
    assert (out / "one-client-distilbert-fp32.png").read_bytes()[:4] == b"\x89PNG"


def test_a_request_whose_steps_are_not_all_traced_is_left_out(tmp_path):
    trace = tmp_path / "trace.json"
    # The ensemble's record with only one of its three steps: not a complete request.
    trace.write_text(
        json.dumps(
            [
                {"id": 1, "model_name": "finbert", "model_version": 1},
                {"id": 1, "timestamps": [{"name": "GRPC_WAITREAD_END", "ns": 1}, {"name": "GRPC_SEND_START", "ns": 9}]},
                {"id": 2, "model_name": "finbert_tokenizer", "model_version": 1, "parent_id": 1},
                {"id": 2, "timestamps": [{"name": "COMPUTE_START", "ns": 2}]},
            ]
        )
    )
    assert timeline.requests_from_trace(trace, "finbert") == []


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        timeline.main(["--rounds", "0"])
    assert exc.value.code == 2
    assert "--rounds, --sentences and --cores must be at least 1" in capsys.readouterr().err
