"""Bounds for a lightkube Client: what lightkube 1.0.1 leaves unbounded, made finite.

- An exec credential plugin (``users[].user.exec`` in a kubeconfig) runs with a timeout, its
  output is capped, and output that is not an ExecCredential is a ConfigError naming the plugin
  (lightkube waits forever, reads everything and lets ``json``/``KeyError`` escape).
- A watch gets a read timeout a little longer than the ``timeoutSeconds`` the server is asked
  for (lightkube sets none, so a connection that goes silent would hang the watcher for ever).
- An error response without a ``Content-Type`` header gets one, so that lightkube's error
  handling (which indexes the header) raises an HTTP error instead of a KeyError.

The attributes set here are lightkube 1.0's and httpx2's (``Client._client``,
``GenericClient._watch_timeout``, ``httpx2.Client.auth``/``event_hooks``); ``guard_client``
checks they exist and fails loudly if a new version moved them (tests/cluster/test_guard.py).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Generator
from typing import Any

import httpx2
from lightkube import Client, ConfigError
from lightkube.config.client_adapter import ExecAuth

EXEC_TIMEOUT = 30.0  # kubectl has none; 30 s is far above any plugin's normal run (about 1 s)
EXEC_OUTPUT_CAP = 1024 * 1024
WATCH_READ_MARGIN = 30.0


class BoundedExecAuth(httpx2.Auth):
    """ExecAuth with a timeout, a size cap, and errors that say what went wrong."""

    def __init__(self, inner: ExecAuth, timeout: float = EXEC_TIMEOUT) -> None:
        self._inner = inner
        self._timeout = timeout
        self._last_bearer: str | None = None

    def _token(self) -> str:
        command, env = self._inner._prepare()
        name = os.path.basename(command[0]) if command else "?"
        try:
            proc = subprocess.run(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=self._timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ConfigError(
                f"exec credential plugin {name} did not finish within {self._timeout:g} s"
            ) from exc
        except OSError as exc:
            raise ConfigError(f"cannot run exec credential plugin {name}: {exc.strerror}") from exc
        if proc.returncode != 0:
            err = " ".join(proc.stderr[:500].decode("utf-8", "replace").split())
            raise ConfigError(f"exec credential plugin {name} exit {proc.returncode}: {err}")
        if len(proc.stdout) > EXEC_OUTPUT_CAP:
            raise ConfigError(f"exec credential plugin {name} printed more than 1 MiB")
        try:
            doc = json.loads(proc.stdout)
            token = doc["status"]["token"]
        except (ValueError, RecursionError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"exec credential plugin {name} did not print an ExecCredential with "
                "status.token (JSON)"
            ) from exc
        if not isinstance(token, str) or not token or any(c in token for c in "\r\n"):
            raise ConfigError(f"exec credential plugin {name} printed an unusable token")
        return f"Bearer {token}"

    def sync_auth_flow(
        self, request: httpx2.Request
    ) -> Generator[httpx2.Request, httpx2.Response, None]:
        if self._last_bearer:
            request.headers["Authorization"] = self._last_bearer
            response = yield request
            if response.status_code != 401:
                return
        self._last_bearer = self._token()
        request.headers["Authorization"] = self._last_bearer
        yield request


def _content_type_hook(response: httpx2.Response) -> None:
    if response.status_code >= 400 and "content-type" not in response.headers:
        response.headers["Content-Type"] = "application/octet-stream"


def guard_client(
    client: Client, *, watch_read_timeout: float = 300.0 + WATCH_READ_MARGIN
) -> Client:
    """Bound CLIENT's exec plugin, watches and error handling (see the module docstring)."""
    generic: Any = getattr(client, "_client", None)
    http: Any = getattr(generic, "_client", None)
    if generic is None or http is None or not hasattr(generic, "_watch_timeout"):
        raise RuntimeError("lightkube's client internals changed: update meshready.cluster.guard")
    old = generic._watch_timeout
    generic._watch_timeout = httpx2.Timeout(
        connect=old.connect, read=watch_read_timeout, write=old.write, pool=old.pool
    )
    if isinstance(http.auth, ExecAuth):
        http.auth = BoundedExecAuth(http.auth)
    hooks = dict(http.event_hooks)
    hooks["response"] = [*hooks.get("response", []), _content_type_hook]
    http.event_hooks = hooks
    return client
