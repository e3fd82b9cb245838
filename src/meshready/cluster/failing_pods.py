"""Pods that failed because of traffic interception: mesh init containers and mesh CNI/ztunnel pods.

``find_failures`` is pure (Pod objects in, failures out); ``read_failure_logs`` reads their logs,
the previous attempt too, with a cap on concurrent requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from lightkube import ApiError, Client
from lightkube.models.core_v1 import ContainerStatus
from lightkube.resources.core_v1 import Pod, PodLog

# Init containers that apply or validate interception rules in the pod's network namespace.
MESH_INIT_CONTAINERS = {
    "istio-init": "istio",
    "istio-validation": "istio",
    "linkerd-init": "linkerd",
    "linkerd-network-validator": "linkerd",
    "kuma-init": "kuma",
    "kuma-validation": "kuma",
    "osm-init": "osm",
    "proxy-init": "other",
}
# Node-level mesh pods that program interception for other pods (labels as the charts set them).
MESH_NODE_PODS = {
    ("k8s-app", "istio-cni-node"): "istio-cni",
    ("app", "istio-cni-node"): "istio-cni",
    ("app", "ztunnel"): "ztunnel",
    ("k8s-app", "linkerd-cni"): "linkerd-cni",
}
LOG_TAIL_LINES = 400
DEFAULT_CONCURRENCY = 8


@dataclass(frozen=True)
class PodFailure:
    namespace: str
    pod: str
    node: str | None
    container: str
    kind: str  # init | node-pod
    mesh: str
    state: str  # CrashLoopBackOff, Error, exit code ...
    restarts: int
    has_previous: bool


@dataclass
class PodLogs:
    failure: PodFailure
    current: str = ""
    previous: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        parts = [p for p in (self.previous, self.current) if p.strip()]
        return "\n".join(parts)


def _failed(status: ContainerStatus) -> tuple[bool, str]:
    state = status.state
    if (
        state is not None
        and state.waiting is not None
        and state.waiting.reason
        in (
            "CrashLoopBackOff",
            "Error",
            "RunContainerError",
        )
    ):
        return True, state.waiting.reason or "waiting"
    if state is not None and state.terminated is not None and state.terminated.exitCode != 0:
        return True, f"{state.terminated.reason or 'Error'} (exit {state.terminated.exitCode})"
    last = status.lastState
    if (
        not status.ready
        and last is not None
        and last.terminated is not None
        and last.terminated.exitCode != 0
    ):
        return True, f"restarting after exit {last.terminated.exitCode}"
    return False, ""


def _has_previous(status: ContainerStatus) -> bool:
    last = status.lastState
    return last is not None and last.terminated is not None


def find_failures(pods: Iterable[Pod]) -> list[PodFailure]:
    out: list[PodFailure] = []
    for pod in pods:
        meta, spec, status = pod.metadata, pod.spec, pod.status
        if meta is None or status is None:
            continue
        namespace, name = meta.namespace or "default", meta.name or ""
        node = spec.nodeName if spec else None
        for cs in status.initContainerStatuses or []:
            mesh = MESH_INIT_CONTAINERS.get(cs.name)
            failed, why = _failed(cs)
            if mesh and failed:
                out.append(
                    PodFailure(
                        namespace,
                        name,
                        node,
                        cs.name,
                        "init",
                        mesh,
                        why,
                        cs.restartCount,
                        _has_previous(cs),
                    )
                )
        labels = meta.labels or {}
        node_mesh = next((m for (k, v), m in MESH_NODE_PODS.items() if labels.get(k) == v), None)
        if node_mesh:
            for cs in [*(status.initContainerStatuses or []), *(status.containerStatuses or [])]:
                failed, why = _failed(cs)
                if failed:
                    out.append(
                        PodFailure(
                            namespace,
                            name,
                            node,
                            cs.name,
                            "node-pod",
                            node_mesh,
                            why,
                            cs.restartCount,
                            _has_previous(cs),
                        )
                    )
    return out


def read_log(client: Client, failure: PodFailure, previous: bool) -> str:
    """One container log. lightkube's Client.log has no ``previous``; this builds the same request
    with it, through lightkube's generic client (tests/apiserver guard this against upgrades)."""
    generic = client._client
    params: dict[str, object] = {"container": failure.container, "tailLines": LOG_TAIL_LINES}
    if previous:
        params["previous"] = True
    request = generic.prepare_request(
        "get", PodLog, name=failure.pod, namespace=failure.namespace, params=params
    )
    response = generic.send(generic.build_adapter_request(request))
    generic.raise_for_status(response)  # type: ignore[no-untyped-call]
    return str(response.text)


def read_failure_logs(
    client: Client,
    failures: list[PodFailure],
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[PodFailure], None] | None = None,
) -> list[PodLogs]:
    def fetch(failure: PodFailure) -> PodLogs:
        logs = PodLogs(failure)
        attempts = [(False, "current")] + ([(True, "previous")] if failure.has_previous else [])
        for previous, label in attempts:
            try:
                text = read_log(client, failure, previous)
            except ApiError as exc:
                logs.errors.append(f"{label} log: {exc.status.message if exc.status else exc}")
                continue
            except OSError as exc:
                logs.errors.append(f"{label} log: {exc}")
                continue
            if previous:
                logs.previous = text
            else:
                logs.current = text
        if progress is not None:
            progress(failure)
        return logs

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(fetch, failures))
