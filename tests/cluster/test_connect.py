"""Finding the cluster the way kubectl does (the plugin parses --kubeconfig/--context itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from meshready.cluster.connect import make_client, resolve
from meshready.cluster.errors import ClusterError


def _config(name: str, server: str, namespace: str | None = None) -> dict[str, Any]:
    context: dict[str, Any] = {"cluster": name, "user": name}
    if namespace:
        context["namespace"] = namespace
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": name, "cluster": {"server": server, "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": name, "user": {"token": f"token-{name}"}}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
    }


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_explicit_file_and_context(tmp_path: Path) -> None:
    doc = _config("a", "https://a.example:6443", "team-a")
    doc["clusters"] += _config("b", "https://b.example:6443")["clusters"]
    doc["users"] += _config("b", "https://b.example:6443")["users"]
    doc["contexts"] += _config("b", "https://b.example:6443")["contexts"]
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(doc))
    current = resolve(path)
    assert current.server == "https://a.example:6443" and current.namespace == "team-a"
    assert current.source == str(path)
    other = resolve(path, "b")
    assert other.server == "https://b.example:6443" and other.namespace == "default"
    with pytest.raises(ClusterError, match="Context 'c' not found"):
        resolve(path, "c")
    client = make_client(other)
    assert client.namespace == "default"
    client.close()


def test_kubeconfig_variable_merges_files_first_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "1", tmp_path / "2"
    one = _config("a", "https://first.example")
    one.pop("current-context")
    first.write_text(yaml.safe_dump(one))
    second.write_text(
        yaml.safe_dump(_config("a", "https://second.example") | {"current-context": "a"})
    )
    monkeypatch.setenv("KUBECONFIG", f"{first}:{tmp_path / 'missing'}:{second}")
    connection = resolve()
    assert connection.server == "https://first.example"  # the first file to name it wins
    assert connection.source == str(first)


def test_default_file_then_in_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ClusterError, match="no cluster configuration"):
        resolve()
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("sa-token")
    (sa / "namespace").write_text("meshready")
    (sa / "ca.crt").write_text("")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    in_cluster = resolve(service_account=sa)
    assert in_cluster.source == "in-cluster"
    assert in_cluster.server == "https://10.96.0.1:443" and in_cluster.namespace == "meshready"
    home = tmp_path / "home" / ".kube"
    home.mkdir(parents=True)
    (home / "config").write_text(yaml.safe_dump(_config("h", "https://home.example")))
    assert resolve(service_account=sa).server == "https://home.example"  # a kubeconfig wins


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="kubeconfig not found"):
        resolve(tmp_path / "nope")
    bad = tmp_path / "bad"
    bad.write_text("clusters: [unclosed")
    with pytest.raises(ClusterError, match="not a kubeconfig"):
        resolve(bad)
    empty = tmp_path / "empty"
    empty.write_text("- a\n- b\n")
    with pytest.raises(ClusterError, match="not a kubeconfig"):
        resolve(empty)
    no_context = tmp_path / "nocontext"
    doc = _config("a", "https://a.example")
    doc.pop("current-context")
    no_context.write_text(yaml.safe_dump(doc))
    with pytest.raises(ClusterError, match="kubeconfig"):
        resolve(no_context)
