"""Scenario 3, last: `kubectl meshready uninstall` leaves nothing behind (runs after the others)."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from .cluster import NODE_NAME, REPO, NodeCluster
from .fixtures import AGENT_NAMESPACE, Installed
from .helpers import condition, dump, ready_agent_pod

pytestmark = pytest.mark.node

_PLURAL = {
    "Namespace": ("/api/v1", "namespaces"),
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "ClusterRole": ("/apis/rbac.authorization.k8s.io/v1", "clusterroles"),
    "ClusterRoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "DaemonSet": ("/apis/apps/v1", "daemonsets"),
}


def _rendered_objects() -> list[dict[str, Any]]:
    out = subprocess.run(
        [str(REPO / ".venv" / "bin" / "meshready"), "render", "manifests"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def _path(doc: dict[str, Any]) -> str:
    kind = doc["kind"]
    assert kind in _PLURAL, f"install applies a {kind}: teach this test where it lives"
    prefix, plural = _PLURAL[kind]
    namespace = doc["metadata"].get("namespace")
    scope = f"/namespaces/{namespace}" if namespace else ""
    return f"{prefix}{scope}/{plural}/{doc['metadata']['name']}"


def test_uninstall_removes_every_object_taint_and_condition(
    node_cluster: NodeCluster, installed_agent: Installed
) -> None:
    cluster = node_cluster
    ready_agent_pod(cluster)
    # As a node pool would: the taint is on the node when uninstall runs (a node that joined).
    cluster.kubectl(
        "taint", "nodes", NODE_NAME, "meshready.io/not-ready=true:NoSchedule", "--overwrite"
    )
    result = cluster.kubectl("meshready", "uninstall", timeout=240, check=False)
    assert result.returncode == 0, result.stdout + result.stderr

    node = cluster.node()
    assert condition(node) is None, dump(node["status"]["conditions"])
    assert not [k for k in node["metadata"].get("labels", {}) if k.startswith("meshready.io/")]
    assert not [k for k in node["metadata"].get("annotations", {}) if k.startswith("meshready.io/")]
    assert not [t for t in node["spec"].get("taints") or [] if t["key"].startswith("meshready.io/")]

    api = cluster.api
    # Every object `install` applied (what `render manifests` prints) is gone; the namespace
    # after the namespace controller has emptied it.
    paths = [_path(doc) for doc in _rendered_objects()]
    assert any("/daemonsets/" in p for p in paths) and any("/roles/" in p for p in paths)
    for path in paths:
        if path.startswith("/api/v1/namespaces/") and path.count("/") == 4:
            continue  # the namespace itself: below
        assert not api.exists(path), path
    # The namespace goes too (the namespace controller empties it first).
    cluster.wait_for(
        f"namespace {AGENT_NAMESPACE} gone",
        lambda: not api.exists(f"/api/v1/namespaces/{AGENT_NAMESPACE}"),
        120,
    )

    # And nothing of the agent is left in the container runtime.
    def no_agent_containers() -> bool:
        out = cluster.ctr(
            "containers", "list", f'labels."io.kubernetes.pod.namespace"=={AGENT_NAMESPACE}'
        ).stdout
        return len([line for line in out.splitlines()[1:] if line.strip()]) == 0

    cluster.wait_for("no agent containers in containerd", no_agent_containers, 120)
    # Nothing came back: no stale condition a few seconds later either.
    assert condition(cluster.node()) is None
