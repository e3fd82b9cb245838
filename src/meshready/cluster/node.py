"""Publishing on one Node: the condition, labels, annotation, Events, and the startup taint.

Every write touches only meshready's own fields, so other controllers' changes survive:

- labels and annotation: a JSON merge patch that names only meshready.io/ keys;
- the condition: a strategic merge patch of ``status.conditions`` through the status subresource
  (the list merges by ``type``: other conditions are untouched);
- the startup taint: a JSON patch whose first op ``test``s the exact taints list it read, then
  replaces it with the same list minus meshready's taint. If anything changed the taints in
  between, the test fails, nothing is written, and the removal is retried on a fresh read;
- Events: core/v1 Events in ``default`` with the Node as involvedObject (as the kubelet's).

``sync`` compares what the Node shows with what is wanted and writes only the difference, so an
unchanged node costs one GET per check (plus a condition heartbeat now and then).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lightkube import Client
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event, Node
from lightkube.types import PatchType

from meshready.cluster.errors import (
    Conflict,
    Invalid,
    Refused,
    WriteRace,
    api_errors,
    describe,
    is_permanent,
)
from meshready.cluster.names import (
    ANNOTATION_REPORT,
    CONDITION_TYPE,
    DEFAULT_TAINT_EFFECT,
    EVENT_COMPONENT,
    EVENTS_NAMESPACE,
    LABEL_BACKEND,
    LABEL_READY,
)
from meshready.cluster.published import (
    NodeEvent,
    NodeState,
    Publication,
    check_node_name,
    cut_message,
    read_node_state,
)

log = logging.getLogger("meshready.cluster")

MAX_QUEUED_EVENTS = 50
TAINT_ATTEMPTS = 5


@dataclass(frozen=True)
class TaintSpec:
    key: str
    effect: str = DEFAULT_TAINT_EFFECT


@dataclass
class SyncOutcome:
    """What one sync wrote (empty when the Node already showed everything)."""

    wrote: list[str] = field(default_factory=list)
    taint_removed: bool = False
    state: NodeState | None = None  # the Node as read at the start of the sync
    boot_id: str | None = None
    events_failed: list[str] = field(default_factory=list)  # events not written (kept or dropped)


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def warm_decoders() -> None:
    """Build lightkube's decoders for the types the agent's threads use, here, in one thread.

    lightkube 1.0 decodes with msgspec (0.22), which builds a struct type's decoder on first use;
    two threads doing that at once for types that share nested structs (Node and Event both hold
    ObjectMeta) crash the process with a segmentation fault: seen in the agent (the publisher's
    first GET racing the watcher's first event) and reproduced with two threads decoding a Node
    and an Event. Once built, decoders are shared safely. Idempotent and cheap.
    """
    from lightkube.core.decoders import decode_object, decode_status, decode_watch_event

    for res, doc in (
        (Node, b"{}"),
        (Node.Status, b"{}"),
        (Event, b'{"metadata": {}, "involvedObject": {}}'),
    ):
        decode_object(doc, res)
    decode_status(b"{}")
    decode_watch_event(b'{"type": "ADDED", "object": {}}')


class NodePublisher:
    """Writes a Publication on Node NODE_NAME. Not thread-safe: one caller at a time."""

    def __init__(
        self,
        client: Client,
        node_name: str,
        *,
        taint: TaintSpec | None = None,
        heartbeat_seconds: float = 600.0,
        events_namespace: str = EVENTS_NAMESPACE,
        field_manager: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.node_name = check_node_name(node_name)  # before any use in a URL or a name
        self.taint = taint
        self.heartbeat_seconds = heartbeat_seconds
        self.events_namespace = events_namespace
        self.field_manager = field_manager
        self.clock = clock
        self._events: list[NodeEvent] = []
        self._node_uid: str | None = None
        warm_decoders()  # before any thread uses the client (see warm_decoders)

    # ---- reading

    def get_node(self) -> Node:
        node = self.client.get(Node, self.node_name)
        if node.metadata is not None and node.metadata.uid:
            self._node_uid = node.metadata.uid
        return node

    def read_state(self) -> NodeState:
        keys = (self.taint.key,) if self.taint else ()
        return read_node_state(self.get_node(), keys)

    @property
    def queued_events(self) -> list[NodeEvent]:
        return list(self._events)

    def queue_event(self, event: NodeEvent) -> None:
        """Record EVENT at the next sync (kept until it is written; duplicates merge)."""
        if event in self._events:
            return
        self._events.append(event)
        del self._events[:-MAX_QUEUED_EVENTS]

    # ---- the whole publication

    def sync(self, pub: Publication) -> SyncOutcome:
        """Make the Node show PUB; raise the API's error (a ClusterError, cluster.errors) if a
        write fails (retry the whole sync)."""
        with api_errors():
            return self._sync(pub)

    def _sync(self, pub: Publication) -> SyncOutcome:
        outcome = SyncOutcome()
        node = self.get_node()
        keys = (self.taint.key,) if self.taint else ()
        state = read_node_state(node, keys)
        outcome.state = state
        outcome.boot_id = state.boot_id
        now = datetime.fromtimestamp(self.clock(), UTC)

        metadata = self._metadata_patch(state, pub)
        refused: Refused | None = None  # a permanent refusal, raised once the condition says it
        if metadata:
            try:
                with api_errors():
                    node = self.client.patch(
                        Node,
                        self.node_name,
                        {"metadata": metadata},
                        patch_type=PatchType.MERGE,
                        field_manager=self.field_manager,
                    )
                outcome.wrote.append("metadata")
            except Refused as exc:
                refused = exc

        old = state.condition
        status = pub.condition_status
        message = pub.message
        if refused is not None:
            # Say it where it can be read: the labels are wrong, the condition need not be.
            message = cut_message(
                f"{pub.message}; the API refused meshready's labels: {describe(refused)}"
            )
        changed = old is None or (old.status, old.reason, old.message) != (
            status,
            pub.reason,
            message,
        )
        heartbeat_due = (
            old is None
            or old.last_heartbeat is None
            or (now - old.last_heartbeat).total_seconds() >= self.heartbeat_seconds
        )
        if old is None or (old.status, old.reason) != (status, pub.reason):
            self.queue_event(
                NodeEvent(
                    "Normal" if pub.ready else "Warning",
                    "MeshInterceptionReady" if pub.ready else "MeshInterceptionNotReady",
                    pub.message,
                )
            )
        for event in pub.events:
            self.queue_event(event)
        if changed or heartbeat_due:
            transition = now if old is None or old.status != status else old.last_transition
            condition = {
                "type": CONDITION_TYPE,
                "status": status,
                "reason": pub.reason,
                "message": message,
                "lastHeartbeatTime": rfc3339(now),
                "lastTransitionTime": rfc3339(transition or now),
            }
            self.client.patch(
                Node.Status,
                self.node_name,
                {"status": {"conditions": [condition]}},
                patch_type=PatchType.STRATEGIC,
                field_manager=self.field_manager,
            )
            outcome.wrote.append("condition" if changed else "heartbeat")

        if (
            pub.ready
            and self.taint is not None
            and state.has_taint(self.taint.key)
            and self.remove_taint(self.taint.key, self.taint.effect, current=node)
        ):
            outcome.taint_removed = True
            outcome.wrote.append("taint")
            self.queue_event(
                NodeEvent(
                    "Normal",
                    "StartupTaintRemoved",
                    f"removed taint {self.taint.key}:{self.taint.effect}: "
                    "the node is ready for meshed pods",
                )
            )
        outcome.events_failed = self.flush_events()
        if refused is not None:
            raise refused
        return outcome

    def _metadata_patch(self, state: NodeState, pub: Publication) -> dict[str, Any]:
        labels: dict[str, str | None] = {}
        for key, value in pub.labels().items():
            if state.labels.get(key) != value:
                labels[key] = value
        for key in (LABEL_READY, LABEL_BACKEND):
            if key in state.labels and key not in pub.labels():
                labels[key] = None
        annotations: dict[str, str | None] = {}
        for key, value in pub.annotations().items():
            if state.annotations.get(key) != value:
                annotations[key] = value
        if ANNOTATION_REPORT in state.annotations and ANNOTATION_REPORT not in pub.annotations():
            annotations[ANNOTATION_REPORT] = None
        patch: dict[str, Any] = {}
        if labels:
            patch["labels"] = labels
        if annotations:
            patch["annotations"] = annotations
        return patch

    # ---- the startup taint

    def remove_taint(
        self, key: str, effect: str | None = None, current: Node | None = None
    ) -> bool:
        """Remove taint KEY (with EFFECT, or any effect) from this Node: ``remove_taint``."""
        return remove_taint(
            self.client,
            self.node_name,
            key,
            effect,
            current=current,
            read=self.get_node,
            field_manager=self.field_manager,
        )

    # ---- events

    def flush_events(self) -> list[str]:
        """Write the queued events, oldest first. Best effort, never raises: Events are a
        courtesy and must never hold up the Node's own state. An event the API refuses for good
        (403, 422, ...) is dropped; on any other error the rest stay queued for the next sync.
        Returns one line per failure."""
        failures: list[str] = []
        while self._events:
            event = self._events[0]
            try:
                self._create_event(event)
            except Exception as exc:  # any: an Event, even a bug in one, never holds up the Node
                failures.append(f"event {event.reason}: {describe(exc)}")
                if is_permanent(exc):
                    log.warning("event %s refused, dropped: %s", event.reason, describe(exc))
                    self._events.pop(0)
                    continue
                log.warning("event %s not written, kept for later: %s", event.reason, describe(exc))
                break
            self._events.pop(0)
        return failures

    def _create_event(self, event: NodeEvent) -> None:
        if self._node_uid is None:
            self.get_node()
        now = datetime.fromtimestamp(self.clock(), UTC)
        obj = Event(
            metadata=ObjectMeta(
                name=f"{self.node_name}.{int(now.timestamp() * 1e9):x}{secrets.token_hex(2)}",
                namespace=self.events_namespace,
            ),
            involvedObject=ObjectReference(
                apiVersion="v1", kind="Node", name=self.node_name, uid=self._node_uid
            ),
            type=event.type,
            reason=event.reason,
            message=event.message,
            source=EventSource(component=EVENT_COMPONENT, host=self.node_name),
            reportingComponent=EVENT_COMPONENT,
            reportingInstance=self.node_name,
            firstTimestamp=now,
            lastTimestamp=now,
            count=1,
        )
        self.client.create(obj, namespace=self.events_namespace)


def remove_taint(
    client: Client,
    node_name: str,
    key: str,
    effect: str | None = None,
    *,
    current: Node | None = None,
    read: Callable[[], Node] | None = None,
    field_manager: str | None = None,
    dry_run: bool = False,
) -> bool:
    """Remove taint KEY (with EFFECT, or any effect) from Node NODE_NAME with the guarded JSON
    patch of ``taint_removal_patch``: the agent's startup taint, and every meshready taint at
    uninstall. Nothing else on the Node is touched, whatever other writers do meanwhile.

    CURRENT: the Node as just read (saves a GET); the `test` makes a stale one harmless. READ:
    how to read the Node again (default: a GET). Returns True when this call removed it, False
    when it was not there. A concurrent change makes the test fail (422, or 409): re-read and
    try again, at most TAINT_ATTEMPTS times, then raise WriteRace. Other API failures are raised
    as ClusterError (cluster.errors).
    """
    last: Conflict | Invalid | None = None
    for attempt in range(TAINT_ATTEMPTS):
        if attempt == 0 and current is not None:
            node = current
        else:
            with api_errors():
                node = read() if read is not None else client.get(Node, node_name)
        patch = taint_removal_patch(node, key, effect)
        if patch is None:
            return False
        try:
            with api_errors():
                client.patch(
                    Node,
                    node_name,
                    patch,
                    patch_type=PatchType.JSON,
                    field_manager=field_manager,
                    dry_run=dry_run,
                )
            return True
        except (Conflict, Invalid) as exc:
            last = exc  # the list changed under us: read again
            log.info("taints of node %s changed concurrently; reading them again", node_name)
    assert last is not None
    raise WriteRace(
        f"taints of node {node_name} changed under every one of {TAINT_ATTEMPTS} "
        f"attempts to remove {key} ({describe(last)})"
    ) from last


def taint_removal_patch(
    node: Node, key: str, effect: str | None = None
) -> list[dict[str, Any]] | None:
    """The guarded JSON patch that removes taint KEY[:EFFECT] from NODE; None if it has none."""
    taints = [t.to_dict() for t in ((node.spec.taints if node.spec else None) or [])]
    keep = [
        t for t in taints if not (t["key"] == key and (effect is None or t["effect"] == effect))
    ]
    if len(keep) == len(taints):
        return None
    return [
        {"op": "test", "path": "/spec/taints", "value": taints},
        {"op": "replace", "path": "/spec/taints", "value": keep},
    ]


def condition_removal_patch() -> dict[str, Any]:
    """A strategic merge patch that deletes meshready's condition and leaves the others."""
    return {"status": {"conditions": [{"type": CONDITION_TYPE, "$patch": "delete"}]}}
