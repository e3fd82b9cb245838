"""Scenario 2: a meshed workload whose init container applies Istio's sidecar rules for real.

Two Deployments, one applying the rules with `iptables-legacy-restore`, one with
`iptables-nft-restore`, in the mesh-init image (Debian bookworm + iptables). The node gets the
startup taint back (as a fresh node from a tainted pool has it), so the pods must wait; the agent
(restarted, as on a new node) removes it, and only then are they scheduled and run.
"""

from __future__ import annotations

import functools
import json
import time
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import shared_dir

from .cluster import NODE_NAME, NodeCluster
from .fixtures import AGENT_NAMESPACE, AgentImage, Installed
from .helpers import AGENT_SELECTOR, dump, node_events, ready_agent_pod, startup_taints

pytestmark = pytest.mark.node

RULES = "dns-uid-gid"  # Istio's sidecar rules with DNS capture (IPv4 and IPv6 halves)
NAMESPACE = "meshed"
BACKENDS = {"legacy": "legacy", "nft": "nft"}


def _deployment(name: str, backend: str, image: str) -> dict[str, Any]:
    apply = (
        f"iptables-{backend}-restore < /rules/{RULES}.v4.rules && "
        f"ip6tables-{backend}-restore < /rules/{RULES}.v6.rules && "
        f"echo APPLIED && iptables-{backend}-save -t nat && ip6tables-{backend}-save -t nat"
    )
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "enableServiceLinks": False,
                    "automountServiceAccountToken": False,
                    "initContainers": [
                        {
                            # As Istio's istio-init: root, NET_ADMIN + NET_RAW only.
                            "name": "mesh-init",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": ["/bin/sh", "-c", apply],
                            "securityContext": {
                                "runAsUser": 0,
                                "runAsNonRoot": False,
                                "allowPrivilegeEscalation": False,
                                "privileged": False,
                                "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]},
                            },
                            "volumeMounts": [{"name": "rules", "mountPath": "/rules"}],
                        }
                    ],
                    "containers": [
                        {
                            "name": "app",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "command": ["/bin/sleep", "infinity"],
                            "securityContext": {"runAsUser": 1000, "runAsNonRoot": True},
                        }
                    ],
                    "volumes": [{"name": "rules", "configMap": {"name": "istio-rules"}}],
                },
            },
        },
    }


def _pods(cluster: NodeCluster, app: str) -> list[dict[str, Any]]:
    return list(
        cluster.api.get(f"/api/v1/namespaces/{NAMESPACE}/pods", labelSelector=f"app={app}")["items"]
    )


def _pod_condition(pod: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in pod.get("status", {}).get("conditions", []):
        if item["type"] == kind:
            return dict(item)
    return {}


def _time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")


def test_meshed_workloads_wait_for_the_taint_then_apply_istio_rules(
    node_cluster: NodeCluster, installed_agent: Installed, mesh_init_image: AgentImage
) -> None:
    rules_dir = shared_dir() / "rules" / "sidecar-iptables"
    cluster = node_cluster
    ready_agent_pod(cluster)
    cluster.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true")
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl(
        "create",
        "configmap",
        "istio-rules",
        "-n",
        NAMESPACE,
        f"--from-file={rules_dir / (RULES + '.v4.rules')}",
        f"--from-file={rules_dir / (RULES + '.v6.rules')}",
    )
    # A node that joins a tainted pool: the startup taint is there before the workload.
    cluster.kubectl(
        "taint", "nodes", NODE_NAME, "meshready.io/not-ready=true:NoSchedule", "--overwrite"
    )
    names = {backend: f"meshed-{backend}" for backend in BACKENDS}
    for backend, name in names.items():
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=json.dumps(_deployment(name, backend, mesh_init_image.ref)),
        )

    def unschedulable() -> bool:
        for name in names.values():
            pods = _pods(cluster, name)
            if len(pods) != 1:
                return False
            scheduled = _pod_condition(pods[0], "PodScheduled")
            if scheduled.get("status") != "False" or scheduled.get("reason") != "Unschedulable":
                return False
            assert "taint" in scheduled.get("message", ""), dump(scheduled)
            assert not pods[0]["spec"].get("nodeName")
        return True

    cluster.wait_for("both workloads Unschedulable because of the taint", unschedulable, 60)

    # The agent starts on the node (here: restarts), checks, and removes the taint.
    restarted_at = datetime.strptime(
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "%Y-%m-%dT%H:%M:%SZ"
    )
    cluster.kubectl("delete", "pod", "-n", AGENT_NAMESPACE, "-l", AGENT_SELECTOR, "--wait=false")
    node = cluster.wait_for(
        "startup taint removed by the agent",
        lambda: (lambda n: n if not startup_taints(n) else None)(cluster.node()),
        90,
        interval=0.2,
    )
    assert node

    def removal_time() -> datetime | None:
        times = [
            _time(e["lastTimestamp"])
            for e in node_events(cluster)
            if e.get("reason") == "StartupTaintRemoved" and e.get("lastTimestamp")
        ]
        recent = [t for t in times if t >= restarted_at]
        return max(recent) if recent else None

    removed_at = cluster.wait_for("the agent's StartupTaintRemoved event", removal_time, 30)

    def running(name: str) -> dict[str, Any] | None:
        pods = _pods(cluster, name)
        if len(pods) == 1 and pods[0]["status"].get("phase") == "Running":
            return pods[0]
        if pods:
            for status in pods[0]["status"].get("initContainerStatuses", []):
                terminated = status.get("state", {}).get("terminated") or status.get(
                    "lastState", {}
                ).get("terminated")
                if terminated and terminated.get("exitCode"):
                    log = cluster.kubectl(
                        "logs",
                        "-n",
                        NAMESPACE,
                        pods[0]["metadata"]["name"],
                        "-c",
                        "mesh-init",
                        check=False,
                    )
                    raise AssertionError(
                        f"{name}: mesh-init failed ({terminated}):\n{log.stdout}{log.stderr}"
                    )
        return None

    for backend, name in names.items():
        pod = cluster.wait_for(f"{name} Running", functools.partial(running, name), 120)
        assert pod["spec"]["nodeName"] == NODE_NAME
        init = pod["status"]["initContainerStatuses"][0]
        assert init["state"]["terminated"]["exitCode"] == 0
        log = cluster.kubectl(
            "logs", "-n", NAMESPACE, pod["metadata"]["name"], "-c", "mesh-init"
        ).stdout
        assert "APPLIED" in log, log
        # The rules are in the pod's own network namespace, in the chosen backend.
        # (-save prints the rules normalised: `-d ... -p udp -m udp --dport 53 ...`.)
        for chain in ("ISTIO_OUTPUT_DNS", "ISTIO_IN_REDIRECT", "ISTIO_REDIRECT"):
            assert f"-A {chain} " in log, log
        assert "-j REDIRECT --to-ports 15053" in log and "-j REDIRECT --to-ports 15001" in log
        # iptables-nft-save marks its output "(nf_tables)"; the legacy one does not.
        assert ("(nf_tables)" in log) == (backend == "nft"), log
        scheduled = _pod_condition(pod, "PodScheduled")
        assert scheduled["status"] == "True"
        # Scheduled no earlier than the agent removed the taint (its Event, second precision).
        assert _time(scheduled["lastTransitionTime"]) >= removed_at, (scheduled, removed_at)


@pytest.fixture(autouse=True)
def _remove_workloads(node_cluster: NodeCluster) -> Any:
    yield
    node_cluster.kubectl(
        "delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false", check=False
    )
