"""A fault-injecting HTTPS proxy on loopback, in front of the real kube-apiserver.

Clients talk TLS to the proxy (its own self-signed certificate); the proxy forwards each request to
the apiserver (TLS, the cluster's CA) unless a :class:`Fault` matches it first. A fault answers
with a status (``429`` with ``Retry-After``, ``500`` without a Content-Type, ...), delays the
answer, or drops the connection without a word. Every request is logged with its time and what
the proxy did, so tests can assert what the client did next (e.g. waited as long as asked).

Watches (``watch=true``) are streamed through chunk by chunk.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from .cluster import LocalCluster, self_signed_cert, write_kubeconfig

_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host"}


@dataclass
class Fault:
    """Matches METHOD (regex) and PATH (regex, path and query); acts TIMES times (None: always)."""

    method: str
    path: str
    status: int | None = None  # answer with this status instead of forwarding
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str | None = None  # None: no Content-Type header at all
    delay: float = 0.0  # seconds before forwarding or answering
    drop: bool = False  # close the connection without answering
    times: int | None = 1
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return bool(re.fullmatch(self.method, method) and re.search(self.path, path))


@dataclass(frozen=True)
class Seen:
    at: float  # time.monotonic()
    method: str
    path: str
    action: str  # "forwarded 200", "fault 429", "dropped", ...


class FaultProxy:
    def __init__(self, cluster: LocalCluster, workdir: Path) -> None:
        self.cluster = cluster
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        upstream = urlsplit(cluster.server)
        self._upstream = (upstream.hostname or "127.0.0.1", upstream.port or 443)
        workdir.mkdir(parents=True, exist_ok=True)
        ca = workdir / "upstream-ca.pem"
        ca.write_bytes(cluster.ca_pem)
        self._upstream_ctx = ssl.create_default_context(cafile=str(ca))
        self._upstream_ctx.check_hostname = False
        workdir.mkdir(parents=True, exist_ok=True)
        cert, key = self_signed_cert(workdir, "fault-proxy")
        self.ca_pem = cert.read_bytes()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, object]:
                sock, addr = super().get_request()
                return context.wrap_socket(sock, server_side=True), addr

        self._server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self.server = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def kubeconfig(self, path: Path, token: str, user: str, namespace: str) -> Path:
        return write_kubeconfig(
            path, server=self.server, ca_pem=self.ca_pem, token=token, user=user,
            namespace=namespace,
        )  # fmt: skip

    def requests(self, method: str = ".*", path: str = "") -> list[Seen]:
        with self._lock:
            return [
                s for s in self.seen if re.fullmatch(method, s.method) and re.search(path, s.path)
            ]

    def _record(self, method: str, path: str, action: str) -> None:
        with self._lock:
            self.seen.append(Seen(time.monotonic(), method, path, action))

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        method, path = h.command, h.path
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        fault = self._fault_for(method, path)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop:
                self._record(method, path, "dropped")
                h.close_connection = True
                with contextlib.suppress(OSError):
                    h.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault.status is not None:
                self._record(method, path, f"fault {fault.status}")
                h.send_response(fault.status)
                if fault.content_type is not None:
                    h.send_header("Content-Type", fault.content_type)
                for name, value in fault.headers.items():
                    h.send_header(name, value)
                h.send_header("Content-Length", str(len(fault.body)))
                h.end_headers()
                h.wfile.write(fault.body)
                return
        self._forward(h, method, path, body)

    def _forward(self, h: BaseHTTPRequestHandler, method: str, path: str, body: bytes) -> None:
        conn = http.client.HTTPSConnection(*self._upstream, context=self._upstream_ctx, timeout=60)
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
        try:
            conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
        except OSError:
            self._record(method, path, "upstream failed")
            h.send_error(502)
            return
        self._record(method, path, f"forwarded {resp.status}")
        h.send_response(resp.status)
        for name, value in resp.getheaders():
            if name.lower() not in _HOP and name.lower() != "content-length":
                h.send_header(name, value)
        if "watch=" in path:
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            try:
                while True:
                    chunk = resp.read1(65536)
                    if not chunk:
                        break
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    h.wfile.flush()
                h.wfile.write(b"0\r\n\r\n")
            except OSError:
                h.close_connection = True
            finally:
                conn.close()
            return
        data = resp.read()
        conn.close()
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)


def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
