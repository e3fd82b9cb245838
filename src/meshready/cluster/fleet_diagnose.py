"""Diagnose failed pods across a cluster: classify each pod's logs with the diagnose engine, group by
node and cause, and cross-reference each node's published readiness. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from meshready.cluster.failing_pods import PodLogs
from meshready.cluster.published import NodeState
from meshready.diagnose.engine import diagnose_text
from meshready.diagnose.model import Command, DiagnoseContext, Finding, Where
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
            "log_errors": list(self.logs.errors),
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
    node_fix: tuple[Command, ...]  # to run on the node (root or sudo)
    cluster_fix: tuple[Command, ...]  # kubectl, once per pod of ``bindings``

    @property
    def bindings(self) -> tuple[dict[str, str], ...]:
        """The values of the variables the cluster steps need, one set per failed pod."""
        seen: list[dict[str, str]] = []
        for pod in self.pods:
            values = {"NAMESPACE": pod.logs.failure.namespace, "POD": pod.logs.failure.pod}
            if values not in seen:
                seen.append(values)
        return tuple(seen)

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "cause": self.cause,
            "node_ready": self.node_ready,
            "node_missing": list(self.node_missing),
            "modules": list(self.modules),
            "pods": [f"{p.logs.failure.namespace}/{p.logs.failure.pod}" for p in self.pods],
            "node_fix": [c.to_dict() for c in self.node_fix],
            "cluster_fix": [c.to_dict() for c in self.cluster_fix],
            "bindings": [dict(b) for b in self.bindings],
        }


def _missing(state: NodeState | None) -> tuple[str, ...]:
    return state.missing_modules if state is not None else ()


def _loadable_missing(state: NodeState | None) -> tuple[str, ...]:
    """What the node's agent found missing and a modprobe can load (absent ones cannot)."""
    if state is None:
        return ()
    return tuple(state.modules("loadable") + state.modules("unknown"))


def group_fix(
    members: Sequence[PodDiagnosis], state: NodeState | None
) -> tuple[tuple[str, ...], tuple[Command, ...], tuple[Command, ...]]:
    """(modules, node steps, cluster steps) for one group. The modules the node's agent
    published as missing replace the ones read from the log (in the steps too): the agent looked
    at the node, the log only shows the first module that failed."""
    modules: list[str] = []
    node_fix: list[Command] = []
    cluster_fix: list[Command] = []
    published = _loadable_missing(state)
    for member in members:
        for finding in member.findings[:1]:
            modules += [m for m in finding.modules if m not in modules]
            for step in finding.fix.steps:
                if published and finding.modules:
                    step = replace(step, run=_swap_modules(step.run, finding.modules, published))
                target = cluster_fix if step.where is Where.CLUSTER else node_fix
                if step not in target:
                    target.append(step)
    if published and modules:
        modules = list(published) + [m for m in modules if m not in published]
    return tuple(modules), tuple(node_fix), tuple(cluster_fix)


def _swap_modules(run: str, from_log: Sequence[str], published: Sequence[str]) -> str:
    """RUN loading what the node's agent published as missing: a ``modprobe -a`` gets exactly
    those; a modules-load.d heredoc keeps its list and gains any it lacks."""
    if "<<" in run:
        lines = run.split("\n")
        body = [ln for ln in lines[1:-1]]
        if body and all(_MODULE_NAME.match(ln) for ln in body):
            extra = [m for m in published if m not in body]
            return "\n".join([lines[0], *body, *extra, lines[-1]])
        return run
    joined = re.sub(r"[ \t]*\\\n[ \t]*", " ", run)  # the engine's own line continuations
    swapped, count = _MODPROBE.subn(lambda m: f"{m.group(1)} {' '.join(published)}", joined)
    return swapped if count else run


_MODULE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_MODPROBE = re.compile(r"(modprobe -a)((?: +[A-Za-z0-9_-]+)+)")


def diagnose_pod(logs: PodLogs, node: NodeState | None) -> PodDiagnosis:
    f = logs.failure
    if not logs.text.strip():
        note = "; ".join(logs.errors) or "the container left no log"
        return PodDiagnosis(logs, (), note)
    context = DiagnoseContext(
        container=f.container,
        node=f.node,
        kernel_release=(node.report or {}).get("kernel") if node else None,
        # not loaded but loadable (or unknown), and absent from the kernel: the engine's two
        # different facts (diagnose.model.DiagnoseContext)
        missing_modules=_loadable_missing(node),
        absent_modules=tuple(node.modules("absent")) if node else (),
    )
    try:
        diagnosis = diagnose_text(logs.text, f"{f.namespace}/{f.pod}/{f.container}", context)
    except InputError as exc:
        return PodDiagnosis(logs, (), exc.one_line())
    return PodDiagnosis(logs, tuple(diagnosis.findings), "")


def diagnose_pods(logs: Sequence[PodLogs], nodes: dict[str, NodeState]) -> list[PodDiagnosis]:
    """diagnose_pod for each, once per distinct (log text, container, node): replicas that fail
    the same way on the same node print the same log, and the diagnosis is a pure function of
    it and the node's state."""
    done: dict[tuple[str, str, str], PodDiagnosis] = {}
    out = []
    for entry in logs:
        node = entry.failure.node or ""
        key = (entry.text, entry.failure.container, node)
        first = done.get(key)
        if first is None or not entry.text.strip():
            first = done[key] = diagnose_pod(entry, nodes.get(node))
            out.append(first)
        else:
            out.append(PodDiagnosis(entry, first.findings, first.note))
    return out


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
        modules, node_fix, cluster_fix = group_fix(members, state)
        groups.append(
            Group(
                node=node,
                cause=cause,
                node_ready=state.ready if state else None,
                node_missing=_missing(state),
                modules=modules,
                pods=tuple(members),
                node_fix=node_fix,
                cluster_fix=cluster_fix,
            )
        )
    return groups
