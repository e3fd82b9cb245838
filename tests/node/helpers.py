"""Small helpers for the node scenarios: reading the agent's pod, Node and metrics for real."""

from __future__ import annotations

import json
from typing import Any

import yaml

from .cluster import NODE_NAME, REPO, NodeCluster
from .fixtures import AGENT_NAMESPACE

CONDITION = "MeshInterceptionReady"
STARTUP_TAINT_KEY = "meshready.io/not-ready"
AGENT_SELECTOR = "app.kubernetes.io/name=meshready-agent"
METRICS_PORT = 9808


def agent_pods(cluster: NodeCluster) -> list[dict[str, Any]]:
    pods = cluster.api.get(
        f"/api/v1/namespaces/{AGENT_NAMESPACE}/pods", labelSelector=AGENT_SELECTOR
    )
    return [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return pod.get("status", {}).get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def ready_agent_pod(cluster: NodeCluster, timeout: float = 120) -> dict[str, Any]:
    def one() -> dict[str, Any] | None:
        pods = agent_pods(cluster)
        return pods[0] if len(pods) == 1 and pod_ready(pods[0]) else None

    return dict(cluster.wait_for("one Ready agent pod", one, timeout))


def condition(node: dict[str, Any]) -> dict[str, Any] | None:
    for item in node.get("status", {}).get("conditions", []):
        if item["type"] == CONDITION:
            return dict(item)
    return None


def startup_taints(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in node.get("spec", {}).get("taints") or [] if t["key"] == STARTUP_TAINT_KEY]


def metrics(cluster: NodeCluster, pod: str) -> str:
    """GET /metrics on the agent pod's port, through the API server's pod proxy (a real TCP
    connection from the node's namespace to the pod's address)."""
    return cluster.api.request_text(
        "GET",
        f"/api/v1/namespaces/{AGENT_NAMESPACE}/pods/{pod}:{METRICS_PORT}/proxy/metrics",
        timeout=10,
    )


def metric_value(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def rendered_daemonset(image: str) -> dict[str, Any]:
    """The DaemonSet `meshready render manifests` writes for IMAGE (pull policy Never)."""
    import subprocess

    out = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "meshready"),
            "render",
            "manifests",
            "--image",
            image,
            "--image-pull-policy",
            "Never",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for doc in yaml.safe_load_all(out):
        if doc and doc.get("kind") == "DaemonSet":
            return dict(doc)
    raise AssertionError("render manifests printed no DaemonSet")


def node_events(cluster: NodeCluster) -> list[dict[str, Any]]:
    events = cluster.api.get(
        "/api/v1/events",
        fieldSelector=f"involvedObject.kind=Node,involvedObject.name={NODE_NAME}",
    )
    return list(events["items"])


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)[:4000]
