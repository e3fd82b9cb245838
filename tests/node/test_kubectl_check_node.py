"""`kubectl meshready check node/NAME` and `fix node/NAME` through a real kubelet (issue 14): the
short-lived pod is created on the node, really runs the meshready image there with the host root
read-only at /host, its report is printed, and it is deleted."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .cluster import NODE_NAME, NodeCluster
from .fixtures import AgentImage

pytestmark = pytest.mark.node

NAMESPACE = "default"


def _no_check_pods(cluster: NodeCluster) -> list[str]:
    pods = cluster.api.get(f"/api/v1/namespaces/{NAMESPACE}/pods")["items"]
    return [p["metadata"]["name"] for p in pods if p["metadata"]["name"].startswith("meshready-")]


def _run(cluster: NodeCluster, image: AgentImage, *args: str) -> Any:
    return cluster.kubectl(
        "meshready",
        *args,
        f"node/{NODE_NAME}",
        "--via",
        "pod",
        "--image",
        image.ref,
        "--image-pull-policy",
        "Never",
        "-n",
        NAMESPACE,
        "--timeout",
        "150",
        timeout=240,
        check=False,
    )


def test_check_node_runs_a_read_only_pod_on_the_node_and_deletes_it(
    node_cluster: NodeCluster, agent_image: AgentImage
) -> None:
    result = _run(node_cluster, agent_image, "check", "-o", "json")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    data = json.loads(result.stdout)
    assert data["schema"] == "meshready.io/node-check/v1"
    (node,) = data["nodes"]
    assert node["error"] is None, node
    assert node["via"] == "pod" and node["pod_deleted"] is True
    report = node["result"]
    assert report["schema"] == "meshready.io/report/v1"
    # It looked at the node's kernel through /host: the release the kubelet reports.
    kernel = node_cluster.node()["status"]["nodeInfo"]["kernelVersion"]
    assert report["kernel"]["release"] == kernel
    assert report["kernel"]["source"] == "host-root:/host"
    assert report["machine"]["kubernetes_node"] is True  # the kubelet's files are under /host
    assert node["ready"] == report["ready"] and result.returncode == (0 if report["ready"] else 1)
    assert _no_check_pods(node_cluster) == []

    text = _run(node_cluster, agent_image, "check")
    assert f"node/{NODE_NAME}, check by pod meshready-check-" in text.stdout
    assert "(deleted)" in text.stdout and f"node/{NODE_NAME}: kernel {kernel}" in text.stdout
    assert _no_check_pods(node_cluster) == []


def test_fix_node_dry_run_runs_with_the_agents_loader_capabilities(
    node_cluster: NodeCluster, agent_image: AgentImage
) -> None:
    result = _run(node_cluster, agent_image, "fix", "--dry-run", "-o", "json")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    (node,) = json.loads(result.stdout)["nodes"]
    assert node["error"] is None, node
    plan = node["result"]
    assert plan["schema"] == "meshready.io/fix/v1" and plan["dry_run"] is True
    assert plan["plan"]["blockers"] == [] or node["ready"] is not None
    assert node["pod_deleted"] is True and _no_check_pods(node_cluster) == []
