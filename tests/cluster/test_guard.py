"""cluster.guard: the bounds lightkube 1.0 leaves out, on a real Client (no server needed)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx2
import pytest
from lightkube import ConfigError

from meshready.cluster.connect import make_client, resolve
from meshready.cluster.guard import BoundedExecAuth


def _kubeconfig(tmp_path: Path, user: dict[str, object]) -> Path:
    path = tmp_path / "kc"
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))  # fmt: skip
    return path


def _plugin(tmp_path: Path, body: str) -> dict[str, object]:
    script = tmp_path / "plugin"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(script)}}


def test_watches_get_a_read_timeout_and_exec_plugins_are_bounded(tmp_path: Path) -> None:
    user = _plugin(tmp_path, 'echo \'{"status": {"token": "t"}}\'\n')
    client = make_client(resolve(_kubeconfig(tmp_path, user)))
    generic = client._client
    assert generic._watch_timeout.read is not None and generic._watch_timeout.read > 300
    assert isinstance(generic._client.auth, BoundedExecAuth)
    assert generic._client.auth._token() == "Bearer t"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("echo hello\n", "ExecCredential"),
        ("echo '[[[[[[[['\n", "ExecCredential"),
        ("echo oops >&2; exit 3\n", "exit 3: oops"),
        ('printf \'%s\' \'{"status": {"token": "a\\nb"}}\'\n', "unusable token"),
    ],
)
def test_exec_plugin_failures_are_config_errors(tmp_path: Path, body: str, message: str) -> None:
    client = make_client(resolve(_kubeconfig(tmp_path, _plugin(tmp_path, body))))
    with pytest.raises(ConfigError, match=message):
        client._client._client.auth._token()


def test_an_error_without_content_type_is_an_http_error(tmp_path: Path) -> None:
    from lightkube.resources.core_v1 import Node

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(500, content=b"boom")

    client = make_client(resolve(_kubeconfig(tmp_path, {"token": "t"})))
    client._client._client._transport = httpx2.MockTransport(answer)
    with pytest.raises(httpx2.HTTPStatusError):
        client.get(Node, "n")
