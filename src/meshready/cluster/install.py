"""``install`` and ``uninstall``: server-side apply of the manifests, rollout progress, and removal
of everything meshready put in a cluster, on its Nodes included.

install applies the objects of ``cluster.manifests`` in order with server-side apply (field
manager ``meshready``), so re-running it is an upgrade and fields other managers own are left
alone (a conflict is an error unless forced, as with ``kubectl apply --server-side``). An existing
namespace that meshready did not create is used as it is, never taken over.

uninstall deletes the DaemonSet first (so no agent writes again), waits for its pods to go, then
removes from every Node the meshready.io/ labels and annotation, the MeshInterceptionReady
condition and the startup taint (each with a patch that touches nothing else), then the RBAC
objects, the ServiceAccount and the namespace (only if meshready created it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lightkube import Client, codecs
from lightkube.core.resource import NamespacedResource
from lightkube.resources.admissionregistration_v1 import (
    ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding,
)
from lightkube.resources.apps_v1 import DaemonSet
from lightkube.resources.core_v1 import Namespace, Node, Pod, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import (
    ClusterRole,
    ClusterRoleBinding,
    Role,
    RoleBinding,
)
from lightkube.types import CascadeType, PatchType

from meshready.cluster.admission import POLICY_NAME
from meshready.cluster.errors import (
    ClusterError,
    Conflict,
    NotFound,
    NotServed,
    api_errors,
    describe,
)
from meshready.cluster.manifests import ManifestOptions, render_objects
from meshready.cluster.names import (
    AGENT_NAME,
    APP_LABELS,
    DEFAULT_TAINT_KEY,
    EVENTS_NAMESPACE,
    FIELD_MANAGER,
    SELECTOR_LABELS,
    SYSTEM_NAMESPACES,
)
from meshready.cluster.node import condition_removal_patch, remove_taint
from meshready.cluster.published import NodeState, read_node_state

Echo = Callable[[str], None]

_PLURAL = {
    "Namespace": "namespace",
    "ServiceAccount": "serviceaccount",
    "ClusterRole": "clusterrole.rbac.authorization.k8s.io",
    "ClusterRoleBinding": "clusterrolebinding.rbac.authorization.k8s.io",
    "Role": "role.rbac.authorization.k8s.io",
    "RoleBinding": "rolebinding.rbac.authorization.k8s.io",
    "ValidatingAdmissionPolicy": "validatingadmissionpolicy.admissionregistration.k8s.io",
    "ValidatingAdmissionPolicyBinding": (
        "validatingadmissionpolicybinding.admissionregistration.k8s.io"
    ),
    "DaemonSet": "daemonset.apps",
}


def ref(obj: dict[str, Any]) -> str:
    """kubectl's TYPE/NAME for an object."""
    return f"{_PLURAL.get(obj['kind'], obj['kind'].lower())}/{obj['metadata']['name']}"


def _managed_by_us(meta_labels: dict[str, str] | None) -> bool:
    return (meta_labels or {}).get("app.kubernetes.io/managed-by") == APP_LABELS[
        "app.kubernetes.io/managed-by"
    ]


@dataclass(frozen=True)
class Step:
    ref: str
    action: str  # created | configured | unchanged | skipped | deleted | not found | cleaned
    detail: str = ""

    def line(self, dry_run: bool) -> str:
        suffix = " (server dry run)" if dry_run and self.action not in ("skipped",) else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.ref} {self.action}{detail}{suffix}"


# ------------------------------------------------------------------------------------------ install


def install(
    client: Client,
    options: ManifestOptions,
    *,
    dry_run: bool = False,
    force_conflicts: bool = False,
    field_manager: str = FIELD_MANAGER,
    echo: Echo = lambda _: None,
) -> list[Step]:
    """Apply every object; print one kubectl-like line per object through ECHO."""
    steps: list[Step] = []
    objects = render_objects(options)
    namespace_exists = _namespace_exists(client, options.namespace)
    for obj in objects:
        step = _apply_one(
            client,
            obj,
            namespace_exists=namespace_exists,
            dry_run=dry_run,
            force=force_conflicts,
            field_manager=field_manager,
        )
        steps.append(step)
        echo(step.line(dry_run))
    return steps


def _namespace_exists(client: Client, name: str) -> bool:
    try:
        with api_errors(f"namespace/{name}", no_status="cannot read the cluster"):
            client.get(Namespace, name)
    except NotFound:
        return False
    return True


def _apply_one(
    client: Client,
    obj: dict[str, Any],
    *,
    namespace_exists: bool,
    dry_run: bool,
    force: bool,
    field_manager: str,
) -> Step:
    resource = codecs.from_dict(obj)
    name = obj["metadata"]["name"]
    namespace = obj["metadata"].get("namespace")
    kind: Any = type(resource)
    before: Any = None
    try:
        with api_errors(ref(obj), no_status=""):
            if namespace is not None:
                before = client.get(kind, name, namespace=namespace)
            else:
                before = client.get(kind, name)
    except NotFound:
        pass
    if (
        obj["kind"] == "Namespace"
        and before is not None
        and not _managed_by_us(before.metadata.labels if before.metadata else None)
    ):
        return Step(ref(obj), "skipped", "exists and is not managed by meshready: used as is")
    if dry_run and namespace is not None and not namespace_exists and namespace != EVENTS_NAMESPACE:
        return Step(
            ref(obj),
            "skipped",
            f"namespace {namespace} does not exist yet, so the server cannot dry-run objects in it",
        )
    try:
        with api_errors():
            after = client.apply(
                resource, field_manager=field_manager, force=force, dry_run=dry_run
            )
    except Conflict as exc:
        raise Conflict(
            f"{ref(obj)}: fields owned by another manager would change "
            f"({describe(exc)}); re-run with --force-conflicts to take them over"
        ) from exc
    except ClusterError as exc:
        raise exc.within(ref(obj)) from exc
    if before is None:
        return Step(ref(obj), "created")
    old_rv = before.metadata.resourceVersion if before.metadata else None
    new_rv = after.metadata.resourceVersion if after.metadata else None
    return Step(ref(obj), "unchanged" if old_rv == new_rv else "configured")


@dataclass(frozen=True)
class Rollout:
    desired: int
    updated: int
    ready: int  # pods ready: their node is ready (the agent's readiness probe)
    available: int
    observed: bool  # the DaemonSet controller has seen the current generation

    @property
    def done(self) -> bool:
        return self.observed and self.updated >= self.desired and self.available >= self.desired

    def line(self) -> str:
        return (
            f"rollout: {self.updated}/{self.desired} updated, {self.ready}/{self.desired} ready "
            f"(node ready), {self.available}/{self.desired} available"
        )


def rollout_status(client: Client, namespace: str) -> Rollout:
    ds = client.get(DaemonSet, AGENT_NAME, namespace=namespace)
    status = ds.status
    generation = ds.metadata.generation if ds.metadata else None
    if status is None:
        return Rollout(0, 0, 0, 0, False)
    observed = status.observedGeneration is not None and (
        generation is None or status.observedGeneration >= generation
    )
    return Rollout(
        desired=status.desiredNumberScheduled,
        updated=status.updatedNumberScheduled or 0,
        ready=status.numberReady,
        available=status.numberAvailable or 0,
        observed=observed,
    )


def wait_rollout(
    client: Client,
    namespace: str,
    *,
    timeout: float,
    echo: Echo = lambda _: None,
    interval: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Rollout:
    """Poll the DaemonSet until every scheduled pod runs the current version and is ready.

    Prints a line whenever the counts change. Raises ClusterError after TIMEOUT seconds.
    """
    deadline = clock() + timeout
    last = ""
    while True:
        with api_errors(f"daemonset.apps/{AGENT_NAME}"):
            rollout = rollout_status(client, namespace)
        line = (
            rollout.line() if rollout.observed else "rollout: waiting for the DaemonSet controller"
        )
        if line != last:
            echo(line)
            last = line
        if rollout.done:
            return rollout
        if clock() >= deadline:
            raise ClusterError(
                f"rollout not finished after {timeout:g} s ({rollout.line()}); nodes whose "
                "agent is not ready are listed by `kubectl get nodes -L meshready.io/ready`"
            )
        sleep(interval)


def node_summary(client: Client, taint_key: str | None = DEFAULT_TAINT_KEY) -> list[NodeState]:
    keys = (taint_key,) if taint_key else ()
    return [read_node_state(node, keys) for node in client.list(Node)]


# ---------------------------------------------------------------------------------------- uninstall


def agent_taint_key(client: Client, namespace: str) -> str | None:
    """The startup taint key the installed DaemonSet's agents remove (from their arguments)."""
    try:
        # unreachable, TLS, credentials: say so, once
        with api_errors(f"daemonset.apps/{AGENT_NAME}", no_status="cannot read the cluster"):
            ds = client.get(DaemonSet, AGENT_NAME, namespace=namespace)
    except NotFound:
        return None
    spec = ds.spec.template.spec if ds.spec and ds.spec.template else None
    for container in (spec.containers if spec else None) or []:
        for arg in container.args or []:
            if arg.startswith("--taint-key="):
                return arg.split("=", 1)[1].rsplit(":", 1)[0] or None
    return None


@dataclass
class NodeCleanup:
    name: str
    labels: list[str] = field(default_factory=list)
    annotations: list[str] = field(default_factory=list)
    condition: bool = False
    taints: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.labels or self.annotations or self.condition or self.taints)

    def detail(self) -> str:
        parts = []
        if self.labels:
            parts.append(f"{len(self.labels)} label(s)")
        if self.annotations:
            parts.append(f"{len(self.annotations)} annotation(s)")
        if self.condition:
            parts.append("condition")
        if self.taints:
            parts.append("taint " + ", ".join(self.taints))
        return ", ".join(parts)


def clean_node(
    client: Client, node: Node, taint_keys: Iterable[str], *, dry_run: bool = False
) -> NodeCleanup:
    """Remove meshready's labels, annotations, condition and taints from NODE."""
    keys = tuple(taint_keys)
    state = read_node_state(node, keys)
    cleanup = NodeCleanup(state.name)
    metadata: dict[str, Any] = {}
    if state.labels:
        cleanup.labels = sorted(state.labels)
        metadata["labels"] = dict.fromkeys(state.labels)
    if state.annotations:
        cleanup.annotations = sorted(state.annotations)
        metadata["annotations"] = dict.fromkeys(state.annotations)
    if metadata:
        client.patch(
            Node, state.name, {"metadata": metadata}, patch_type=PatchType.MERGE, dry_run=dry_run
        )
    if state.condition is not None:
        cleanup.condition = True
        client.patch(
            Node.Status,
            state.name,
            condition_removal_patch(),
            patch_type=PatchType.STRATEGIC,
            dry_run=dry_run,
        )
    for taint in state.taints:
        # A dry run changes nothing, so the listed Node stays current; otherwise read it afresh.
        current = node if dry_run else None
        if remove_taint(
            client, state.name, taint.key, taint.effect, current=current, dry_run=dry_run
        ):
            cleanup.taints.append(f"{taint.key}:{taint.effect}")
    return cleanup


def uninstall(
    client: Client,
    namespace: str,
    *,
    taint_keys: Iterable[str] = (DEFAULT_TAINT_KEY,),
    dry_run: bool = False,
    pods_timeout: float = 120.0,
    echo: Echo = lambda _: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Step]:
    steps: list[Step] = []

    def done(step: Step) -> None:
        steps.append(step)
        echo(step.line(dry_run))

    keys = {k for k in taint_keys if k}
    installed_key = agent_taint_key(client, namespace)
    if installed_key:
        keys.add(installed_key)

    done(_delete(client, DaemonSet, AGENT_NAME, namespace, dry_run))
    if not dry_run:
        _wait_pods_gone(client, namespace, pods_timeout, echo, clock, sleep)

    cleaned = 0
    with api_errors("nodes"):
        nodes = list(client.list(Node))
    for node in nodes:
        with api_errors(f"node/{node.metadata.name if node.metadata else '?'}"):
            cleanup = clean_node(client, node, sorted(keys), dry_run=dry_run)
        if not cleanup.empty:
            cleaned += 1
            done(Step(f"node/{cleanup.name}", "cleaned", cleanup.detail()))
    if not cleaned:
        echo(f"nodes: nothing of meshready's on {len(nodes)} node(s)")

    done(_delete(client, ValidatingAdmissionPolicyBinding, POLICY_NAME, None, dry_run, True))
    done(_delete(client, ValidatingAdmissionPolicy, POLICY_NAME, None, dry_run, True))
    done(_delete(client, RoleBinding, AGENT_NAME, EVENTS_NAMESPACE, dry_run))
    done(_delete(client, Role, AGENT_NAME, EVENTS_NAMESPACE, dry_run))
    done(_delete(client, ClusterRoleBinding, AGENT_NAME, None, dry_run))
    done(_delete(client, ClusterRole, AGENT_NAME, None, dry_run))
    done(_delete(client, ServiceAccount, AGENT_NAME, namespace, dry_run))
    done(_delete_namespace(client, namespace, dry_run))
    return steps


def _delete(
    client: Client,
    kind: Any,
    name: str,
    namespace: str | None,
    dry_run: bool,
    optional_kind: bool = False,
) -> Step:
    """OPTIONAL_KIND: a kind older clusters do not serve (the admission policy before 1.30):
    its absence is "not found", not an error."""
    label = f"{_PLURAL.get(kind.__name__, kind.__name__.lower())}/{name}"
    try:
        with api_errors(label):
            if namespace is not None and issubclass(kind, NamespacedResource):
                client.delete(
                    kind,
                    name,
                    namespace=namespace,
                    cascade=CascadeType.BACKGROUND,
                    dry_run=dry_run,
                )
            else:
                client.delete(kind, name, cascade=CascadeType.BACKGROUND, dry_run=dry_run)
    except NotFound:
        return Step(label, "not found")
    except NotServed:
        if optional_kind:
            return Step(label, "not found")
        raise
    return Step(label, "deleted")


def _delete_namespace(client: Client, namespace: str, dry_run: bool) -> Step:
    label = f"namespace/{namespace}"
    if namespace in SYSTEM_NAMESPACES:
        return Step(label, "skipped", "a system namespace")
    try:
        with api_errors(label, no_status=""):
            ns = client.get(Namespace, namespace)
    except NotFound:
        return Step(label, "not found")
    if not _managed_by_us(ns.metadata.labels if ns.metadata else None):
        return Step(label, "skipped", "not created by meshready: left in place")
    return _delete(client, Namespace, namespace, None, dry_run)


def _wait_pods_gone(
    client: Client,
    namespace: str,
    timeout: float,
    echo: Echo,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    deadline = clock() + timeout
    announced = False
    while True:
        try:
            with api_errors("pods"):
                pods = list(client.list(Pod, namespace=namespace, labels=dict(SELECTOR_LABELS)))
        except NotFound:
            return
        if not pods:
            return
        if not announced:
            echo(f"waiting for {len(pods)} agent pod(s) to stop")
            announced = True
        if clock() >= deadline:
            echo(
                f"warning: {len(pods)} agent pod(s) still running after {timeout:g} s; "
                "cleaning nodes anyway"
            )
            return
        sleep(1.0)
