"""Scenario 3: the agent pod deleted, the kubelet restarted, and `kubectl meshready status`."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from .cluster import NODE_NAME, NodeCluster
from .fixtures import AGENT_NAMESPACE, Installed
from .helpers import (
    agent_pods,
    condition,
    dump,
    metric_value,
    metrics,
    pod_ready,
    ready_agent_pod,
    startup_taints,
)

pytestmark = pytest.mark.node


def _published_state(node: dict[str, Any]) -> tuple[Any, ...]:
    found = condition(node) or {}
    labels = node["metadata"].get("labels", {})
    return (
        found.get("status"),
        found.get("lastTransitionTime"),
        found.get("reason"),
        labels.get("meshready.io/ready"),
        labels.get("meshready.io/backend"),
        _stable_report(node["metadata"].get("annotations", {}).get("meshready.io/report")),
    )


def _stable_report(text: str | None) -> str | None:
    """The report annotation, whole: an unchanged node must get a byte-identical one."""
    return text


def _settled(cluster: NodeCluster) -> tuple[dict[str, Any], tuple[Any, ...]]:
    pod = ready_agent_pod(cluster)
    node = cluster.wait_for(
        "condition True",
        lambda: (lambda n: n if (condition(n) or {}).get("status") == "True" else None)(
            cluster.node()
        ),
        60,
    )
    return pod, _published_state(node)


def test_deleted_agent_pod_comes_back_without_flapping_the_condition(
    node_cluster: NodeCluster, installed_agent: Installed
) -> None:
    cluster = node_cluster
    old_pod, before = _settled(cluster)
    assert before[0] == "True"
    cluster.kubectl(
        "delete", "pod", "-n", AGENT_NAMESPACE, old_pod["metadata"]["name"], "--wait=false"
    )
    seen: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + 120
    new_pod: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        seen.append(_published_state(cluster.node()))
        pods = [
            p
            for p in agent_pods(cluster)
            if p["metadata"]["uid"] != old_pod["metadata"]["uid"] and pod_ready(p)
        ]
        if pods:
            text = metrics(cluster, pods[0]["metadata"]["name"])
            if metric_value(text, "meshready_published") == 1.0:
                new_pod = pods[0]
                break
        time.sleep(0.2)
    assert new_pod is not None, "no new agent pod published within 120 s"
    seen.append(_published_state(cluster.node()))
    # Never a different status, reason, transition time, label or report while it was replaced.
    assert set(seen) == {before}, dump([list(s) for s in set(seen)])
    assert len(seen) > 3  # it was watched, not just read twice


def test_kubelet_restart_loses_nothing(
    node_cluster: NodeCluster, installed_agent: Installed
) -> None:
    cluster = node_cluster
    pod, before = _settled(cluster)
    restarts = pod["status"]["containerStatuses"][0]["restartCount"]
    container_id = pod["status"]["containerStatuses"][0]["containerID"]
    cluster.restart_kubelet()
    # The kubelet reports the pod again: same pod, same container, not restarted.
    after_pod = cluster.wait_for(
        "agent pod Ready after the kubelet restart",
        lambda: (lambda p: p if p and pod_ready(p[0]) else None)(agent_pods(cluster)),
        120,
    )[0]
    assert after_pod["metadata"]["uid"] == pod["metadata"]["uid"]
    status = after_pod["status"]["containerStatuses"][0]
    assert status["containerID"] == container_id
    assert status["restartCount"] == restarts
    node = cluster.node()
    assert _published_state(node) == before
    assert startup_taints(node) == []
    # The new kubelet serves the container's logs (it found the running container again).
    logs = cluster.wait_for(
        "kubectl logs through the new kubelet",
        lambda: cluster.kubectl(
            "logs", "-n", AGENT_NAMESPACE, pod["metadata"]["name"], "-c", "agent", "--tail=5"
        ),
        60,
        interval=1,
    )
    assert logs.returncode == 0


def test_status_shows_the_node_ready(node_cluster: NodeCluster, installed_agent: Installed) -> None:
    _settled(node_cluster)
    table = node_cluster.kubectl("meshready", "status", check=False)
    assert table.returncode == 0, table.stdout + table.stderr
    assert NODE_NAME in table.stdout
    out = node_cluster.kubectl("meshready", "status", "-o", "json", check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["all_ready"] is True, dump(doc)
    (row,) = [n for n in doc["nodes"] if n["node"] == NODE_NAME]
    assert row["ready"] is True and row["missing"] == [], dump(row)
    assert not [t for t in row["taints"] if "meshready.io/" in str(t)], dump(row)
    assert row["agent"], dump(row)  # the agent pod on the node is seen
