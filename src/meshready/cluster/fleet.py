"""The fleet view of node readiness, from what the agents publish (never by exec into nodes).

``read_fleet`` makes a bounded number of requests whatever the node count: paginated lists of Nodes
and of the agent's Pods (``limit``/``continue``, ``PAGE_SIZE`` per page). ``fleet_rows`` is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lightkube import Client
from lightkube.resources.core_v1 import Node, Pod

from meshready.cluster.errors import NotFound, api_errors
from meshready.cluster.names import DEFAULT_NAMESPACE, SELECTOR_LABELS
from meshready.cluster.published import NodeState, read_node_state

PAGE_SIZE = 500
STATUS_SCHEMA = "meshready.io/status/v1"  # `status -o json`; src/meshready/schemas/status.json
# A published check older than this, with no heartbeat since, is shown as stale.
STALE_AFTER_SECONDS = 3600


@dataclass(frozen=True)
class AgentPod:
    name: str
    node: str
    phase: str
    ready: bool
    detail: str  # e.g. "CrashLoopBackOff" when not ready


@dataclass(frozen=True)
class FleetRow:
    node: str
    agent: str  # running | not-running | missing
    ready: bool | None  # None: unknown
    reason: str  # the condition's reason, or why the state is unknown
    backend: str | None
    kernel: str | None
    missing: tuple[str, ...]
    checked_seconds_ago: float | None
    message: str
    taints: tuple[str, ...]

    @property
    def ready_word(self) -> str:
        return "unknown" if self.ready is None else ("true" if self.ready else "false")

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "agent": self.agent,
            "ready": self.ready,
            "reason": self.reason,
            "backend": self.backend,
            "kernel": self.kernel,
            "missing": list(self.missing),
            "checked_seconds_ago": None
            if self.checked_seconds_ago is None
            else round(self.checked_seconds_ago),
            "message": self.message,
            "taints": list(self.taints),
        }


@dataclass(frozen=True)
class Fleet:
    rows: tuple[FleetRow, ...]

    @property
    def counts(self) -> dict[str, int]:
        out = {"ready": 0, "not_ready": 0, "unknown": 0}
        for row in self.rows:
            key = "unknown" if row.ready is None else ("ready" if row.ready else "not_ready")
            out[key] += 1
        return out

    @property
    def all_ready(self) -> bool:
        return bool(self.rows) and all(r.ready for r in self.rows)

    def summary(self) -> str:
        c = self.counts
        return (
            f"{len(self.rows)} nodes: {c['ready']} ready, {c['not_ready']} not ready, "
            f"{c['unknown']} unknown"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": STATUS_SCHEMA,
            "summary": self.summary(),
            "counts": self.counts,
            "all_ready": self.all_ready,
            "nodes": [r.to_dict() for r in self.rows],
        }


def agent_pods(pods: Iterable[Pod]) -> dict[str, AgentPod]:
    """node name -> the agent pod on it (the running one, if several)."""
    out: dict[str, AgentPod] = {}
    for pod in pods:
        node = pod.spec.nodeName if pod.spec else None
        if not node or pod.metadata is None:
            continue
        phase = (pod.status.phase if pod.status else None) or "Unknown"
        statuses = (pod.status.containerStatuses if pod.status else None) or []
        ready = phase == "Running" and bool(statuses) and all(s.ready for s in statuses)
        detail = phase
        for status in statuses:
            if status.state and status.state.waiting and status.state.waiting.reason:
                detail = status.state.waiting.reason
        candidate = AgentPod(pod.metadata.name or "", node, phase, ready, detail)
        if node not in out or (candidate.ready and not out[node].ready):
            out[node] = candidate
    return out


def fleet_rows(
    states: Sequence[NodeState], agents: dict[str, AgentPod], now: datetime | None = None
) -> list[FleetRow]:
    now = now or datetime.now(UTC)
    rows = []
    for state in sorted(states, key=lambda s: s.name):
        agent = agents.get(state.name)
        agent_word = "missing" if agent is None else ("running" if agent.ready else "not-running")
        ready = state.ready
        reason = (state.condition.reason or "") if state.condition else ""
        message = (state.condition.message or "") if state.condition else ""
        heartbeat = state.condition.last_heartbeat if state.condition else None
        age = (now - heartbeat).total_seconds() if heartbeat else None
        if not state.published:
            ready = None
            reason = "NoAgent" if agent is None else "NotReportedYet"
            message = (
                "no meshready agent on this node (install it, or check the DaemonSet's "
                "nodeSelector and tolerations)"
                if agent is None
                else f"agent pod {agent.name} has not published yet ({agent.detail})"
            )
        elif state.stale:
            ready = None
            reason = "StaleReport"
            message = "the report predates the node's last boot; the agent has not re-checked"
        elif age is not None and age > STALE_AFTER_SECONDS and agent_word != "running":
            ready = None
            reason = "AgentGone"
            message = f"last check {int(age)}s ago and the agent is {agent_word}"
        report = state.report or {}
        missing = state.missing_modules
        rows.append(
            FleetRow(
                node=state.name,
                agent=agent_word,
                ready=ready,
                reason=reason,
                backend=state.backend_label or report.get("backend"),
                kernel=report.get("kernel") or state.kernel,
                missing=missing,
                checked_seconds_ago=age,
                message=message,
                taints=tuple(f"{t.key}:{t.effect}" for t in state.taints),
            )
        )
    return rows


def read_node_states(client: Client, labels: Any = None) -> list[NodeState]:
    """Every Node (those LABELS select: cluster.selector.as_labels), in pages."""
    return [read_node_state(n) for n in client.list(Node, chunk_size=PAGE_SIZE, labels=labels)]


# Up to this many nodes are read one by one (in parallel) rather than by listing every Node.
NODE_GET_LIMIT = 200


def read_named_nodes(
    client: Client, names: Iterable[str], concurrency: int = 8
) -> dict[str, NodeState]:
    """The states of NAMES: each Node read by name (a handful of small requests instead of a
    paginated list of a whole fleet), or the whole list past NODE_GET_LIMIT. Nodes that no
    longer exist are left out."""
    from concurrent.futures import ThreadPoolExecutor

    wanted = sorted(set(names))
    if len(wanted) > NODE_GET_LIMIT:
        chosen = set(wanted)
        return {s.name: s for s in read_node_states(client) if s.name in chosen}

    def one(name: str) -> NodeState | None:
        try:
            with api_errors():
                node = client.get(Node, name)
        except NotFound:
            return None
        return read_node_state(node)

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(wanted) or 1))) as pool:
        states = list(pool.map(one, wanted))
    return {s.name: s for s in states if s is not None}


def read_fleet(
    client: Client, agent_namespace: str = DEFAULT_NAMESPACE, labels: Any = None
) -> Fleet:
    """Nodes and agent pods, each in pages of PAGE_SIZE: ceil(n/500) + ceil(a/500) requests."""
    states = read_node_states(client, labels)
    selector: dict[str, Any] = dict(SELECTOR_LABELS)
    pods = client.list(Pod, namespace=agent_namespace, labels=selector, chunk_size=PAGE_SIZE)
    return Fleet(tuple(fleet_rows(states, agent_pods(pods))))
