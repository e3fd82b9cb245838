"""The agent as a real process (through tests/agent/launch.py), with its metrics read over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
LAUNCH = REPO / "tests" / "agent" / "launch.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def meshready_argv(*args: str) -> list[str]:
    """Run the CLI the way the tests do (see launch.py)."""
    return [sys.executable, str(LAUNCH), *args]


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        meshready_argv(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


class AgentProcess:
    """`meshready agent ARGS` in the background; stderr goes to LOG."""

    def __init__(
        self,
        args: Sequence[str],
        log: Path,
        *,
        loader: str | None = "fake",
        env: dict[str, str] | None = None,
        wrap: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        self.args = (
            [*args]
            if "--metrics-addr" in args
            else [*args, "--metrics-addr", f"127.0.0.1:{self.port}"]
        )
        self.log = log
        self.env = {**os.environ, **(env or {})}
        if loader:
            self.env["MESHREADY_TEST_LOADER"] = loader
        self.wrap = list(wrap)
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> AgentProcess:
        self._out = self.log.open("ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [*self.wrap, *meshready_argv("agent", *self.args)],
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        return self

    def __enter__(self) -> AgentProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def metrics(self) -> dict[str, float]:
        """Samples as 'name{label="v",...}' -> value (labels sorted); {} when not up yet."""
        try:
            _, text = self.get("/metrics")
        except OSError:
            return {}
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return out

    def metric(self, name: str) -> float:
        return self.metrics().get(name, float("nan"))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log.read_text(errors="replace")

    def wait_for(self, check: Callable[[], object], timeout: float = 20.0, what: str = "") -> float:
        """Poll CHECK until true; return the seconds since start; fail with the agent's log."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(
                    f"agent exited ({self.proc and self.proc.returncode}):\n{self.output()}"
                )
            try:
                if check():
                    return time.monotonic() - self.started
            except Exception as exc:
                last = exc
            time.sleep(0.02)
        raise AssertionError(
            f"not true after {timeout} s: {what} (last error: {last})\n--- agent log:\n{self.output()[-4000:]}"
        )

    def terminate(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def wait_exit(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if hasattr(self, "_out"):
            self._out.close()
