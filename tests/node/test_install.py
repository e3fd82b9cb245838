"""Scenario 1: `kubectl meshready install` on a real node, and the agent pod as it really runs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshready.cluster.names import EVENT_COMPONENT

from .cluster import NODE_NAME, NodeCluster
from .fixtures import AGENT_NAMESPACE, Installed
from .helpers import (
    METRICS_PORT,
    condition,
    dump,
    metric_value,
    metrics,
    node_events,
    ready_agent_pod,
    rendered_daemonset,
    startup_taints,
)

pytestmark = pytest.mark.node


def test_install_finishes_and_the_rollout_completes(
    node_cluster: NodeCluster, installed_agent: Installed
) -> None:
    result = installed_agent.result
    assert result.returncode == 0, result.stdout + result.stderr
    status = node_cluster.kubectl(
        "rollout",
        "status",
        "daemonset/meshready-agent",
        "-n",
        AGENT_NAMESPACE,
        "--timeout=120s",
        timeout=150,
    )
    assert "successfully rolled out" in status.stdout
    pod = ready_agent_pod(node_cluster)
    assert pod["spec"]["nodeName"] == NODE_NAME
    agent = pod["spec"]["containers"][0]
    assert agent["image"] == installed_agent.image.ref
    assert agent["imagePullPolicy"] == "Never"


def _module_syscalls_allowed(seccomp: dict[str, Any]) -> bool:
    allowed = {
        name
        for rule in seccomp["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args")
        for name in rule["names"]
    }
    return {"finit_module", "init_module"} <= allowed


def _check_oci_spec(oci: dict[str, Any], wanted: dict[str, Any], name: str) -> None:
    """The OCI runtime spec containerd gave runc carries exactly WANTED's security context."""
    process, linux = oci["process"], oci["linux"]
    context = wanted["securityContext"]
    caps = context["capabilities"]
    assert caps["drop"] == ["ALL"], name
    expected = {f"CAP_{c}" for c in caps.get("add", [])}
    for kind in ("bounding", "effective", "permitted"):
        assert set(process["capabilities"].get(kind) or []) == expected, (name, kind)
    assert process["user"]["uid"] == context["runAsUser"] == 0, name
    # allowPrivilegeEscalation: false -> no_new_privs; readOnlyRootFilesystem -> read-only root.
    assert context["allowPrivilegeEscalation"] is False
    assert process.get("noNewPrivileges") is True, name
    assert oci["root"].get("readonly") is context["readOnlyRootFilesystem"] is True, name
    # Not privileged: the runtime masks and write-protects /proc and /sys paths.
    assert context["privileged"] is False
    assert linux.get("maskedPaths") and linux.get("readonlyPaths"), name
    # RuntimeDefault = containerd's default profile: deny by default; module loading allowed
    # exactly when the container has CAP_SYS_MODULE.
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
    seccomp = linux.get("seccomp")
    assert seccomp and seccomp["defaultAction"] == "SCMP_ACT_ERRNO", (name, dump(linux))
    assert _module_syscalls_allowed(seccomp) == ("CAP_SYS_MODULE" in expected), name
    mounts = {m["destination"]: m for m in oci["mounts"]}
    for mount in wanted.get("volumeMounts", []):
        found = mounts[mount["mountPath"]]
        read_only = "ro" in found["options"]
        assert read_only == bool(mount.get("readOnly")), (name, found)
    if "/host/lib/modules" in mounts:
        assert mounts["/host/lib/modules"]["source"] == "/lib/modules"


def test_pod_runs_with_exactly_the_rendered_security_context(
    node_cluster: NodeCluster, installed_agent: Installed
) -> None:
    rendered = rendered_daemonset(installed_agent.image.ref)["spec"]["template"]["spec"]
    pod = ready_agent_pod(node_cluster)
    spec = pod["spec"]
    # What the API server stored is what was rendered (no admission or defaulting changed it).
    assert spec["securityContext"] == rendered["securityContext"]
    assert spec["serviceAccountName"] == rendered["serviceAccountName"]
    statuses = {
        s["name"]: s
        for s in pod["status"].get("initContainerStatuses", []) + pod["status"]["containerStatuses"]
    }
    kinds = (("initContainers", "init container"), ("containers", "container"))
    checked = []
    for field, what in kinds:
        running = {c["name"]: c for c in spec.get(field, [])}
        assert set(running) == {c["name"] for c in rendered.get(field, [])}, field
        for wanted in rendered.get(field, []):
            name = wanted["name"]
            stored = running[name]
            assert stored["securityContext"] == wanted["securityContext"], name
            assert stored["volumeMounts"][: len(wanted["volumeMounts"])] == wanted["volumeMounts"]
            assert stored["image"] == installed_agent.image.ref
            # What containerd handed runc for this container (an init container's record stays
            # after it exited).
            oci = node_cluster.container_spec(statuses[name]["containerID"])
            _check_oci_spec(oci, wanted, f"{what} {name}")
            checked.append(name)
    # At least the agent itself; the capabilities of all containers together are the least the
    # agent needs: loading (SYS_MODULE) and the in-place probe (NET_ADMIN, NET_RAW).
    assert "agent" in checked
    every = {
        cap
        for field, _ in kinds
        for c in rendered.get(field, [])
        for cap in c["securityContext"]["capabilities"].get("add", [])
    }
    assert every == {"SYS_MODULE", "NET_ADMIN", "NET_RAW"}


def test_agent_publishes_on_the_node_and_removes_the_startup_taint(
    node_cluster: NodeCluster, installed_agent: Installed
) -> None:
    ready_agent_pod(node_cluster)

    def published() -> dict[str, object] | None:
        node = node_cluster.node()
        found = condition(node)
        return node if found and found["status"] == "True" and not startup_taints(node) else None

    node = node_cluster.wait_for("condition True and startup taint gone", published, 60)
    found = condition(node)
    assert found is not None and found["reason"] in {"InterceptionVerified", "ModulesReady"}
    labels = node["metadata"]["labels"]
    assert labels["meshready.io/ready"] == "true"
    assert labels["meshready.io/backend"] in {"legacy", "nft", "nftables"}
    report = json.loads(node["metadata"]["annotations"]["meshready.io/report"])
    assert report["schema"] == "meshready.io/node-report/v1", report
    assert startup_taints(node) == []
    events = node_events(node_cluster)
    ours = [e for e in events if e.get("source", {}).get("component") == EVENT_COMPONENT]
    assert ours, dump(events)
    assert all(e["source"].get("host") == NODE_NAME for e in ours)


def test_metrics_answer_on_the_pod_port(
    node_cluster: NodeCluster, installed_agent: Installed
) -> None:
    pod = ready_agent_pod(node_cluster)
    ports = pod["spec"]["containers"][0]["ports"]
    assert ports == [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}]
    text = metrics(node_cluster, pod["metadata"]["name"])
    assert metric_value(text, "meshready_node_ready") == 1.0
    assert metric_value(text, "meshready_published") == 1.0
    assert (metric_value(text, "meshready_probe_success") or 0) == 1.0
