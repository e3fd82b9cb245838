"""What the agent publishes on its Node, and reading it back (for the fleet view and for the agent).

Written by the agent (``meshready.agent``) through ``cluster.node``:

- condition ``MeshInterceptionReady`` in ``status.conditions`` (status True/False/Unknown, a reason
  from ``Reason``, a message from the assessment);
- labels ``meshready.io/ready`` (``true``/``false``/``unknown``) and ``meshready.io/backend``;
- annotation ``meshready.io/report``: the compact JSON report below (``REPORT_SCHEMA``);
- removal of the startup taint once the node is ready; Events on changes.

``read_node_state(node)`` turns a Node object back into a ``NodeState``; a ``status`` command
reads a fleet with it. Nothing here talks to the API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from meshready import __version__
from meshready.assess.report import Report, State
from meshready.cluster.names import (
    ANNOTATION_REPORT,
    CONDITION_TYPE,
    LABEL_BACKEND,
    LABEL_READY,
    is_ours,
)
from meshready.errors import InputError

if TYPE_CHECKING:  # lightkube is imported only where the API is used (agent start-up time)
    from lightkube.resources.core_v1 import Node

REPORT_SCHEMA = "meshready.io/node-report/v1"
MESSAGE_LIMIT = 1024  # condition and event messages are cut to this many characters


class Reason(StrEnum):
    """The condition's reason: one word (CamelCase), as Kubernetes conventions ask."""

    VERIFIED = "InterceptionVerified"  # modules there and a redirect probe worked
    MODULES_READY = "ModulesReady"  # modules there; no probe run (probe off)
    MODULES_MISSING = "ModulesMissing"  # a module is not in this kernel: loading cannot help
    NOT_LOADED = "ModulesNotLoaded"  # loadable, but loading is switched off
    LOAD_FAILED = "LoadFailed"  # loading was tried and failed
    PROBE_FAILED = "ProbeFailed"  # modules there, but the redirect probe failed
    CHECK_FAILED = "CheckFailed"  # the node could not be assessed (status Unknown)


@dataclass(frozen=True)
class ProbeSummary:
    """A redirect probe's outcome, as published (``meshready.actions.probe`` runs it)."""

    mode: str  # inplace | netns
    ok: bool
    redirected: bool | None = None
    proxy_bypassed: bool | None = None
    seconds: float | None = None
    detail: str = ""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"mode": self.mode, "ok": self.ok}
        if self.redirected is not None:
            data["redirected"] = self.redirected
        if self.proxy_bypassed is not None:
            data["proxyBypassed"] = self.proxy_bypassed
        # No duration here: it differs on every check and would rewrite an unchanged Node's
        # annotation each time; it is the meshready_probe_duration_seconds histogram instead.
        if self.error:
            data["error"] = _cut(self.error, 300)
        return data


@dataclass(frozen=True)
class NodeEvent:
    """A core/v1 Event to record on the Node (type Normal or Warning)."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Publication:
    """Everything the agent wants its Node to show after one check."""

    ready: bool | None  # None: unknown (the check itself failed)
    reason: str
    message: str
    backend: str | None
    report: dict[str, Any]  # compact_report(...)
    events: tuple[NodeEvent, ...] = ()

    @property
    def condition_status(self) -> str:
        return _status_word(self.ready)

    def labels(self) -> dict[str, str]:
        labels = {LABEL_READY: _label_word(self.ready)}
        if self.backend:
            labels[LABEL_BACKEND] = self.backend
        return labels

    def annotations(self) -> dict[str, str]:
        return {ANNOTATION_REPORT: encode_report(self.report)}


def _status_word(ready: bool | None) -> str:
    return "Unknown" if ready is None else ("True" if ready else "False")


def _label_word(ready: bool | None) -> str:
    return "unknown" if ready is None else ("true" if ready else "false")


def _cut(text: str, limit: int = MESSAGE_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def cut_message(text: str) -> str:
    """One line of at most MESSAGE_LIMIT characters, for a condition or an event."""
    return _cut(text)


def compact_report(
    report: Report | None,
    *,
    ready: bool | None,
    reason: str,
    load_failed: Mapping[str, str] | None = None,
    persisted: Sequence[str] | None = None,
    probe: ProbeSummary | None = None,
    boot_id: str | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """The annotation's content: small (a few hundred bytes), stable keys, no timestamps.

    No timestamps and nothing about one check's actions (which modules this check loaded goes
    into an Event), so that an unchanged node gives a byte-identical annotation, even across
    agent restarts, and the agent writes nothing (the condition's ``lastHeartbeatTime`` says
    when it last looked).
    """
    data: dict[str, Any] = {"schema": REPORT_SCHEMA, "ready": ready, "reason": reason}
    if report is not None:
        data["backend"] = report.backend
        if report.profile:
            data["profile"] = report.profile
        else:
            data["rules"] = [r.rsplit("/", 1)[-1] for r in report.rules]
        data["kernel"] = report.kernel.release
        by_state: dict[str, list[str]] = {}
        for module in report.modules:
            by_state.setdefault(module.state.value, []).append(module.name)
        data["modules"] = {s.value: by_state[s.value] for s in State if s.value in by_state}
        if report.unresolved:
            data["unresolved"] = [u.request for u in report.unresolved]
    if load_failed:
        data["loadFailed"] = {k: _cut(v, 200) for k, v in load_failed.items()}
    if persisted is not None:
        data["persisted"] = list(persisted)
    if probe is not None:
        data["probe"] = probe.to_dict()
    if error:
        data["error"] = _cut(error, 300)
    if boot_id:
        data["bootID"] = boot_id
    data["agent"] = __version__
    return data


def encode_report(data: Mapping[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), sort_keys=False)


def decode_report(text: str | None) -> dict[str, Any] | None:
    """The annotation's JSON, or None when it is missing or not a report."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # a nesting too deep for the decoder is not a report
        return None
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith(
        "meshready.io/node-report/"
    ):
        return None
    return data


# A Node's name is a DNS-1123 subdomain (k8s.io/apimachinery validation.IsDNS1123Subdomain).
_NODE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def check_node_name(name: str, source: str = "--node-name") -> str:
    """NAME if it can be a Node's name, else InputError: it goes into URLs, field selectors and
    event names, and must name a Node, nothing else (``../secrets/x`` must never reach a URL)."""
    if not isinstance(name, str) or len(name) > 253 or not _NODE_NAME.fullmatch(name):
        raise InputError(source, f"not a valid node name (DNS-1123 subdomain): {name[:80]!r}")
    return name


@dataclass(frozen=True)
class ConditionState:
    status: str  # True | False | Unknown
    reason: str | None
    message: str | None
    last_heartbeat: datetime | None
    last_transition: datetime | None


@dataclass(frozen=True)
class TaintState:
    key: str
    effect: str
    value: str | None = None


@dataclass(frozen=True)
class NodeState:
    """What a Node shows of meshready: read back by the agent and by a fleet view."""

    name: str
    condition: ConditionState | None  # None: never published (no agent ran here yet)
    ready_label: str | None
    backend_label: str | None
    report: dict[str, Any] | None  # the decoded annotation
    report_raw: str | None
    taints: tuple[TaintState, ...]  # meshready's own taints still on the node
    labels: dict[str, str] = field(default_factory=dict)  # all meshready.io/ labels
    annotations: dict[str, str] = field(default_factory=dict)  # all meshready.io/ annotations
    boot_id: str | None = None  # the Node's status.nodeInfo.bootID
    kernel: str | None = None  # the Node's status.nodeInfo.kernelVersion

    @property
    def published(self) -> bool:
        return self.condition is not None or bool(self.labels) or self.report is not None

    @property
    def ready(self) -> bool | None:
        """True/False from the condition; None when unknown or never published."""
        if self.condition is None or self.condition.status == "Unknown":
            return None
        return self.condition.status == "True"

    @property
    def stale(self) -> bool:
        """The report was made before the node's last boot (the agent has not re-checked yet)."""
        published_boot = (self.report or {}).get("bootID")
        return bool(published_boot and self.boot_id and published_boot != self.boot_id)

    @property
    def missing_modules(self) -> tuple[str, ...]:
        """Needed modules the report shows neither loaded nor built in."""
        return tuple(self.modules("loadable") + self.modules("absent") + self.modules("unknown"))

    def modules(self, state: str) -> list[str]:
        found = ((self.report or {}).get("modules") or {}).get(state) or []
        return [str(m) for m in found]

    def has_taint(self, key: str) -> bool:
        return any(t.key == key for t in self.taints)


def read_node_state(node: Node, taint_keys: Sequence[str] = ()) -> NodeState:
    """meshready's state on NODE. TAINT_KEYS: startup taint keys to report besides meshready.io/*."""
    meta = node.metadata
    name = (meta.name if meta else None) or ""
    labels = dict((meta.labels if meta else None) or {})
    annotations = dict((meta.annotations if meta else None) or {})
    condition = None
    boot_id = kernel = None
    if node.status is not None:
        for c in node.status.conditions or []:
            if c.type == CONDITION_TYPE:
                condition = ConditionState(
                    status=c.status,
                    reason=c.reason,
                    message=c.message,
                    last_heartbeat=c.lastHeartbeatTime,
                    last_transition=c.lastTransitionTime,
                )
        if node.status.nodeInfo is not None:
            boot_id = node.status.nodeInfo.bootID or None
            kernel = node.status.nodeInfo.kernelVersion or None
    taints = tuple(
        TaintState(t.key, t.effect, t.value)
        for t in ((node.spec.taints if node.spec else None) or [])
        if is_ours(t.key) or t.key in taint_keys
    )
    raw = annotations.get(ANNOTATION_REPORT)
    return NodeState(
        name=name,
        condition=condition,
        ready_label=labels.get(LABEL_READY),
        backend_label=labels.get(LABEL_BACKEND),
        report=decode_report(raw),
        report_raw=raw,
        taints=taints,
        labels={k: v for k, v in labels.items() if is_ours(k)},
        annotations={k: v for k, v in annotations.items() if is_ours(k)},
        boot_id=boot_id,
        kernel=kernel,
    )
