"""The fleet view against a real kube-apiserver: `meshready status` and `diagnose --cluster`.

Nodes carry what the agent publishes (condition, labels, report annotation), in every state; pods
fail for every cause code with real logs (tests/data/logs), served by the loopback fake kubelet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from meshready.cluster.names import ANNOTATION_REPORT, CONDITION_TYPE, LABEL_BACKEND, LABEL_READY
from tests.apiserver.cluster import FakeKubelet, LocalCluster
from tests.conftest import DATA, CliResult

LOGS = DATA / "logs"

# cause -> (container, log file)
CAUSE_LOGS = {
    "legacy-table-missing": ("istio-init", "istio-28897-rhel8-legacy.log"),
    "extension-missing": ("istio-init", "telepresence-3966-nft-owner.log"),
    "nftables-unavailable": ("linkerd-init", "linkerd-9053-cos-generation-id.log"),
    "module-request-denied": ("istio-init", "istio-24101-avc-module-request.log"),
    "permission-denied": ("linkerd-init", "linkerd-2056-plain-root.log"),
    "module-not-in-kernel": ("istio-init", "wps-8-el9-iptables-legacy.log"),
    "redirect-not-applied": ("istio-validation", "istio-48734-validation.log"),
    "rule-rejected": ("istio-init", "istio-50072-cni-ambient-line-failed.log"),
    "tool-missing": ("istio-init", "linkerd-14538-cni-no-binary.log"),
}


def _publish(
    cluster: LocalCluster,
    node: str,
    *,
    status: str,
    reason: str,
    report: dict[str, Any],
    boot_id: str = "boot-1",
) -> None:
    cluster.api.merge_patch(
        f"/api/v1/nodes/{node}",
        {
            "metadata": {
                "labels": {LABEL_READY: status.lower(), LABEL_BACKEND: "legacy"},
                "annotations": {ANNOTATION_REPORT: json.dumps(report)},
            }
        },
    )
    now = "2026-11-27T00:00:00Z"
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "message": "ok",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
    mesh = {
        "type": CONDITION_TYPE,
        "status": status,
        "reason": reason,
        "message": reason,
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
    cluster.api.merge_patch(
        f"/api/v1/nodes/{node}/status",
        {"status": {"conditions": [ready, mesh], "nodeInfo": {"bootID": boot_id}}},
    )


def _report(
    ready: bool, loadable: list[str], boot_id: str = "boot-1", absent: list[str] | None = None
) -> dict[str, Any]:
    modules: dict[str, list[str]] = (
        {"loaded": ["x_tables"], "loadable": loadable} if loadable else {"loaded": ["x_tables"]}
    )
    if absent:
        modules["absent"] = absent
    return {
        "schema": "meshready.io/node-report/v1",
        "ready": ready,
        "backend": "legacy",
        "kernel": "5.15.0-100.96.32.el8uek.aarch64",
        "modules": modules,
        "bootID": boot_id,
    }


def _agent_pod(cluster: LocalCluster, ns: str, node: str, running: bool) -> None:
    state = {"running": {}} if running else {"waiting": {"reason": "CrashLoopBackOff"}}
    cluster.create_pod(
        ns,
        f"agent-{node}",
        node_name=node,
        labels={"app.kubernetes.io/name": "meshready-agent"},
        containers=[{"name": "agent", "image": "meshready"}],
        status={
            "phase": "Running" if running else "Pending",
            "containerStatuses": [
                {
                    "name": "agent",
                    "image": "meshready",
                    "imageID": "",
                    "ready": running,
                    "restartCount": 0 if running else 4,
                    "state": state,
                }
            ],
        },
    )


@pytest.fixture
def fleet(cluster: LocalCluster, kubelet: FakeKubelet, namespace: str) -> dict[str, str]:
    """Six nodes, one per state, and their agent pods in NAMESPACE."""
    keys = ("ready", "notready", "noagent", "crashagent", "stale", "absent")
    names = {k: f"{namespace}-{k}" for k in keys}
    for name in names.values():
        cluster.create_node(name, kubelet=kubelet)
    _publish(
        cluster,
        names["ready"],
        status="True",
        reason="InterceptionVerified",
        report=_report(True, []),
    )
    _publish(
        cluster,
        names["notready"],
        status="False",
        reason="ModulesNotLoaded",
        report=_report(False, ["ip_tables", "iptable_nat", "xt_REDIRECT", "xt_owner"]),
    )
    _publish(
        cluster,
        names["stale"],
        status="True",
        reason="InterceptionVerified",
        report=_report(True, [], boot_id="boot-0"),
        boot_id="boot-1",
    )
    # A kernel without ip_tables at all (RHEL 9 family without the legacy module): only the node's
    # own report says a module is absent; a modprobe message in a container's log does not.
    _publish(
        cluster,
        names["absent"],
        status="False",
        reason="ModulesMissing",
        report=_report(False, [], absent=["ip_tables", "iptable_nat"]),
    )
    for key in ("ready", "notready", "stale", "absent"):
        _agent_pod(cluster, namespace, names[key], running=True)
    _agent_pod(cluster, namespace, names["crashagent"], running=False)
    return names


def test_status_reads_every_node_state(
    fleet: dict[str, str], cluster: LocalCluster, namespace: str, run_cli: Callable[..., CliResult]
) -> None:
    result = run_cli(
        "status", "--kubeconfig", str(cluster.admin_kubeconfig), "-n", namespace, "-o", "json"
    )
    assert result.code == 1, result.err  # not every node is ready
    data = json.loads(result.out)
    rows = {r["node"]: r for r in data["nodes"]}
    ready, notready = rows[fleet["ready"]], rows[fleet["notready"]]
    assert ready["ready"] is True and ready["agent"] == "running" and ready["missing"] == []
    assert ready["reason"] == "InterceptionVerified" and ready["backend"] == "legacy"
    assert ready["kernel"] == "5.15.0-100.96.32.el8uek.aarch64"
    assert notready["ready"] is False and notready["reason"] == "ModulesNotLoaded"
    assert notready["missing"] == ["ip_tables", "iptable_nat", "xt_REDIRECT", "xt_owner"]
    noagent = rows[fleet["noagent"]]
    assert noagent["ready"] is None and noagent["agent"] == "missing"
    assert noagent["reason"] == "NoAgent" and "no meshready agent" in noagent["message"]
    crash = rows[fleet["crashagent"]]
    assert crash["ready"] is None and crash["agent"] == "not-running"
    assert crash["reason"] == "NotReportedYet" and "CrashLoopBackOff" in crash["message"]
    stale = rows[fleet["stale"]]
    assert stale["ready"] is None and stale["reason"] == "StaleReport"
    assert data["counts"]["ready"] >= 1 and data["all_ready"] is False


def test_status_table(
    fleet: dict[str, str], cluster: LocalCluster, namespace: str, run_cli: Callable[..., CliResult]
) -> None:
    result = run_cli("status", "--kubeconfig", str(cluster.admin_kubeconfig), "-n", namespace)
    assert result.code == 1
    assert fleet["notready"] in result.out and "ip_tables" in result.out
    assert "nodes:" in result.out.splitlines()[-1]


def _failing_pod(
    cluster: LocalCluster,
    kubelet: FakeKubelet,
    ns: str,
    node: str,
    name: str,
    container: str,
    log: Path,
) -> None:
    cluster.create_pod(
        ns,
        name,
        node_name=node,
        init_containers=[{"name": container, "image": "proxyv2"}],
        containers=[{"name": "app", "image": "app"}],
        status={
            "phase": "Pending",
            "initContainerStatuses": [
                {
                    "name": container,
                    "image": "proxyv2",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 5,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                }
            ],
        },
    )
    kubelet.set_log(ns, name, container, log.read_text(), previous=True)
    kubelet.set_log(ns, name, container, "")


def test_diagnose_cluster_finds_every_cause(
    fleet: dict[str, str],
    cluster: LocalCluster,
    kubelet: FakeKubelet,
    namespace: str,
    run_cli: Callable[..., CliResult],
) -> None:
    # The legacy failure on the node whose agent reports modules missing (cross-referenced); the
    # others on the node without an agent, where the log alone decides.
    node_of = {c: fleet["noagent"] for c in CAUSE_LOGS} | {
        "legacy-table-missing": fleet["notready"],
        "module-not-in-kernel": fleet["absent"],
    }
    for cause, (container, log) in CAUSE_LOGS.items():
        _failing_pod(
            cluster, kubelet, namespace, node_of[cause], f"app-{cause}", container, LOGS / log
        )
    # A healthy meshed pod and a failing pod whose container is not a mesh one: both ignored.
    cluster.create_pod(
        namespace,
        "healthy",
        node_name=fleet["ready"],
        init_containers=[{"name": "istio-init", "image": "proxyv2"}],
        status={
            "phase": "Running",
            "initContainerStatuses": [
                {
                    "name": "istio-init",
                    "image": "proxyv2",
                    "imageID": "",
                    "ready": True,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                }
            ],
        },
    )
    result = run_cli(
        "diagnose",
        "--cluster",
        "-n",
        namespace,
        "--kubeconfig",
        str(cluster.admin_kubeconfig),
        "-o",
        "json",
    )
    assert result.code == 1, result.err
    data = json.loads(result.out)
    by_pod = {p["pod"]: p for p in data["pods"]}
    assert set(by_pod) == {f"app-{c}" for c in CAUSE_LOGS}
    for cause in CAUSE_LOGS:
        pod = by_pod[f"app-{cause}"]
        assert pod["cause"] == cause, (cause, pod["findings"][:1])
        assert pod["node"] == node_of[cause] and pod["state"] == "CrashLoopBackOff"
    legacy = by_pod["app-legacy-table-missing"]
    assert {"ip_tables", "iptable_nat"} <= set(legacy["modules"])
    assert legacy["evidence"] and "unable to initialize table" in " ".join(legacy["evidence"])
    groups = {(g["node"], g["cause"]): g for g in data["groups"]}
    group = groups[(fleet["notready"], "legacy-table-missing")]
    assert group["node_ready"] is False
    assert group["node_missing"] == ["ip_tables", "iptable_nat", "xt_REDIRECT", "xt_owner"]
    assert group["pods"] == [f"{namespace}/app-legacy-table-missing"]
    # The fix loads what the node's agent found missing (not only what the log shows) and
    # names the real pod.
    modprobe = next(c["run"] for c in group["node_fix"] if "modprobe" in c["run"])
    assert "modprobe -a ip_tables iptable_nat xt_REDIRECT xt_owner" in " ".join(modprobe.split())
    assert group["bindings"] == [{"NAMESPACE": namespace, "POD": "app-legacy-table-missing"}]
    assert any("kubectl delete pod" in c["run"] for c in group["cluster_fix"])
    assert groups[(fleet["noagent"], "permission-denied")]["node_ready"] is None
    # Both attempts were read: the previous one holds the crash.
    assert any(r.previous for r in kubelet.requests if r.pod == "app-legacy-table-missing")


def test_diagnose_cluster_with_nothing_failed(
    cluster: LocalCluster, namespace: str, run_cli: Callable[..., CliResult]
) -> None:
    result = run_cli(
        "diagnose", "--cluster", "-n", namespace, "--kubeconfig", str(cluster.admin_kubeconfig)
    )
    assert result.code == 0, result.err
    assert "no mesh init container" in result.out


def test_unreachable_cluster_is_one_line(
    tmp_path: Path, cluster: LocalCluster, run_cli: Callable[..., CliResult]
) -> None:
    config = cluster.admin_kubeconfig.read_text().replace(cluster.server, "https://127.0.0.1:1")
    bad = tmp_path / "kubeconfig"
    bad.write_text(config)
    result = run_cli("status", "--kubeconfig", str(bad))
    assert result.code == 1
    assert result.err.startswith("meshready: error: ") and result.err.count("\n") == 1
