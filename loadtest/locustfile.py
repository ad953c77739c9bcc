"""Locust users for finsent: Triton over gRPC, Triton over HTTP (KServe v2 JSON), the REST gateway.

    locust -f loadtest/locustfile.py --host localhost:8001 TritonGrpcUser --model finbert
    locust -f loadtest/locustfile.py --host http://localhost:8000 TritonHttpUser --texts-per-request 8
    locust -f loadtest/locustfile.py --host http://localhost:8080 GatewayUser --gateway-path /v1/classify
    locust -f loadtest/locustfile.py --host localhost:8001 InteractiveUser BackgroundUser   # mixed traffic

Name the user class to run (Locust runs every class in the file otherwise). Each user sends
its next request as soon as the previous one returns (closed loop: users = concurrency).
Texts come from the built-in financial sentences or `--corpus FILE`. Every request is
reported to Locust's request event with the time it took and how many texts it carried.
`make loadtest` (loadtest/sweep.py) steps through user levels with loadtest/step_shape.py.
"""

# gRPC's C core must cooperate with gevent before any channel exists; without this, 16
# users share one blocking channel and behave like one user, with no error anywhere.
import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()

import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

# Locust loads this file by its path (no `python -m`) and puts only the cwd and this folder on
# sys.path: the checkout makes `loadtest` importable from any cwd, for loadtest/step_shape.py too.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import tritonclient.grpc as grpcclient  # noqa: E402
from geventhttpclient import HTTPClient  # noqa: E402
from geventhttpclient.url import URL  # noqa: E402
from locust import User, constant, constant_pacing, events, task  # noqa: E402

from finsent.core import DEFAULT_MODEL  # noqa: E402
from finsent.traffic import (  # noqa: E402
    BACKGROUND,
    BACKGROUND_MODEL_PARAMETER,
    BACKGROUND_ROWS_PARAMETER,
    INTERACTIVE,
    TRAFFIC_PARAMETER,
)
from loadtest import recorder  # noqa: E402
from loadtest.corpus import load_corpus  # noqa: E402


class Settings:
    """Filled from the command line at init; defaults for library use."""

    model = DEFAULT_MODEL
    texts_per_request = 1
    timeout_s = 60.0
    gateway_path = "/"
    corpus: list = []
    background_rows = 0  # BackgroundUser's rows per request; 0: the server's background_batch_size


@events.init_command_line_parser.add_listener
def _arguments(parser):
    group = parser.add_argument_group("finsent")
    group.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"Triton model (ensemble) to call (default {DEFAULT_MODEL})"
    )
    group.add_argument(
        "--texts-per-request", type=int, default=1, help="texts in each request (Triton allows up to 64; default 1)"
    )
    group.add_argument(
        "--corpus",
        default="",
        help="texts file: one per line, CSV with a `text` column, or a "
        "Financial PhraseBank Sentences_*Agree.txt (default: built-in)",
    )
    group.add_argument("--request-timeout", type=float, default=60.0, help="seconds before a request fails")
    group.add_argument(
        "--background-rows",
        type=int,
        default=0,
        help="BackgroundUser: texts per bulk request (default 0: the server's background_batch_size, "
        "as finsent score sends them: 4 on CPU)",
    )
    group.add_argument(
        "--gateway-path",
        default="/",
        choices=["/", "/v1/classify"],
        help="GatewayUser endpoint: the classic `POST /` or `POST /v1/classify`",
    )
    group.add_argument(
        "--record-dir",
        default="",
        help="write per-request samples and step boundaries here (used by loadtest/sweep.py)",
    )
    group.add_argument(
        "--warmup-seconds",
        type=float,
        default=0.0,
        help="seconds at the start of each step left out of its progress line",
    )


@events.init.add_listener
def _init(environment, **_kwargs):
    options = environment.parsed_options
    if options is None:  # used as a library: keep the defaults
        Settings.corpus = Settings.corpus or load_corpus()
        return
    if options.texts_per_request < 1:
        raise SystemExit("--texts-per-request must be at least 1")
    Settings.model = options.model
    Settings.texts_per_request = options.texts_per_request
    Settings.timeout_s = options.request_timeout
    Settings.gateway_path = options.gateway_path
    Settings.background_rows = options.background_rows
    Settings.corpus = load_corpus(options.corpus or None)
    if options.record_dir:
        recorder.ACTIVE = recorder.Recorder(options.record_dir, warmup_s=options.warmup_seconds)


@events.quitting.add_listener
def _quit(environment, **_kwargs):
    if recorder.ACTIVE:
        recorder.ACTIVE.close()


@events.quit.add_listener
def _exit_now(exit_code, **_kwargs):
    # Seen here: after its summary, a Locust process with gevent-driven gRPC channels sometimes
    # never finishes interpreter shutdown. Everything is written by now (quit is Locust's last
    # event before sys.exit), so leave at once; sweep.py's hard time limit stays as a backstop.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)


@events.request.add_listener
def _record(request_type, name, response_time, response_length, exception=None, context=None, **_kwargs):
    if recorder.ACTIVE:
        recorder.ACTIVE.sample(request_type, name, response_time, (context or {}).get("texts", 1), exception)


class FinsentUser:
    """What every finsent user shares: which texts to send next."""

    def next_texts(self) -> list[str]:
        corpus = Settings.corpus or load_corpus()
        if not hasattr(self, "_position"):
            self._position = random.randrange(len(corpus))  # users start at different texts
        n = Settings.texts_per_request
        texts = [corpus[(self._position + i) % len(corpus)] for i in range(n)]
        self._position += n
        return texts

    def report(self, request_type: str, name: str, started: float, length: int, error, texts: int) -> None:
        """One Locust request event: wall time since `started` (perf_counter) in float ms."""
        self.environment.events.request.fire(
            request_type=request_type,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=error,
            context={"texts": texts},
        )


class RowCountError(AssertionError):
    pass


def check_rows(got: int, sent: int, what: str) -> None:
    if got != sent:
        raise RowCountError(f"{what}: {got} results for {sent} texts")


def grpc_address(host: str | None) -> str:
    if not host:
        raise SystemExit("give the Triton gRPC address with --host, e.g. --host localhost:8001")
    for scheme in ("grpc://", "http://", "https://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
    return host.rstrip("/")


def http_base(host: str | None, default: str) -> str:
    host = host or default
    return host if "://" in host else f"http://{host}"


class TritonGrpcUser(FinsentUser, User):
    """Triton's KServe v2 gRPC ModelInfer through tritonclient, TEXT as BYTES [n, 1]."""

    wait_time = constant(0)

    def on_start(self):
        self.client = grpcclient.InferenceServerClient(grpc_address(self.host))

    def on_stop(self):
        self.client.close()

    @task
    def infer(self):
        texts = self.next_texts()
        batch = grpcclient.InferInput("TEXT", [len(texts), 1], "BYTES")
        batch.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_).reshape(-1, 1))
        start, length, error = time.perf_counter(), 0, None
        try:
            result = self.client.infer(Settings.model, [batch], client_timeout=Settings.timeout_s)
            length = result.get_response().ByteSize()
            check_rows(len(result.as_numpy("LABEL")), len(texts), "LABEL")
        except Exception as exc:  # reported to Locust as a failure, never raised
            error = exc
        self.report("grpc", f"ModelInfer {Settings.model} [{len(texts)} texts]", start, length, error, len(texts))


class HttpStatusError(RuntimeError):
    pass


class JsonPostUser(FinsentUser, User):
    """Posts JSON over a keep-alive geventhttpclient connection (what tritonclient.http uses) and
    checks the status and that one result came back per text. Timed here rather than through
    Locust's FastHttpUser, whose 2.18 release truncates response times to whole milliseconds."""

    abstract = True
    default_host = "http://localhost:8000"
    wait_time = constant(0)

    def on_start(self):
        url = URL(http_base(self.host, self.default_host))
        self.client = HTTPClient.from_url(url, concurrency=1, connection_timeout=10, network_timeout=Settings.timeout_s)
        self.prefix = url.path.rstrip("/")

    def on_stop(self):
        self.client.close()

    def post_texts(self, path: str, body, sent: int, results_of) -> None:
        start, length, error = time.perf_counter(), 0, None
        try:
            response = self.client.post(
                self.prefix + path, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
            )
            content = response.read()
            length = len(content)
            if response.status_code != 200:
                raise HttpStatusError(f"HTTP {response.status_code}: {content[:200].decode(errors='replace')}")
            check_rows(results_of(json.loads(content)), sent, path)
        except Exception as exc:  # reported to Locust as a failure, never raised
            error = exc
        self.report("POST", f"{path} [{sent} texts]", start, length, error, sent)


class TritonHttpUser(JsonPostUser):
    """Triton's KServe v2 HTTP/JSON endpoint: POST /v2/models/<model>/infer, TEXT as BYTES [n, 1]."""

    @task
    def infer(self):
        texts = self.next_texts()
        body = {"inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [len(texts), 1], "data": texts}]}

        def labels(payload):
            return next(o for o in payload["outputs"] if o["name"] == "LABEL")["shape"][0]

        self.post_texts(f"/v2/models/{Settings.model}/infer", body, len(texts), labels)


class GatewayUser(JsonPostUser):
    """The finsent REST gateway: `POST /` [{"text": ...}] or `POST /v1/classify` {"texts": [...]}."""

    default_host = "http://localhost:8080"

    @task
    def classify(self):
        texts = self.next_texts()
        classic = Settings.gateway_path == "/"
        body = [{"text": t} for t in texts] if classic else {"texts": texts, "model": Settings.model}

        def predictions(payload):
            items = payload if classic else payload["predictions"]
            if not all("label" in item and "score" in item for item in items):
                raise ValueError("an item lacks label or score")
            return len(items)

        self.post_texts(Settings.gateway_path, body, len(texts), predictions)


class TrafficUser(FinsentUser, User):
    """A traffic class over gRPC (finsent.traffic): requests carry its priority and parameter, and are
    reported under the class's name (request_type), so a sweep shows each class's latency."""

    abstract = True
    wait_time = constant(0)

    def on_start(self):
        self.client = grpcclient.InferenceServerClient(grpc_address(self.host))

    def on_stop(self):
        self.client.close()

    def send(self, traffic: str, priority: int, model: str, texts: list[str], output: str) -> None:
        batch = grpcclient.InferInput("TEXT", [len(texts), 1], "BYTES")
        batch.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=np.object_).reshape(-1, 1))
        start, length, error = time.perf_counter(), 0, None
        try:
            result = self.client.infer(
                model,
                [batch],
                priority=priority,
                parameters={TRAFFIC_PARAMETER: priority},
                client_timeout=Settings.timeout_s,
            )
            length = result.get_response().ByteSize()
            check_rows(len(result.as_numpy(output)), len(texts), output)
        except Exception as exc:  # a refusal for load included: reported to Locust as a failure
            error = exc
        self.report(traffic, f"{model} [{len(texts)} texts]", start, length, error, len(texts))


class InteractiveUser(TrafficUser):
    """A dashboard: one text every 50 ms (or right after a slower answer), interactive priority."""

    wait_time = constant_pacing(0.05)

    @task
    def infer(self):
        self.send("interactive", INTERACTIVE, Settings.model, self.next_texts()[:1], "LABEL")


class BackgroundUser(TrafficUser):
    """A bulk job and documents: requests of --background-rows texts (default: the server's
    background_batch_size) back to back, and now and then a document of 40 sentences to the model's
    document model, at background priority. One per run."""

    fixed_count = 1  # a sweep's other users are interactive: each level adds dashboards to one bulk job

    def on_start(self):
        super().on_start()
        # As finsent score does: requests no bigger than the joined run the server allows background work.
        config = self.client.get_model_config(Settings.model, as_json=True)["config"]
        parameters = config.get("parameters", {})
        self.rows = Settings.background_rows or int(
            parameters.get(BACKGROUND_ROWS_PARAMETER, {}).get("string_value") or config.get("max_batch_size", 1)
        )
        # ... and to the server's background copy of the ensemble, where it has one (CPU).
        self.model = parameters.get(BACKGROUND_MODEL_PARAMETER, {}).get("string_value") or Settings.model

    @task(9)
    def bulk(self):
        saved, Settings.texts_per_request = Settings.texts_per_request, self.rows
        try:
            texts = self.next_texts()
        finally:
            Settings.texts_per_request = saved
        self.send("background", BACKGROUND, self.model, texts, "LABEL")

    @task(1)
    def document(self):
        corpus = Settings.corpus or load_corpus()
        text = " ".join(random.choice(corpus) for _ in range(40))
        self.send("document", BACKGROUND, f"{Settings.model}_document", [text], "SENTENCES")
