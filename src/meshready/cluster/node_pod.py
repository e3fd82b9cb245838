"""A short-lived pod on one node that runs ``meshready check`` or ``meshready fix`` there.

What ``kubectl meshready check node/NAME`` does when no agent reports on that node: like
``kubectl debug node/NAME`` (a pod bound to the node with ``spec.nodeName``, the host's root
filesystem at ``/host``), but the host root is mounted read-only, and the container gets:

- for ``check``: no capabilities at all (reading /host, /proc/modules and /sys/module needs none);
- for ``fix``: exactly the security context of the agent DaemonSet's container that loads
  modules (``cluster.manifests``: SYS_MODULE, everything else dropped, read-only root) and, like
  it, the host's ``/etc/modules-load.d`` writable for persistence.

The pod is always deleted (``run_node_pod``'s ``finally``), with a bounded wait for the API.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from lightkube import Client
from lightkube.resources.core_v1 import Pod

from meshready.cluster.errors import ClusterError, NotFound, api_errors, describe
from meshready.cluster.manifests import ManifestOptions, daemonset_object
from meshready.cluster.names import APP_LABELS, HOST_MOUNT

CONTAINER = "meshready"
KINDS = ("check", "fix")
POD_LABELS = {k: v for k, v in APP_LABELS.items() if k != "app.kubernetes.io/name"}
LOG_CAP = 4 * 1024 * 1024  # a report is a few tens of KiB
_OBJECT = re.compile(r"\n\{")
# Waiting reasons after which the container will not start without a change (wrong image, ...).
FATAL_WAITING = (
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
)


PERSIST_VOLUME = "host-modules-load"  # the agent's writable /etc/modules-load.d (manifests)


def agent_loader(image: str) -> dict[str, Any]:
    """The agent DaemonSet's container that loads modules (the one given SYS_MODULE): a fix pod
    gets exactly its security context and its writable modules-load.d."""
    spec = daemonset_object(ManifestOptions(image=image).validated())["spec"]["template"]["spec"]
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        added = container["securityContext"].get("capabilities", {}).get("add", [])
        if "SYS_MODULE" in added:
            return dict(container)
    raise AssertionError("the agent DaemonSet has no container with SYS_MODULE")


def node_pod(
    node: str,
    kind: str,
    *,
    image: str,
    namespace: str,
    args: list[str],
    image_pull_policy: str = "IfNotPresent",
    deadline_seconds: int = 300,
) -> dict[str, Any]:
    """The Pod object (a dict) that runs ``meshready KIND ARGS`` on NODE."""
    if kind not in KINDS:
        raise ValueError(kind)
    host_root = {"name": "host-root", "mountPath": HOST_MOUNT, "readOnly": True}
    volumes: list[dict[str, Any]] = [
        {"name": "host-root", "hostPath": {"path": "/", "type": "Directory"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
    ]
    mounts: list[dict[str, Any]] = [host_root, {"name": "tmp", "mountPath": "/tmp"}]
    if kind == "fix":
        loader = agent_loader(image)
        security = dict(loader["securityContext"])
        template = daemonset_object(ManifestOptions(image=image).validated())["spec"]["template"]
        persist = [m for m in loader["volumeMounts"] if m["name"] == PERSIST_VOLUME]
        mounts += persist
        volumes += [v for v in template["spec"]["volumes"] if v["name"] == PERSIST_VOLUME]
    else:
        security = {
            "privileged": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsUser": 0,  # the host's files are root's
            "runAsNonRoot": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": f"meshready-{kind}-",
            "namespace": namespace,
            "labels": {**POD_LABELS, "app.kubernetes.io/name": f"meshready-{kind}"},
        },
        "spec": {
            "nodeName": node,  # bound by us, as kubectl debug node/ does: no scheduler involved
            "restartPolicy": "Never",
            "activeDeadlineSeconds": deadline_seconds,
            "terminationGracePeriodSeconds": 5,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "tolerations": [{"operator": "Exists"}],  # it must run where a startup taint is
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": CONTAINER,
                    "image": image,
                    "imagePullPolicy": image_pull_policy,
                    "command": ["meshready"],
                    "args": [kind, *args],
                    "env": [
                        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                        # the check names the node it looked at (cli.machine)
                        {
                            "name": "MESHREADY_NODE_NAME",
                            "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                        },
                    ],
                    "securityContext": security,
                    "volumeMounts": mounts,
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "48Mi"},
                        "limits": {"cpu": "500m", "memory": "256Mi"},
                    },
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                }
            ],
            "volumes": volumes,
        },
    }


@dataclass(frozen=True)
class PodRun:
    pod: str
    namespace: str
    exit_code: int
    log: str
    data: dict[str, Any] | None  # the JSON the command printed, when it printed one
    messages: tuple[str, ...]  # what it printed besides (warnings, errors), one per line
    deleted: bool = False
    delete_error: str | None = None


def parse_output(log: str) -> tuple[dict[str, Any] | None, tuple[str, ...]]:
    """(the JSON object the command printed with -o json, the other lines around it): in a
    container log stdout and stderr are one stream."""
    decoder = json.JSONDecoder()
    starts = ([0] if log.startswith("{") else []) + [m.start() + 1 for m in _OBJECT.finditer(log)]
    for at in starts:
        try:
            data, end = decoder.raw_decode(log, at)
        except ValueError:
            continue
        if isinstance(data, dict):
            rest = log[:at] + log[end:]
            return data, tuple(line for line in rest.splitlines() if line.strip())
    return None, tuple(line for line in log.splitlines() if line.strip())


def _waiting_reason(pod: Pod) -> tuple[str | None, str]:
    statuses = (pod.status.containerStatuses if pod.status else None) or []
    for status in statuses:
        waiting = status.state.waiting if status.state else None
        if waiting is not None and waiting.reason:
            return waiting.reason, waiting.message or ""
    return None, ""


def _terminated(pod: Pod) -> int | None:
    statuses = (pod.status.containerStatuses if pod.status else None) or []
    for status in statuses:
        done = status.state.terminated if status.state else None
        if done is not None:
            return done.exitCode
    return None


def _read_log(client: Client, name: str, namespace: str) -> str:
    parts: list[str] = []
    size = 0
    for line in client.log(name, namespace=namespace, container=CONTAINER):
        parts.append(line)
        size += len(line)
        if size > LOG_CAP:
            break
    return "".join(parts)


def run_node_pod(
    client: Client,
    body: dict[str, Any],
    *,
    timeout: float,
    delete_timeout: float = 30.0,
    poll: float = 0.5,
    on_state: Callable[[str], None] = lambda _: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> PodRun:
    """Create BODY, wait (at most TIMEOUT s) until its container ends, read its log, delete it.

    Raises ClusterError when the pod cannot be created, will not start (image, config) or does
    not finish in time; the pod is deleted in every case."""
    namespace = body["metadata"]["namespace"]
    node = body["spec"]["nodeName"]
    obj = Pod.from_dict(body)
    assert isinstance(obj, Pod)
    # the API's refusal names the node; unreachable and the like are said where it is caught
    with api_errors(f"node/{node}: cannot create the check pod", no_status=""):
        created = client.create(obj, namespace=namespace)
    name = created.metadata.name if created.metadata and created.metadata.name else ""
    on_state(f"pod {namespace}/{name} created on node {node}")
    try:
        run = _wait_and_read(client, body, name, timeout, poll, on_state, clock, sleep)
    finally:
        deleted, delete_error = delete_pod(client, name, namespace, delete_timeout, clock, sleep)
        if not deleted:
            on_state(f"could not delete pod {namespace}/{name}: {delete_error}")
    return replace(run, deleted=deleted, delete_error=delete_error)


def _wait_and_read(
    client: Client,
    body: dict[str, Any],
    name: str,
    timeout: float,
    poll: float,
    on_state: Callable[[str], None],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> PodRun:
    namespace = body["metadata"]["namespace"]
    node = body["spec"]["nodeName"]
    deadline = clock() + timeout
    while True:
        pod = client.get(Pod, name, namespace=namespace)
        phase = (pod.status.phase if pod.status else None) or "Pending"
        code = _terminated(pod)
        if code is not None or phase in ("Succeeded", "Failed"):
            break
        reason, message = _waiting_reason(pod)
        if reason in FATAL_WAITING:
            image = body["spec"]["containers"][0]["image"]
            raise ClusterError(
                f"node/{node}: pod {namespace}/{name} cannot start: {reason}: "
                f"{' '.join(message.split())[:300]} (image {image}; --image sets another)"
            )
        if clock() >= deadline:
            raise ClusterError(
                f"node/{node}: pod {namespace}/{name} did not finish within {timeout:g} s "
                f"(phase {phase}{', ' + reason if reason else ''}); is the node's kubelet "
                "running? --timeout waits longer"
            )
        on_state(f"pod {namespace}/{name} on node {node}: {reason or phase}")
        sleep(poll)
    log = _read_log(client, name, namespace)
    data, messages = parse_output(log)
    return PodRun(name, namespace, code if code is not None else -1, log, data, messages)


def delete_pod(
    client: Client,
    name: str,
    namespace: str,
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[bool, str | None]:
    """Delete the pod (no grace: it has finished or must go), retrying transient failures until
    TIMEOUT. (deleted, why not)."""
    deadline = clock() + timeout
    last = "not tried"
    while True:
        try:
            with api_errors():
                client.delete(Pod, name, namespace=namespace, grace_period=0)
            return True, None
        except NotFound:
            return True, None
        except ClusterError as exc:  # refused, unreachable, timed out: retried until the deadline
            last = describe(exc)
        if clock() >= deadline:
            return False, last
        sleep(1.0)
