"""Diagnose failed pods across a cluster: classify each pod's logs with the diagnose engine, group by
node and cause, and cross-reference each node's published readiness. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from meshready.cluster.failing_pods import PodLogs
from meshready.cluster.published import NodeState
from meshready.diagnose.engine import diagnose_text
from meshready.diagnose.model import DiagnoseContext, Finding
from meshready.errors import InputError


@dataclass(frozen=True)
class PodDiagnosis:
    logs: PodLogs
    findings: tuple[Finding, ...]
    note: str  # why there is no finding (no logs, read errors), or ""

    @property
    def cause(self) -> str:
        return self.findings[0].cause if self.findings else "unknown"

    def to_dict(self) -> dict[str, Any]:
        f = self.logs.failure
        top = self.findings[0] if self.findings else None
        return {
            "namespace": f.namespace,
            "pod": f.pod,
            "node": f.node,
            "container": f.container,
            "kind": f.kind,
            "mesh": f.mesh,
            "state": f.state,
            "restarts": f.restarts,
            "cause": self.cause,
            "modules": list(top.modules) if top else [],
            "evidence": list(top.evidence) if top else [],
            "findings": [x.to_dict() for x in self.findings],
            "logErrors": list(self.logs.errors),
            "note": self.note,
        }


@dataclass(frozen=True)
class Group:
    node: str
    cause: str
    node_ready: bool | None
    node_missing: tuple[str, ...]
    modules: tuple[str, ...]
    pods: tuple[PodDiagnosis, ...]
    fix: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "cause": self.cause,
            "nodeReady": self.node_ready,
            "nodeMissing": list(self.node_missing),
            "modules": list(self.modules),
            "pods": [f"{p.logs.failure.namespace}/{p.logs.failure.pod}" for p in self.pods],
            "fix": list(self.fix),
        }


def _missing(state: NodeState | None) -> tuple[str, ...]:
    if state is None:
        return ()
    return state.missing_modules


def diagnose_pod(logs: PodLogs, node: NodeState | None) -> PodDiagnosis:
    f = logs.failure
    if not logs.text.strip():
        note = "; ".join(logs.errors) or "the container left no log"
        return PodDiagnosis(logs, (), note)
    context = DiagnoseContext(
        container=f.container,
        node=f.node,
        kernel_release=(node.report or {}).get("kernel") if node else None,
        missing_modules=_missing(node),
    )
    try:
        diagnosis = diagnose_text(logs.text, f"{f.namespace}/{f.pod}/{f.container}", context)
    except InputError as exc:
        return PodDiagnosis(logs, (), exc.one_line())
    return PodDiagnosis(logs, tuple(diagnosis.findings), "")


def group_by_node_and_cause(
    pods: Sequence[PodDiagnosis], nodes: dict[str, NodeState]
) -> list[Group]:
    buckets: dict[tuple[str, str], list[PodDiagnosis]] = {}
    for pod in pods:
        key = (pod.logs.failure.node or "(unscheduled)", pod.cause)
        buckets.setdefault(key, []).append(pod)
    groups = []
    for (node, cause), members in sorted(buckets.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        state = nodes.get(node)
        modules: list[str] = []
        fix: list[str] = []
        for member in members:
            for finding in member.findings[:1]:
                modules += [m for m in finding.modules if m not in modules]
                fix += [c for c in finding.fix.commands if c not in fix]
        groups.append(
            Group(
                node=node,
                cause=cause,
                node_ready=state.ready if state else None,
                node_missing=_missing(state),
                modules=tuple(modules),
                pods=tuple(members),
                fix=tuple(fix),
            )
        )
    return groups
