"""find_failures: which containers of which pods count as interception failures (pure)."""

from __future__ import annotations

from lightkube.models.core_v1 import (
    ContainerState,
    ContainerStateTerminated,
    ContainerStateWaiting,
    ContainerStatus,
    PodSpec,
    PodStatus,
)
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Pod

from meshready.cluster.failing_pods import PodFailure, find_failures


def _status(
    name: str,
    *,
    waiting: str | None = None,
    exit_code: int | None = None,
    last_exit: int | None = None,
    ready: bool = False,
    restarts: int = 0,
) -> ContainerStatus:
    state = ContainerState(
        waiting=ContainerStateWaiting(reason=waiting) if waiting else None,
        terminated=(
            ContainerStateTerminated(exitCode=exit_code, reason="Error")
            if exit_code is not None
            else None
        ),
    )
    last = (
        ContainerState(terminated=ContainerStateTerminated(exitCode=last_exit))
        if last_exit is not None
        else None
    )
    return ContainerStatus(
        name=name,
        image="img",
        imageID="",
        ready=ready,
        restartCount=restarts,
        state=state,
        lastState=last,
    )


def _pod(
    init: list[ContainerStatus],
    main: list[ContainerStatus] | None = None,
    labels: dict[str, str] | None = None,
    node: str | None = "node-a",
) -> Pod:
    return Pod(
        metadata=ObjectMeta(name="web-1", namespace="shop", labels=labels),
        spec=PodSpec(containers=[], nodeName=node),
        status=PodStatus(initContainerStatuses=init, containerStatuses=main),
    )


def test_a_failed_mesh_init_container_is_a_failure_with_its_pod_and_node() -> None:
    pod = _pod([_status("istio-init", waiting="CrashLoopBackOff", last_exit=1, restarts=4)])
    assert find_failures([pod]) == [
        PodFailure("shop", "web-1", "node-a", "istio-init", "init", "istio",
                   "CrashLoopBackOff", 4, True)
    ]  # fmt: skip


def test_other_init_containers_and_healthy_mesh_init_containers_are_not() -> None:
    pod = _pod(
        [
            _status("wait-for-db", waiting="CrashLoopBackOff"),
            _status("linkerd-init", exit_code=0, ready=True),
        ]
    )
    assert find_failures([pod]) == []


def test_every_failed_container_of_a_mesh_node_pod_counts() -> None:
    pod = _pod(
        [_status("install-cni", exit_code=2)],
        [_status("istio-cni", last_exit=137), _status("sidecar", ready=True)],
        labels={"k8s-app": "istio-cni-node"},
        node=None,
    )
    assert find_failures([pod]) == [
        PodFailure("shop", "web-1", None, "install-cni", "node-pod", "istio-cni",
                   "Error (exit 2)", 0, False),
        PodFailure("shop", "web-1", None, "istio-cni", "node-pod", "istio-cni",
                   "restarting after exit 137", 0, True),
    ]  # fmt: skip


def test_a_mesh_init_container_of_a_mesh_node_pod_counts_twice() -> None:
    """Once as the mesh init container it is, once as a container of the node pod."""
    pod = _pod([_status("istio-init", exit_code=1)], labels={"app": "ztunnel"})
    assert [(f.kind, f.mesh) for f in find_failures([pod])] == [
        ("init", "istio"),
        ("node-pod", "ztunnel"),
    ]


def test_pods_without_metadata_or_status_are_skipped() -> None:
    assert find_failures([Pod(metadata=None, status=PodStatus()), Pod(metadata=ObjectMeta())]) == []
