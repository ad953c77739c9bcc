"""Short sweeps against the test suite's tritonserver: files, plot, table, honest failures."""

import csv
import json
import subprocess
import sys

import pytest

from loadtest import analysis, sweep
from server.triton import free_ports
from tests.waiting import wait_for_url

PNG = b"\x89PNG\r\n\x1a\n"


def run_sweep(tmp_path, name, *args):
    out = tmp_path / name
    code = sweep.main([*args, "--out", str(out), "--grace-seconds", "40"])
    result = json.loads((out / "sweep.json").read_text()) if (out / "sweep.json").exists() else None
    return code, out, result


def max_in_flight(step_csv):
    """Most requests in flight at once, from completion times and latencies."""
    events = []
    with open(step_csv, newline="") as f:
        for row in csv.DictReader(f):
            end = float(row["time"])
            events += [(end - float(row["response_time_ms"]) / 1000, 1), (end, -1)]
    level = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        level += delta
        peak = max(peak, level)
    return peak


def test_grpc_sweep_writes_step_csvs_plot_and_table(triton, tmp_path):
    code, out, result = run_sweep(
        tmp_path,
        "grpc",
        "--protocol",
        "grpc",
        "--host",
        triton.grpc_url,
        "--model",
        "finbert",
        "--users",
        "1 4",
        "--step-seconds",
        "3",
        "--slo-ms",
        "10000",
    )
    assert code == 0 and not result["timed_out"]
    steps = result["steps"]
    assert [s["users"] for s in steps] == [1, 4]
    for s in steps:
        assert s["requests"] > 0 and s["failures"] == 0 and s["texts"] == s["requests"]
        assert 0 < s["p50_ms"] <= s["p95_ms"] <= s["p99_ms"] <= s["max_ms"]
    # the knee is the fastest step (everything is within a 10 s SLO)
    assert result["knee"]["users"] == max(steps, key=lambda s: s["texts_per_s"])["users"]
    # per-step CSVs: a summary and every request of each step, window-flagged
    with open(out / "steps.csv", newline="") as f:
        assert [int(r["users"]) for r in csv.DictReader(f)] == [1, 4]
    for s in steps:
        with open(out / "steps" / f"step_{s['step']}_users_{s['users']}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert sum(r["in_window"] == "1" for r in rows) == s["requests"] and all(r["ok"] == "1" for r in rows)
    # 4 gevent users really overlap (without grpc's gevent init they would run one at a time)
    assert max_in_flight(out / "steps" / "step_2_users_4.csv") >= 2
    assert (out / "latency_vs_throughput.png").read_bytes()[:8] == PNG
    table = (out / "results.md").read_text()
    assert "| users | requests | failures | texts/s" in table and "**knee**" in table
    assert table.count("\n| 1 |") == 1 and table.count("\n| 4 |") == 1
    # the same requests reached Locust's own statistics under an honest name
    with open(out / "locust_stats.csv", newline="") as f:
        stats = {r["Name"]: r for r in csv.DictReader(f)}
    assert int(stats["ModelInfer finbert [1 texts]"]["Request Count"]) >= sum(s["requests"] for s in steps)
    assert stats["ModelInfer finbert [1 texts]"]["Type"] == "grpc"


def test_mixed_profile_reports_each_traffic_class(triton, tmp_path):
    # One bulk/document user and, at each level, the rest interactive: the report splits them.
    code, out, result = run_sweep(
        tmp_path,
        "mixed",
        *("--protocol", "mixed", "--host", triton.grpc_url, "--model", "finbert"),
        *("--users", "3", "--step-seconds", "6", "--slo-ms", "10000"),
    )
    assert code == 0 and not result["timed_out"]
    (step,) = result["steps"]
    assert set(step["classes"]) == {"interactive", "background", "document"}, step["classes"].keys()
    assert all(c["requests"] > 0 and c["failures"] == 0 for c in step["classes"].values()), step["classes"]
    assert "Each traffic class on its own" in (out / "results.md").read_text()


def test_http_sweep_counts_texts_per_request(triton, tmp_path):
    corpus = tmp_path / "texts.csv"
    corpus.write_text("id,text\n1,Margins widened on lower input costs.\n2,The bank cut 300 jobs.\n")
    code, out, result = run_sweep(
        tmp_path,
        "http",
        "--protocol",
        "http",
        "--host",
        f"http://{triton.http_url}",
        "--model",
        "distilbert",
        "--users",
        "2",
        "--step-seconds",
        "3",
        "--texts-per-request",
        "8",
        "--slo-ms",
        "10000",
        "--corpus",
        str(corpus),
    )
    assert code == 0 and result["target"]["corpus"] == str(corpus)
    (step,) = result["steps"]
    assert step["failures"] == 0 and step["requests"] > 0 and step["texts"] == 8 * step["requests"]
    assert step["texts_per_s"] == pytest.approx(8 * step["requests_per_s"], rel=1e-4)
    assert result["target"]["texts_per_request"] == 8


def test_failed_requests_are_reported_not_hidden(triton, tmp_path, capsys):
    # 65 texts exceed the ensemble's max batch size (64): Triton refuses every request
    code, out, result = run_sweep(
        tmp_path,
        "too-big",
        "--protocol",
        "http",
        "--host",
        f"http://{triton.http_url}",
        "--users",
        "1",
        "--step-seconds",
        "2",
        "--texts-per-request",
        "65",
    )
    assert code == 1  # a sweep that measured nothing is not a success
    assert "error: every request failed, e.g." in capsys.readouterr().err
    (step,) = result["steps"]
    assert step["requests"] > 0 and step["failures"] == step["requests"] and step["texts_per_s"] == 0
    assert result["knee"] is None
    table = (out / "results.md").read_text()
    assert "no throughput meets this SLO" in table and "batch-size" in table


def test_nothing_listening_is_a_clear_error(tmp_path, capsys):
    port = free_ports(1)[0]
    for protocol, host in (("grpc", f"localhost:{port}"), ("http", f"http://localhost:{port}")):
        code = sweep.main(["--protocol", protocol, "--host", host, "--out", str(tmp_path / protocol)])
        assert code == 2
        assert "make serve" in capsys.readouterr().err
        assert not (tmp_path / protocol / "sweep.json").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--users", "1 0"], "positive integers"),
        (["--texts-per-request", "0"], "at least 1"),
        (["--step-seconds", "2", "--warmup-seconds", "2"], "shorter than"),
        (["--corpus", "/nonexistent/texts.txt"], "does not exist"),
    ],
)
def test_bad_arguments_are_refused_before_any_load(args, message, tmp_path, capsys):
    port = free_ports(1)[0]  # nothing listens: must not get that far
    assert sweep.main(["--host", f"localhost:{port}", "--out", str(tmp_path / "x"), *args]) == 2
    assert message in capsys.readouterr().err


def test_unknown_model_is_named(triton, tmp_path, capsys):
    code = sweep.main(["--host", triton.grpc_url, "--model", "nosuch", "--out", str(tmp_path / "x")])
    assert code == 2
    err = capsys.readouterr().err
    assert "'nosuch' is not served" in err and "finbert" in err
    assert not (tmp_path / "x").exists()  # nothing made before the target is known to serve it


def test_gateway_sweep(distilbert_triton, tmp_path):
    import finsent.gateway  # noqa: F401 - the project's own: a broken import fails here, not in the subprocess

    port = free_ports(1)[0]
    code = (
        f"from finsent.gateway import Settings, serve; "
        f"serve(Settings(triton={distilbert_triton.grpc_url!r}), host='127.0.0.1', port={port}, "
        f"log_level='warning')"
    )
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        wait_for_url(f"http://127.0.0.1:{port}/healthz", "the gateway's /healthz", process=process)
        for path in ("/", "/v1/classify"):
            code_, out, result = run_sweep(
                tmp_path,
                f"gateway{path.replace('/', '-')}",
                "--protocol",
                "gateway",
                "--host",
                f"http://127.0.0.1:{port}",
                "--gateway-path",
                path,
                "--users",
                "2",
                "--step-seconds",
                "3",
                "--texts-per-request",
                "4",
                "--slo-ms",
                "10000",
            )
            assert code_ == 0
            (step,) = result["steps"]
            assert step["requests"] > 0 and step["failures"] == 0 and step["texts"] == 4 * step["requests"]
            # Issue 17: titled with the model the gateway served (the only one: distilbert), not a default.
            assert result["target"]["model"] == "distilbert"
    finally:
        process.terminate()
        process.wait(10)


def test_help_shows_the_usage_example_on_two_lines(capsys):
    with pytest.raises(SystemExit) as exc:
        sweep.main(["--help"])
    assert exc.value.code == 0
    assert '--model finbert \\\n        --users "1 4 16"' in capsys.readouterr().out


def test_the_model_defaults_to_the_one_served_behind_make_serves_admin_key(distilbert_triton, tmp_path, capsys):
    """Issue 17: `make loadtest` against `make serve FINBERT=` (the repository index restricted)."""
    assert sweep.preflight("grpc", distilbert_triton.grpc_url, None) == "distilbert"
    assert sweep.preflight("http", f"http://{distilbert_triton.http_url}", None) == "distilbert"
    code = sweep.main(
        ["--host", distilbert_triton.grpc_url, "--model", "finbert", "--out", str(tmp_path / "{protocol}-{model}")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.splitlines() == [err.splitlines()[0]] and "it serves distilbert" in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_log_latency_axis_labels_more_than_one_tick():
    """Issue 17: 20-400 ms on a log axis showed only "10^2"."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [12, 60, 400])
    analysis.latency_axis(ax, [12, 60, 400])
    fig.canvas.draw()
    low, high = ax.get_ylim()
    labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text() and low <= t.get_position()[1] <= high]
    plt.close(fig)
    assert ax.get_yscale() == "log" and len(labels) >= 4, labels
