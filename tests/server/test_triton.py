import json
import socket
import stat
import subprocess
import sys

import pytest

from model_repository.assemble import TargetOptions, assemble
from server import perf_analyzer
from server.__main__ import claim, prepare
from server.triton import LOCAL_RESTRICTED_APIS, LaunchError, Ports, TritonServer, check_ports, free_ports, triton_args


def test_a_taken_port_is_named_with_the_knob_to_change_it():
    http, grpc, metrics = free_ports()
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", grpc))
        sock.listen()
        with pytest.raises(LaunchError, match=f"GRPC port {grpc} is already in use.*GRPC_PORT="):
            check_ports(Ports(http, grpc, metrics))


def test_triton_args_name_the_repository_and_ports():
    args = triton_args("/models", Ports(1, 2, 3))
    assert "--model-repository=/models" in args
    assert {"--http-port=1", "--grpc-port=2", "--metrics-port=3"} <= set(args)


def test_a_broken_repository_fails_with_the_log_lines_that_say_why(tmp_path):
    (tmp_path / "repo" / "broken").mkdir(parents=True)
    (tmp_path / "repo" / "broken" / "config.pbtxt").write_text('backend: "python"\nmax_batch_size: 1\n')
    server = TritonServer(
        tmp_path / "repo", Ports(*free_ports()), work_dir=tmp_path / "w", log_path=tmp_path / "w" / "log"
    )
    with pytest.raises(LaunchError, match="(?s)exited with code 1.*failed to load model 'broken'.*full log") as info:
        server.start(timeout_s=60)
    assert "CudaDriverHelper" not in str(info.value)  # the CPU-only noise is left out


def test_unavailable_models_are_skipped_with_the_reason(checkpoints, tmp_path, capsys):
    exports, variants = prepare(
        {"finbert": str(checkpoints["finbert"]), "distilbert": str(tmp_path / "missing")}, tmp_path
    )
    assert list(exports) == ["finbert"] and variants == {"finbert": "fp32"}
    assert f"skipping distilbert: checkpoint directory {tmp_path / 'missing'} does not exist" in capsys.readouterr().err


def test_a_variant_the_guard_refuses_falls_back_to_fp32_for_that_model(checkpoints, tmp_path, capsys):
    exports, variants = prepare(
        {"finbert": str(checkpoints["finbert"]), "distilbert": ""}, tmp_path, "int8", min_agreement=1.01
    )  # no variant can pass
    assert variants == {"finbert": "fp32"}
    (line,) = [l for l in capsys.readouterr().err.splitlines() if "refused" in l]
    # Issue 17: said once, without suggesting the very command that is running.
    assert line.startswith("[finbert] int8 variant refused: agreement on confident predictions (p >= 0.9) >= 101.0%")
    assert line.endswith("): serving finbert in fp32 (exact, slower) instead") and "make serve" not in line
    repository = assemble(exports, tmp_path / "repo", TargetOptions("local", variant="int8"), variants=variants)
    served = repository / "finbert_classifier" / "1"
    assert json.loads((served / "model_facts.json").read_text())["variant"] == "fp32"
    assert (served / "model.onnx").resolve() == (exports["finbert"] / "model.onnx").resolve()


def test_no_model_at_all_fails_clearly(tmp_path):
    with pytest.raises(LaunchError, match="no model to serve.*FINBERT="):
        prepare({"finbert": "ProsusAI/finbert", "distilbert": ""}, tmp_path)


def test_serve_command_exits_2_when_nothing_can_be_served(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "server",
            "--finbert",
            str(tmp_path / "a"),
            "--distilbert",
            str(tmp_path / "b"),
            "--build",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "skipping finbert" in result.stderr and "no model to serve" in result.stderr


def serve(build, *args):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "server",
            "--finbert",
            str(build / "none"),
            "--distilbert",
            "",
            "--build",
            str(build),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_second_serve_on_the_same_build_folder_touches_nothing(tmp_path):
    lock = claim(tmp_path)  # as a running `make serve` holds it
    (tmp_path / "repository" / "local").mkdir(parents=True)
    result = serve(tmp_path)
    assert result.returncode == 2 and "is in use by a running `make serve` (pid " in result.stderr
    assert "BUILD=" in result.stderr and "skipping" not in result.stderr  # it stopped before exporting
    assert (tmp_path / "repository" / "local").is_dir()
    lock.close()
    assert "is in use" not in serve(tmp_path).stderr  # released with its holder


def test_a_taken_port_stops_serve_before_it_builds_anything(tmp_path):
    http, grpc, metrics = free_ports()
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", http))
        sock.listen()
        result = serve(tmp_path, "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics))
    assert result.returncode == 2 and f"HTTP port {http} is already in use" in result.stderr
    assert not (tmp_path / "export").exists() and not (tmp_path / "repository").exists()


def test_perf_analyzer_drives_the_ensemble_with_string_input(triton):
    result = perf_analyzer.run(
        [
            "-m",
            "finbert",
            "-u",
            triton.grpc_url,
            "-i",
            "grpc",
            "--concurrency-range",
            "2",
            "--request-count",  # a fixed count: a stability search can fail on a busy machine
            "50",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Throughput:" in result.stdout and "infer/sec" in result.stdout


def test_local_args_leave_every_api_open_by_default():
    assert not [a for a in triton_args("/models") if "restricted" in a]


@pytest.mark.triton  # a tritonserver of its own (an empty repository): no fixture says so
def test_an_admin_key_restricts_the_admin_apis_of_a_real_server(tmp_path):
    """The k8s chart's restriction flags, on the real binary: refused without the key, served with it."""
    import urllib.error
    import urllib.request

    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    from server.triton import ADMIN_HEADER

    (tmp_path / "repo").mkdir()
    server = TritonServer(
        tmp_path / "repo",
        Ports(*free_ports()),
        work_dir=tmp_path / "w",
        log_path=tmp_path / "w" / "log",
        admin_key="k3y",
    )

    def status(path, headers):
        request = urllib.request.Request(
            f"http://{server.http_url}{path}", data=b"{}" if "index" in path else None, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    with server:
        for path in ("/v2/repository/index", "/v2/logging", "/v2/trace/setting", "/v2/systemsharedmemory/status"):
            assert status(path, {}) == 403, path
            assert status(path, {ADMIN_HEADER: "wrong"}) == 403, path
            assert status(path, {ADMIN_HEADER: "k3y"}) == 200, path
        assert status("/v2/health/ready", {}) == 200 and status("/v2", {}) == 200
        client = grpcclient.InferenceServerClient(server.grpc_url)
        with pytest.raises(InferenceServerException, match="restricted"):
            client.get_model_repository_index()
        client.get_model_repository_index(headers={f"triton-grpc-protocol-{ADMIN_HEADER}": "k3y"})
        assert client.is_server_ready()
        # Issue 17: the key is there for its owner's own tools (tritonclient, curl), for no one else.
        assert server.admin_key_file.read_text() == "k3y\n"
        assert stat.S_IMODE(server.admin_key_file.stat().st_mode) == 0o600
        client.close()


def test_make_serve_leaves_statistics_open_for_perf_analyzer_and_keeps_the_rest():
    """Issue 17: perf_analyzer and Model Analyzer read statistics; model control stays behind the key."""
    args = " ".join(triton_args("/models", admin_key="k", restricted_apis=LOCAL_RESTRICTED_APIS))
    assert "statistics" not in args and "model-repository,shared-memory" in args
    assert "statistics" in " ".join(triton_args("/models", admin_key="k"))  # the chart's: all restricted
