"""Triton's addresses (finsent/address.py): checked when a client is made; the default ports, and the
Makefile's copy of them."""

import re
from pathlib import Path

import pytest

from finsent import AsyncClient, Client
from finsent.address import DEFAULT_URLS, GATEWAY_PORT, GRPC_PORT, HTTP_PORT, METRICS_PORT, split_url


def test_the_address_is_checked_when_the_client_is_made():
    for good, protocol in (
        ("localhost:8001", "grpc"),
        ("grpc://triton:8001/", "grpc"),
        ("http://10.0.0.7:8000", "http"),
        ("[::1]:8001", "grpc"),
        ("unix:///tmp/triton.sock", "grpc"),
        ("dns:///triton:8001", "grpc"),
    ):
        Client(good, protocol).close()  # nothing is connected yet
    for bad, protocol in (
        ("localhost", "grpc"),
        ("localhost:abc", "http"),
        ("localhost:0", "grpc"),
        ("localhost:65536", "grpc"),
        ("unix:///tmp/triton.sock", "http"),
        ("a b:8000", "http"),
    ):
        with pytest.raises(ValueError, match="is not host:port"):
            Client(bad, protocol)
        with pytest.raises(ValueError, match="is not host:port"):
            AsyncClient(bad, protocol)


def test_a_client_named_no_address_calls_this_machines_triton_on_its_default_ports():
    assert Client().url == DEFAULT_URLS["grpc"] == f"localhost:{GRPC_PORT}"
    assert AsyncClient(protocol="http").url == DEFAULT_URLS["http"] == f"localhost:{HTTP_PORT}"
    assert split_url(f"http://localhost:{HTTP_PORT}/", "http") == DEFAULT_URLS["http"]


def test_the_makefiles_port_knobs_default_to_these_ports():
    # Make cannot import them: its copy is held to them here (a knob's value is `make serve`'s port).
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    knobs = dict(re.findall(r"^([A-Z_]+_PORT) \?= (\d+)$", makefile, flags=re.M))
    assert knobs == {
        "HTTP_PORT": str(HTTP_PORT),
        "GRPC_PORT": str(GRPC_PORT),
        "METRICS_PORT": str(METRICS_PORT),
        "GATEWAY_PORT": str(GATEWAY_PORT),
    }
