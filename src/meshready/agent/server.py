"""``/healthz``, ``/readyz`` and ``/metrics`` on a standard-library ThreadingHTTPServer.

- ``/healthz``: 200 while the agent's loop is alive and not stuck (it marks progress at least every
  few seconds, also while it waits); 503 otherwise, so the kubelet restarts a wedged agent.
- ``/readyz``: 200 once the agent is working: it has published a check on its Node (with
  ``--no-cluster``: it has checked once); 503 before. The DaemonSet's readiness probe uses it, so
  a rollout (``kubectl rollout status``, ``install --wait``, GitOps health) completes when every
  agent runs and reports, whether or not its node can be made ready: node readiness is the Node
  condition, the label and the startup taint (issue 14).
- ``/metrics``: Prometheus text format (``agent.metrics``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from meshready.agent.metrics import CONTENT_TYPE, Metrics


@dataclass
class Health:
    """What the probes answer from; written by the loop, read by the server threads."""

    stuck_after: float = 120.0
    ready: bool = False
    reason: str = "starting: no check yet"
    last_progress: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def progress(self) -> None:
        with self.lock:
            self.last_progress = time.monotonic()

    def set_ready(self, ready: bool, reason: str) -> None:
        with self.lock:
            self.ready = ready
            self.reason = reason

    def live(self) -> tuple[bool, str]:
        with self.lock:
            idle = time.monotonic() - self.last_progress
        if idle > self.stuck_after:
            return False, f"loop made no progress for {idle:.0f} s"
        return True, "ok"

    def readiness(self) -> tuple[bool, str]:
        with self.lock:
            return self.ready, self.reason


def parse_addr(text: str) -> tuple[str, int]:
    """HOST:PORT (``:PORT`` or ``PORT`` mean all addresses); ``[::1]:PORT`` for IPv6."""
    text = text.strip()
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or "0.0.0.0"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


MAX_CONNECTIONS = 8  # the kubelet's probes and a Prometheus scrape need two or three
CONNECTION_TIMEOUT = 5.0  # seconds a client may take to send a request or read the answer


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most MAX_CONNECTIONS at a time: one more is closed at once
    (it costs an accept and a close, never a thread), so idle connections cannot pile up."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 16

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self.refused = 0
        super().__init__(*args, **kwargs)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class HealthServer:
    def __init__(self, addr: tuple[str, int], health: Health, metrics: Metrics) -> None:
        health_ref, metrics_ref = health, metrics

        class Handler(BaseHTTPRequestHandler):
            server_version = "meshready-agent"
            sys_version = ""
            timeout = CONNECTION_TIMEOUT  # socket timeout: a silent client is dropped

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    ok, why = health_ref.live()
                    self._send(200 if ok else 503, (why + "\n").encode(), "text/plain")
                elif path == "/readyz":
                    ok, why = health_ref.readiness()
                    self._send(200 if ok else 503, (why + "\n").encode(), "text/plain")
                elif path == "/metrics":
                    self._send(200, metrics_ref.render(), CONTENT_TYPE)
                else:
                    self._send(404, b"not found: /healthz, /readyz, /metrics\n", "text/plain")

            do_HEAD = do_GET

        self._server = _Server(addr, Handler)
        self.port = int(self._server.server_address[1])
        self.host = str(self._server.server_address[0])
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.5,), name="health-server", daemon=True
        )

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
