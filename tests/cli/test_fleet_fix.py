"""The fleet view's fix text (cluster.fleet_diagnose): the node's published modules replace the
log's, the real pod names fill in the kubectl step, identical failures are diagnosed once."""

from __future__ import annotations

from meshready.cluster.failing_pods import PodFailure, PodLogs
from meshready.cluster.fleet_diagnose import (
    _swap_modules,
    diagnose_pods,
    group_by_node_and_cause,
)
from meshready.cluster.published import ConditionState, NodeState
from tests.conftest import CASE

LOG = (CASE / "istio-init.log").read_text()


def _logs(pod: str, node: str, namespace: str = "apps") -> PodLogs:
    failure = PodFailure(namespace, pod, node, "istio-init", "init", "istio", "Error", 3, True)
    return PodLogs(failure, current="", previous=LOG)


def _node(name: str, loadable: list[str], absent: list[str] | None = None) -> NodeState:
    modules = {"loaded": ["ip_tables"], "loadable": loadable, "absent": absent or []}
    return NodeState(
        name=name,
        condition=ConditionState("False", "ModulesNotLoaded", "", None, None),
        ready_label="false",
        backend_label="legacy",
        report={"schema": "meshready.io/node-report/v1", "modules": modules},
        report_raw=None,
        taints=(),
    )


def test_modprobe_and_heredoc_take_the_published_modules() -> None:
    run = "sudo modprobe -a a b \\\n    c"
    assert _swap_modules(run, ("a", "b", "c"), ("x", "y")) == "sudo modprobe -a x y"
    heredoc = "sudo tee /etc/f >/dev/null <<'EOF'\na\nb\nEOF"
    assert _swap_modules(heredoc, ("a", "b"), ("b", "z")) == (
        "sudo tee /etc/f >/dev/null <<'EOF'\na\nb\nz\nEOF"
    )


def test_groups_carry_published_modules_and_pod_bindings() -> None:
    nodes = {"n1": _node("n1", ["iptable_nat", "xt_REDIRECT"])}
    pods = diagnose_pods([_logs("web-1", "n1"), _logs("web-2", "n1")], nodes)
    # the second replica's identical log on the same node: the same findings object
    assert pods[0].findings is pods[1].findings
    (group,) = group_by_node_and_cause(pods, nodes)
    assert group.modules[:2] == ("iptable_nat", "xt_REDIRECT")
    modprobe = next(s.run for s in group.node_fix if "modprobe" in s.run)
    assert modprobe == "sudo modprobe -a iptable_nat xt_REDIRECT"
    assert group.bindings == (
        {"NAMESPACE": "apps", "POD": "web-1"},
        {"NAMESPACE": "apps", "POD": "web-2"},
    )
    assert all("$POD" in s.run for s in group.cluster_fix)


def test_a_node_without_a_report_keeps_the_logs_modules() -> None:
    pods = diagnose_pods([_logs("web-1", "n9")], {})
    (group,) = group_by_node_and_cause(pods, {})
    assert group.node_ready is None and "ip_tables" in group.modules
    assert any("modprobe -a ip_tables" in " ".join(s.run.split()) for s in group.node_fix)
