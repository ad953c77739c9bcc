"""Where Triton is: the default ports (Triton's, as `make serve` and the chart listen, and the REST
gateway's), host:port addresses, and telling Triton's HTTP port from its gRPC port.

The ports are stated once, here, in the bottom layer: the clients' default URLs, the CLI, the gateway,
the local server (server/triton.py, server/__main__.py) and the load tests read them. server/health.py
(standard library only, in the Triton image) holds a copy that a test keeps equal.
"""

from __future__ import annotations

import re
import socket

from finsent.errors import FinsentError

HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PORT = 8002
GATEWAY_PORT = 8080

DEFAULT_URLS = {"grpc": f"localhost:{GRPC_PORT}", "http": f"localhost:{HTTP_PORT}"}

# gRPC name-resolver targets (unix:/path, dns:///host:port, ...) are passed to gRPC as they are.
GRPC_TARGET = re.compile(r"^(unix|unix-abstract|dns|ipv4|ipv6|vsock):")
HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(\d{1,5})$")


def split_url(url: str, protocol: str) -> str:
    """host:port without a grpc:// or http:// scheme; ValueError when it is not one."""
    if protocol not in ("grpc", "http"):
        raise ValueError(f"protocol {protocol!r}: 'grpc' or 'http'")
    for scheme in ("grpc://", "http://"):
        if url.startswith(scheme):
            url = url[len(scheme) :]
            break
    url = url.rstrip("/")
    if protocol == "grpc" and GRPC_TARGET.match(url):
        return url
    address = HOST_PORT.match(url)
    if address is None or not 0 < int(address.group(2)) < 65536:
        raise ValueError(f"Triton address {url!r} is not host:port (e.g. {DEFAULT_URLS[protocol]})")
    return url


def speaks_http(url: str, timeout_s: float = 1.0) -> bool:
    """Whether host:port answers an HTTP/1.x request: a gRPC client's only way to tell Triton's
    HTTP port from a closed one (gRPC says "Socket closed" or "Connection refused" for both)."""
    address = HOST_PORT.match(url)
    if address is None:
        return False
    try:
        with socket.create_connection((address.group(1).strip("[]"), int(address.group(2))), timeout_s) as sock:
            sock.sendall(b"GET /v2/health/live HTTP/1.0\r\n\r\n")
            return sock.recv(5) == b"HTTP/"
    except OSError:
        return False


def not_grpc(url: str) -> FinsentError:
    return FinsentError(
        f"{url} does not speak gRPC (it answers HTTP/1.x): is it the HTTP port? "
        f"Triton's gRPC port is {DEFAULT_URLS['grpc'].split(':')[1]} by default, or use protocol http"
    )


def not_http(url: str) -> FinsentError:
    """An answer that is not HTTP: most likely Triton's gRPC port given with protocol "http"."""
    return FinsentError(f"{url} does not speak HTTP (its answer is not an HTTP response): is it the gRPC port?")
