"""benchmarks.client against the session's tritonserver, on a few texts: the plumbing, not the speed."""

from benchmarks import client


def test_it_measures_both_clients_on_both_protocols_and_finsent_score(triton, tmp_path):
    out = tmp_path / "client.md"
    argv = ["--grpc", triton.grpc_url, "--http", triton.http_url, "--texts", "100", "--repeat", "1", "--out", str(out)]
    assert client.main(argv) == 0
    report = out.read_text()
    rows = [line for line in report.splitlines() if line.startswith(("| grpc", "| http"))]
    assert [tuple(row.split(" | ")[:2]) for row in rows] == [
        (f"| {protocol}", str(n)) for protocol in ("grpc", "http") for n in client.IN_FLIGHT
    ]
    assert f": {100 * client.SCORE_COPIES} rows, 0 failures" in report
