"""The harness itself, against the real kube-apiserver + etcd: what other tests rely on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from lightkube import ApiError, Client, KubeConfig
from lightkube.models.core_v1 import NodeSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.models.rbac_v1 import PolicyRule, RoleRef, Subject
from lightkube.resources.core_v1 import ConfigMap, Namespace, Node, Pod, PodLog, Secret
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding

from .cluster import (
    ApiRequestError,
    FakeKubelet,
    LocalCluster,
    RawClient,
    can_i,
    serviceaccount_user,
    wait_for,
)

pytestmark = pytest.mark.apiserver


def test_apiserver_is_up_and_fast(cluster: LocalCluster, admin_client: Client) -> None:
    assert cluster.version.startswith("v1.20."), cluster.version
    assert cluster.apiserver_running
    assert admin_client.get(Namespace, "default").metadata is not None
    readyz = cluster.api.request_text("GET", "/readyz", query={"verbose": True})
    assert "readyz check passed" in readyz
    # The whole harness start (etcd + apiserver + bootstrap namespaces): about 5 s here.
    assert cluster.startup_seconds < 30, cluster.startup_seconds
    config = KubeConfig.from_file(cluster.admin_kubeconfig).get()
    assert config is not None and config.cluster.server == cluster.server


def test_server_side_apply_with_field_managers(admin_client: Client, namespace: str) -> None:
    def configmap(value: str) -> ConfigMap:
        return ConfigMap(
            metadata=ObjectMeta(name="settings", namespace=namespace), data={"mode": value}
        )

    applied = admin_client.apply(configmap("one"), field_manager="meshready-test")
    assert applied.data == {"mode": "one"}
    assert applied.metadata is not None and applied.metadata.managedFields is not None
    managers = {(m.manager, m.operation) for m in applied.metadata.managedFields}
    assert ("meshready-test", "Apply") in managers

    # Another manager may not take over an owned field without force: a real 409 conflict.
    with pytest.raises(ApiError) as conflict:
        admin_client.apply(configmap("two"), field_manager="someone-else")
    assert conflict.value.status.code == 409
    assert "conflict" in (conflict.value.status.message or "").lower()
    forced = admin_client.apply(configmap("two"), field_manager="someone-else", force=True)
    assert forced.data == {"mode": "two"}

    # Applying with fewer fields removes the ones this manager alone owned.
    admin_client.apply(
        ConfigMap(
            metadata=ObjectMeta(name="settings", namespace=namespace),
            data={"mode": "two", "extra": "x"},
        ),
        field_manager="someone-else",
    )
    pruned = admin_client.apply(configmap("two"), field_manager="someone-else")
    assert pruned.data == {"mode": "two"}


@pytest.fixture
def node_patcher_role(cluster: LocalCluster, namespace: str) -> Iterator[str]:
    """A ClusterRole allowing nodes get/patch, bound to ServiceAccount NAMESPACE/agent."""
    name = f"{namespace}-node-patcher"
    client = cluster.client()
    client.create(
        ClusterRole(
            metadata=ObjectMeta(name=name),
            rules=[PolicyRule(apiGroups=[""], resources=["nodes"], verbs=["get", "patch"])],
        )
    )
    client.create(
        ClusterRoleBinding(
            metadata=ObjectMeta(name=name),
            roleRef=RoleRef(apiGroup="rbac.authorization.k8s.io", kind="ClusterRole", name=name),
            subjects=[Subject(kind="ServiceAccount", name="agent", namespace=namespace)],
        )
    )
    yield name
    client.delete(ClusterRoleBinding, name)
    client.delete(ClusterRole, name)
    client.close()


def test_rbac_is_enforced_for_a_serviceaccount_token(
    cluster: LocalCluster, admin_client: Client, namespace: str, node_patcher_role: str
) -> None:
    node = f"{namespace}-node"
    admin_client.create(Node(metadata=ObjectMeta(name=node), spec=NodeSpec()))
    kubeconfig = cluster.serviceaccount_kubeconfig(namespace, "agent")
    # The authorizer's cache sees a new binding a moment after it is written.
    wait_for(lambda: can_i(kubeconfig, "patch", "nodes", name=node), what="RBAC for the SA")

    assert can_i(kubeconfig, "get", "nodes")
    assert not can_i(kubeconfig, "list", "nodes")
    assert not can_i(kubeconfig, "list", "secrets", namespace=namespace)
    assert cluster.serviceaccount_can(namespace, "agent", "patch", "nodes")
    assert not cluster.serviceaccount_can(namespace, "agent", "delete", "nodes")
    assert not cluster.serviceaccount_can(namespace, "other", "patch", "nodes")

    with cluster.client(kubeconfig) as sa_client:
        patched = sa_client.patch(
            Node, node, {"metadata": {"labels": {"meshready.io/ready": "true"}}}
        )
        assert patched.metadata is not None and patched.metadata.labels is not None
        assert patched.metadata.labels["meshready.io/ready"] == "true"
        with pytest.raises(ApiError) as denied:
            list(sa_client.list(Secret, namespace=namespace))
        assert denied.value.status.code == 403
        # The real identity of a TokenRequest token, not the admin's.
        assert serviceaccount_user(namespace, "agent") in (denied.value.status.message or "")
        with pytest.raises(ApiError) as denied_delete:
            sa_client.delete(Node, node)
        assert denied_delete.value.status.code == 403


def test_restart_keeps_data_and_clients_reconnect(
    cluster: LocalCluster, admin_client: Client, namespace: str
) -> None:
    admin_client.create(
        ConfigMap(metadata=ObjectMeta(name="before", namespace=namespace), data={"k": "v"})
    )
    sa_kubeconfig = cluster.serviceaccount_kubeconfig(namespace, "outage")
    port = cluster.port
    cluster.stop_apiserver()
    try:
        assert not cluster.apiserver_running
        with pytest.raises(httpx2.TransportError):
            admin_client.get(ConfigMap, "before", namespace=namespace)
    finally:
        cluster.start_apiserver()
    assert cluster.port == port
    # The same client object reconnects; etcd kept the data.
    kept = admin_client.get(ConfigMap, "before", namespace=namespace)
    assert kept.data == {"k": "v"}
    # Tokens minted before the restart still authenticate (same signing key and CA).
    assert can_i(sa_kubeconfig, "create", "selfsubjectaccessreviews", group="authorization.k8s.io")
    with pytest.raises(ApiError) as denied, cluster.client(sa_kubeconfig) as sa_client:
        sa_client.get(ConfigMap, "before", namespace=namespace)
    assert denied.value.status.code == 403


def _log_pod(cluster: LocalCluster, kubelet: FakeKubelet, namespace: str) -> tuple[str, str]:
    node = f"{namespace}-node"
    cluster.create_node(node, kubelet=kubelet, labels={"kubernetes.io/os": "linux"})
    pod = "agent-x1"
    cluster.create_pod(
        namespace,
        pod,
        node_name=node,
        init_containers=[{"name": "init", "image": "busybox"}],
        containers=[{"name": "main", "image": "busybox"}],
        status={
            "phase": "Pending",
            "initContainerStatuses": [
                {
                    "name": "init",
                    "image": "busybox",
                    "imageID": "",
                    "ready": False,
                    "restartCount": 3,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
                },
            ],
        },
    )
    return node, pod


def test_node_and_pod_helpers_write_status(
    cluster: LocalCluster, admin_client: Client, kubelet: FakeKubelet, namespace: str
) -> None:
    node, pod = _log_pod(cluster, kubelet, namespace)
    got = admin_client.get(Node, node)
    assert got.spec is not None and got.spec.taints is None  # admission's not-ready taint: gone
    assert got.status is not None and got.status.daemonEndpoints is not None
    assert got.status.daemonEndpoints.kubeletEndpoint is not None
    assert got.status.daemonEndpoints.kubeletEndpoint.Port == kubelet.port
    addresses = [(a.type, a.address) for a in got.status.addresses or []]
    assert addresses == [("InternalIP", "127.0.0.1"), ("Hostname", node)]
    assert [(c.type, c.status) for c in got.status.conditions or []] == [("Ready", "True")]
    got_pod = admin_client.get(Pod, pod, namespace=namespace)
    assert got_pod.spec is not None and got_pod.spec.nodeName == node
    assert got_pod.status is not None and got_pod.status.initContainerStatuses is not None
    init = got_pod.status.initContainerStatuses[0]
    assert init.restartCount == 3
    assert init.state is not None and init.state.waiting is not None
    assert init.state.waiting.reason == "CrashLoopBackOff"


def test_create_node_taints(cluster: LocalCluster, admin_client: Client, namespace: str) -> None:
    startup = {"key": "meshready.io/not-ready", "effect": "NoSchedule"}
    cluster.create_node(f"{namespace}-a", taints=[startup])
    cluster.create_node(f"{namespace}-b", taints=[startup], ready=False)
    a = admin_client.get(Node, f"{namespace}-a")
    b = admin_client.get(Node, f"{namespace}-b")
    assert a.spec is not None and b.spec is not None
    assert [(t.key, t.effect) for t in a.spec.taints or []] == [
        ("meshready.io/not-ready", "NoSchedule")
    ]
    assert sorted(t.key for t in b.spec.taints or []) == [
        "meshready.io/not-ready",
        "node.kubernetes.io/not-ready",
    ]


def test_pod_logs_through_the_apiserver_and_the_fake_kubelet(
    cluster: LocalCluster, admin_client: Client, kubelet: FakeKubelet, namespace: str
) -> None:
    _, pod = _log_pod(cluster, kubelet, namespace)
    kubelet.set_log(namespace, pod, "init", "starting\nwaiting for iptables\n")
    kubelet.set_log(
        namespace,
        pod,
        "init",
        "line 1\niptables-restore: line 3 failed\nExtension owner revision 0 not supported, "
        "missing kernel module?\n",
        previous=True,
    )
    kubelet.set_log(namespace, pod, "main", "never started\n")

    lines = list(admin_client.log(pod, namespace=namespace, container="init"))
    assert lines == ["starting\n", "waiting for iptables\n"]
    tail = list(admin_client.log(pod, namespace=namespace, container="init", tail_lines=1))
    assert tail == ["waiting for iptables\n"]

    # lightkube 1.0.1's Client.log has no `previous`; the apiserver forwards previous=true.
    previous = cluster.api.request_text(
        "GET",
        f"/api/v1/namespaces/{namespace}/pods/{pod}/log",
        query={"container": "init", "previous": True, "tailLines": 2},
    )
    assert previous == (
        "iptables-restore: line 3 failed\n"
        "Extension owner revision 0 not supported, missing kernel module?\n"
    )
    seen = [(r.pod, r.container, r.previous, r.tail_lines) for r in kubelet.requests]
    assert seen == [
        (pod, "init", False, None),
        (pod, "init", False, 1),
        (pod, "init", True, 2),
    ]


def test_previous_logs_with_lightkube(
    cluster: LocalCluster, admin_client: Client, kubelet: FakeKubelet, namespace: str
) -> None:
    """The lightkube request Client.log builds, plus `previous`: what `diagnose --cluster` needs.

    It uses lightkube's internal GenericSyncClient (`client._client`) the way Client.log does;
    this test breaks first if a lightkube upgrade changes that.
    """
    _, pod = _log_pod(cluster, kubelet, namespace)
    kubelet.set_log(namespace, pod, "init", "old crash\n", previous=True)
    generic = admin_client._client
    request = generic.prepare_request(
        "get",
        PodLog,
        name=pod,
        namespace=namespace,
        params={"container": "init", "previous": True, "tailLines": 50},
    )
    response = generic.send(generic.build_adapter_request(request))
    generic.raise_for_status(response)  # type: ignore[no-untyped-call]
    assert list(response.iter_lines()) == ["old crash"]
    assert kubelet.requests[-1].previous is True


def test_kubelet_errors_come_back_as_api_errors(
    cluster: LocalCluster, admin_client: Client, kubelet: FakeKubelet, namespace: str
) -> None:
    _, pod = _log_pod(cluster, kubelet, namespace)
    kubelet.set_log(namespace, pod, "init", "current only\n")
    # No previous instance registered: the kubelet's 400 reaches the client.
    with pytest.raises(ApiRequestError) as no_previous:
        cluster.api.request_text(
            "GET",
            f"/api/v1/namespaces/{namespace}/pods/{pod}/log",
            query={"container": "init", "previous": True},
        )
    assert no_previous.value.status == 400
    assert 'previous terminated container "init"' in no_previous.value.message
    with pytest.raises(ApiError) as not_started:
        list(admin_client.log(pod, namespace=namespace, container="main"))
    assert not_started.value.status.code == 400
    assert "is waiting to start" in (not_started.value.status.message or "")
    # A container the pod does not have is refused by the apiserver itself.
    with pytest.raises(ApiError) as unknown:
        list(admin_client.log(pod, namespace=namespace, container="nope"))
    assert unknown.value.status.code == 400
    assert "not valid for pod" in (unknown.value.status.message or "")


def test_serviceaccount_dir_works_as_in_cluster_config(
    cluster: LocalCluster, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = cluster.serviceaccount_dir(namespace, "incluster")
    for key, value in cluster.in_cluster_env().items():
        monkeypatch.setenv(key, value)
    config = KubeConfig.from_service_account(directory)
    with Client(config=config, trust_env=False) as client:
        with pytest.raises(ApiError) as denied:
            client.get(Node, "anything")
        assert denied.value.status.code == 403
        assert serviceaccount_user(namespace, "incluster") in (denied.value.status.message or "")


def test_a_second_cluster_with_static_users_cleans_up() -> None:
    """Independent clusters get their own ports; close() ends both processes and the temp dir."""
    with LocalCluster(users={"ops": ["system:masters"], "viewer": []}) as second:
        pids = [second.apiserver_pid, second.etcd_pid]
        workdir = second.workdir
        ops = RawClient.from_kubeconfig(second.user_kubeconfig("ops"))
        assert ops.get("/api/v1/namespaces/default")["metadata"]["name"] == "default"
        assert can_i(second.user_kubeconfig("ops"), "delete", "nodes")
        assert not can_i(second.user_kubeconfig("viewer"), "get", "nodes")
    assert not workdir.exists()
    for pid in pids:
        assert pid is not None
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), pid


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_missing_binary_is_reported_with_the_build_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from .cluster import MissingArtifactError, find_apiserver

    monkeypatch.delenv("MESHREADY_APISERVER", raising=False)
    monkeypatch.setenv("MESHREADY_CACHE", str(tmp_path))
    with pytest.raises(MissingArtifactError, match="scripts/build-test-artifacts"):
        find_apiserver()
