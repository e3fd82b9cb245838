"""Pods that failed because of traffic interception: mesh init containers and mesh CNI/ztunnel pods.

``list_candidate_pods`` asks the API only for pods that can be such failures (server-side
selectors, so a 50,000-pod cluster sends the few hundred that are not running, not all of them);
``find_failures`` is pure (Pod objects in, failures out); ``read_failure_logs`` reads their logs,
the previous attempt too, with a cap on concurrent requests.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx2
from lightkube import operators
from lightkube.config import client_adapter
from lightkube.config.client_adapter import ConnectionParams
from lightkube.config.kubeconfig import SingleConfig
from lightkube.core.selector import build_selector
from lightkube.models.core_v1 import ContainerStatus
from lightkube.resources.core_v1 import Pod

from meshready.cluster.errors import ClusterError

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
# A pod whose mesh init container fails never reaches Running: it stays Pending while the kubelet
# retries the init container (restartPolicy Always/OnFailure) or becomes Failed (Never); see
# https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-phase and
# .../init-containers/#detailed-behavior. Field selectors on pods support status.phase and
# spec.nodeName (pkg/registry/core/pod/strategy.go, PodToSelectableFields).
NOT_STARTED_PHASES = ("Running", "Succeeded")
PAGE_SIZE = 500
LOG_TAIL_LINES = 400
LOG_LIMIT_BYTES = 256 * 1024
LIST_CAP = 512 * 2**20  # bytes of one pod list; tens of thousands of failing pods stay below
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


def _node_pod_selectors() -> dict[str, list[str]]:
    """label key -> values of the mesh's node pods (CrashLoopBackOff there keeps phase Running)."""
    out: dict[str, list[str]] = {}
    for key, value in MESH_NODE_PODS:
        out.setdefault(key, []).append(value)
    return out


def list_candidate_pods(
    reader: LogReader,
    *,
    namespace: str | None = None,
    labels: Sequence[tuple[str, Any]] = (),
    node: str | None = None,
    on_pod: Callable[[int], None] | None = None,
) -> list[Pod]:
    """Pods that have not started (any labels the caller gives) and the mesh's node pods (any
    phase), each once. ON_POD(count so far) is called as lists arrive.

    Each list is answered from the API server's watch cache (``resourceVersion=0``, what
    informers use): the server filters its in-memory copy instead of reading and decoding every
    pod from etcd for each selector, which at 50,000 pods is most of the time a list takes. The
    snapshot may be a moment old, which a diagnosis of failures that persist does not mind."""
    found: dict[tuple[str, str], Pod] = {}
    node_field: dict[str, Any] = {"spec.nodeName": node} if node else {}
    queries: list[tuple[list[tuple[str, Any]], dict[str, Any]]] = [
        (
            list(labels),
            {"status.phase": operators.not_in(list(NOT_STARTED_PHASES)), **node_field},
        )
    ]
    for key, values in _node_pod_selectors().items():
        queries.append(([*labels, (key, operators.in_(values))], dict(node_field)))
    for selector, fields in queries:
        for pod in reader.list_pods(
            namespace,
            label_selector=build_selector(selector) if selector else None,
            field_selector=build_selector(fields, for_fields=True) if fields else None,
        ):
            meta = pod.metadata
            if meta is None:
                continue
            found.setdefault((meta.namespace or "", meta.name or ""), pod)
        if on_pod is not None:
            on_pod(len(found))
    return list(found.values())


def find_failures(pods: Iterable[Pod]) -> list[PodFailure]:
    out: list[PodFailure] = []
    for pod in pods:
        meta, spec, status = pod.metadata, pod.spec, pod.status
        if meta is None or status is None:
            continue
        pod_ref = _PodRef(
            meta.namespace or "default", meta.name or "", spec.nodeName if spec else None
        )
        for cs in status.initContainerStatuses or []:
            mesh = MESH_INIT_CONTAINERS.get(cs.name)
            if mesh:
                out.extend(pod_ref.failure(cs, "init", mesh))
        labels = meta.labels or {}
        node_mesh = next((m for (k, v), m in MESH_NODE_PODS.items() if labels.get(k) == v), None)
        if node_mesh:
            for cs in [*(status.initContainerStatuses or []), *(status.containerStatuses or [])]:
                out.extend(pod_ref.failure(cs, "node-pod", node_mesh))
    return out


@dataclass(frozen=True)
class _PodRef:
    """The pod a container status belongs to, as a failure names it."""

    namespace: str
    pod: str
    node: str | None

    def failure(self, cs: ContainerStatus, kind: str, mesh: str) -> list[PodFailure]:
        """The container's failure, if it failed: a list of zero or one."""
        failed, why = _failed(cs)
        if not failed:
            return []
        return [
            PodFailure(
                self.namespace,
                self.pod,
                self.node,
                cs.name,
                kind,
                mesh,
                why,
                cs.restartCount,
                _has_previous(cs),
            )
        ]


class LogReadError(Exception):
    """A container log could not be read (the API's message)."""


class LogReader:
    """Reads container logs, the previous attempt's too, through lightkube's public connection
    adapter (lightkube 1.0's ``Client.log`` has no ``previous``). Each read is bounded in lines,
    bytes and time."""

    def __init__(
        self, config: SingleConfig, timeout: float | None = 15.0, transport: Any = None
    ) -> None:
        params = ConnectionParams(
            timeout=httpx2.Timeout(timeout), trust_env=False, transport=transport
        )
        self._http = client_adapter.Client(config, params)

    def read(self, failure: PodFailure, previous: bool) -> str:
        params: dict[str, str | int] = {
            "container": failure.container,
            "tailLines": LOG_TAIL_LINES,
            "limitBytes": LOG_LIMIT_BYTES,
        }
        if previous:
            params["previous"] = "true"
        ns, pod = quote(failure.namespace, safe=""), quote(failure.pod, safe="")
        path = f"/api/v1/namespaces/{ns}/pods/{pod}/log"
        response = self._http.get(path, params=params)
        if response.is_error:
            raise LogReadError(_status_message(response.status_code, response.content))
        return str(response.text)

    def list_pods(
        self,
        namespace: str | None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[Pod]:
        """Pods from the watch cache (resourceVersion=0), read up to LIST_CAP bytes."""
        path = (
            f"/api/v1/namespaces/{quote(namespace, safe='')}/pods" if namespace else "/api/v1/pods"
        )
        params = {"resourceVersion": "0"}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        with self._http.stream("GET", path, params=params) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > LIST_CAP:
                    raise ClusterError(
                        f"listing pods: more than {LIST_CAP // 2**20} MiB of pods match; "
                        "narrow it with -n or -l"
                    )
            if response.is_error:
                message = _status_message(response.status_code, bytes(body))
                raise ClusterError(f"listing pods: {message}")
        try:
            items = json.loads(body).get("items") or []
        except (ValueError, AttributeError) as exc:
            raise ClusterError(f"listing pods: not a PodList ({exc})") from exc
        pods = []
        for item in items:
            pod = Pod.from_dict(item)
            assert isinstance(pod, Pod)
            pods.append(pod)
        return pods

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _status_message(code: int, body: bytes) -> str:
    """The API's Status message, or the start of the body."""
    try:
        status = json.loads(body)
    except ValueError:
        status = None
    if isinstance(status, dict) and status.get("message"):
        return f"{code}: {status['message']}"
    return f"{code}: {' '.join(body.decode('utf-8', 'replace').split())[:200]}"


def read_failure_logs(
    reader: LogReader,
    failures: list[PodFailure],
    concurrency: int = DEFAULT_CONCURRENCY,
    progress: Callable[[PodFailure], None] | None = None,
) -> list[PodLogs]:
    def fetch(failure: PodFailure) -> PodLogs:
        logs = PodLogs(failure)
        attempts = [(False, "current")] + ([(True, "previous")] if failure.has_previous else [])
        for previous, label in attempts:
            try:
                text = reader.read(failure, previous)
            except LogReadError as exc:
                logs.errors.append(f"{label} log: {exc}")
                continue
            except (httpx2.HTTPError, OSError) as exc:
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
