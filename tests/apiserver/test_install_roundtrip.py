"""install / uninstall against a real kube-apiserver 1.20 + etcd, through the CLI as a process.

What is real here: server-side apply with field managers, server dry run, validation and admission
of every object by a 1.20 apiserver, RBAC decisions for the agent's ServiceAccount token, and the
node patches of uninstall. What the harness lacks (no controllers, so no pods and no DaemonSet
status) is supplied by writing the DaemonSet's status as its controller would.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import ApiError, Client
from lightkube.resources.apps_v1 import DaemonSet
from lightkube.resources.core_v1 import Namespace, Node, ServiceAccount
from lightkube.resources.rbac_authorization_v1 import ClusterRole, ClusterRoleBinding

from meshready.cluster.install import install, uninstall
from meshready.cluster.manifests import ManifestOptions, PodProbeMode, render_objects
from meshready.cluster.names import AGENT_NAME
from meshready.cluster.node import NodePublisher, TaintSpec
from meshready.cluster.published import Publication, read_node_state
from tests.agent.process import run_cli

from .cluster import ApiRequestError, LocalCluster, can_i, wait_for

pytestmark = pytest.mark.apiserver

STARTUP = {"key": "meshready.io/not-ready", "effect": "NoSchedule"}
OTHER = {"key": "example.com/dedicated", "value": "db", "effect": "NoSchedule"}


def _cleanup_cluster_scoped(client: Client) -> None:
    for kind in (ClusterRoleBinding, ClusterRole):
        with contextlib.suppress(ApiError):
            client.delete(kind, AGENT_NAME)


@pytest.fixture(autouse=True)
def _fresh_cluster_scoped(admin_client: Client) -> None:
    """ClusterRole and ClusterRoleBinding have fixed names: start every test without them."""
    _cleanup_cluster_scoped(admin_client)


def _managers(obj: Any) -> set[tuple[str, str]]:
    return {(m.manager, m.operation) for m in obj.metadata.managedFields or []}


def test_install_upgrade_uninstall_round_trip(
    cluster: LocalCluster, admin_client: Client, namespace: str, tmp_path: Path
) -> None:
    ns = f"{namespace}-mr"  # install creates its own namespace
    kubeconfig = str(cluster.admin_kubeconfig)
    n1, n2 = f"{ns}-a", f"{ns}-b"
    cluster.create_node(n1, taints=[STARTUP, OTHER], labels={"team": "db"})
    cluster.create_node(n2, taints=[STARTUP])

    first = run_cli("install", "--kubeconfig", kubeconfig, "-n", ns, "--no-wait")
    assert first.returncode == 0, first.stderr
    assert [line.split()[:2] for line in first.stdout.splitlines()[1:]] == [
        [f"namespace/{ns}", "created"],
        [f"serviceaccount/{AGENT_NAME}", "created"],
        [f"clusterrole.rbac.authorization.k8s.io/{AGENT_NAME}", "created"],
        [f"clusterrolebinding.rbac.authorization.k8s.io/{AGENT_NAME}", "created"],
        [f"role.rbac.authorization.k8s.io/{AGENT_NAME}", "created"],
        [f"rolebinding.rbac.authorization.k8s.io/{AGENT_NAME}", "created"],
        [f"daemonset.apps/{AGENT_NAME}", "created"],
    ]
    ds = admin_client.get(DaemonSet, AGENT_NAME, namespace=ns)
    assert ("meshready", "Apply") in _managers(ds)
    # What the server stored is what was rendered (the server only adds defaults).
    rendered = render_objects(ManifestOptions(namespace=ns))[-1]
    stored = ds.to_dict()
    for kind in ("containers", "initContainers"):
        assert (
            stored["spec"]["template"]["spec"][kind][0]["securityContext"]
            == (rendered["spec"]["template"]["spec"][kind][0]["securityContext"])
        )
    assert stored["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == "10%"

    again = run_cli("install", "--kubeconfig", kubeconfig, "-n", ns, "--no-wait")
    assert again.returncode == 0, again.stderr
    assert all(" unchanged" in line for line in again.stdout.splitlines()[1:]), again.stdout

    upgraded = run_cli(
        "install", "--kubeconfig", kubeconfig, "-n", ns, "--no-wait", "--image", "example/mr:2"
    )
    assert upgraded.returncode == 0, upgraded.stderr
    assert f"daemonset.apps/{AGENT_NAME} configured" in upgraded.stdout
    ds = admin_client.get(DaemonSet, AGENT_NAME, namespace=ns)
    assert ds.spec is not None and ds.spec.template.spec is not None
    assert ds.spec.template.spec.containers[0].image == "example/mr:2"

    # The agent of n1 publishes (with the ServiceAccount's own token) and removes its taint.
    sa_kubeconfig = cluster.serviceaccount_kubeconfig(ns, AGENT_NAME)
    wait_for(lambda: can_i(sa_kubeconfig, "patch", "nodes"), what="RBAC for the agent")
    with cluster.client(sa_kubeconfig) as sa_client:
        publisher = NodePublisher(sa_client, n1, taint=TaintSpec(STARTUP["key"]))
        publisher.sync(
            Publication(True, "ModulesReady", "ready: all 18 needed modules are loaded",
                        "legacy", {"schema": "meshready.io/node-report/v1", "ready": True})
        )  # fmt: skip
    state = read_node_state(admin_client.get(Node, n1))
    assert state.ready is True and state.labels and state.report is not None
    assert not state.taints

    removed = run_cli("uninstall", "--kubeconfig", kubeconfig, "-n", ns)
    assert removed.returncode == 0, removed.stderr
    out = removed.stdout
    assert f"daemonset.apps/{AGENT_NAME} deleted" in out
    assert f"node/{n1} cleaned: 2 label(s), 1 annotation(s), condition" in out
    assert f"node/{n2} cleaned: taint meshready.io/not-ready:NoSchedule" in out
    for kind, name, namespaced in (
        (DaemonSet, AGENT_NAME, True),
        (ServiceAccount, AGENT_NAME, True),
        (ClusterRole, AGENT_NAME, False),
        (ClusterRoleBinding, AGENT_NAME, False),
    ):
        with pytest.raises(ApiError) as gone:
            if namespaced:
                admin_client.get(kind, name, namespace=ns)
            else:
                admin_client.get(kind, name)
        assert gone.value.status.code == 404, kind
    # No namespace controller here: the namespace stays Terminating, which proves the delete.
    assert admin_client.get(Namespace, ns).status.phase == "Terminating"  # type: ignore[union-attr]

    for name in (n1, n2):
        node = admin_client.get(Node, name)
        state = read_node_state(node)
        assert not state.published and not state.taints, name
        assert not any(k.startswith("meshready.io/") for k in (node.metadata.labels or {}))  # type: ignore[union-attr]
    node1 = admin_client.get(Node, n1)
    assert node1.metadata is not None and node1.metadata.labels is not None
    assert node1.metadata.labels["team"] == "db"  # what others put there stays
    assert node1.spec is not None and [t.key for t in node1.spec.taints or []] == [OTHER["key"]]
    assert node1.status is not None
    assert [c.type for c in node1.status.conditions or []] == ["Ready"]

    # Uninstalling twice is fine.
    second = run_cli("uninstall", "--kubeconfig", kubeconfig, "-n", ns)
    assert second.returncode == 0, second.stderr
    assert f"daemonset.apps/{AGENT_NAME} not found" in second.stdout


def test_server_dry_run_changes_nothing(
    cluster: LocalCluster, admin_client: Client, namespace: str
) -> None:
    ns = f"{namespace}-dry"
    kubeconfig = str(cluster.admin_kubeconfig)
    fresh = run_cli("install", "--kubeconfig", kubeconfig, "-n", ns, "--dry-run")
    assert fresh.returncode == 0, fresh.stderr
    assert f"namespace/{ns} created (server dry run)" in fresh.stdout
    assert (
        "clusterrole.rbac.authorization.k8s.io/meshready-agent created (server dry run)"
        in fresh.stdout
    )
    assert "does not exist yet" in fresh.stdout  # namespaced objects need the namespace
    with pytest.raises(ApiError):
        admin_client.get(Namespace, ns)
    with pytest.raises(ApiError):
        admin_client.get(ClusterRole, AGENT_NAME)

    # In an existing namespace the server validates (and admits) every object, writes none.
    existing = run_cli("install", "--kubeconfig", kubeconfig, "-n", namespace, "--dry-run=server")
    assert existing.returncode == 0, existing.stderr
    assert (
        f"namespace/{namespace} skipped: exists and is not managed by meshready" in existing.stdout
    )
    assert f"daemonset.apps/{AGENT_NAME} created (server dry run)" in existing.stdout
    with pytest.raises(ApiError):
        admin_client.get(DaemonSet, AGENT_NAME, namespace=namespace)

    client_side = run_cli("install", "-n", ns, "--dry-run=client")
    assert client_side.returncode == 0
    assert list(yaml.safe_load_all(client_side.stdout)) == render_objects(
        ManifestOptions(namespace=ns)
    )

    # uninstall --dry-run reports and removes nothing.
    install(admin_client, ManifestOptions(namespace=ns))
    node = f"{ns}-n"
    cluster.create_node(node, taints=[STARTUP])
    dry = run_cli("uninstall", "--kubeconfig", kubeconfig, "-n", ns, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert (
        f"node/{node} cleaned: taint meshready.io/not-ready:NoSchedule (server dry run)"
        in dry.stdout
    )
    assert admin_client.get(DaemonSet, AGENT_NAME, namespace=ns) is not None
    taints = admin_client.get(Node, node).spec.taints  # type: ignore[union-attr]
    assert [t.key for t in taints or []] == [STARTUP["key"]]
    uninstall(admin_client, ns)


def test_every_variant_is_accepted_by_the_1_20_apiserver(
    cluster: LocalCluster, admin_client: Client, namespace: str
) -> None:
    """Server dry run of all objects, and of a Pod made from the DaemonSet's template (admission:
    priority class, security context, volumes) as the DaemonSet controller would create it."""
    node = f"{namespace}-n"
    cluster.create_node(node)
    for options in (
        ManifestOptions(namespace=namespace),
        ManifestOptions(namespace=namespace, persist=False, probe_mode=PodProbeMode.OFF,
                        taint_key=None, node_selector={"pool": "mesh"},
                        tolerations=({"key": "a", "operator": "Exists"},)),
    ):  # fmt: skip
        steps = install(admin_client, options, dry_run=True)
        assert {s.action for s in steps} <= {"created", "skipped"}, steps
        template = render_objects(options)[-1]["spec"]["template"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"agent-{node}", "namespace": namespace, **template["metadata"]},
            "spec": {**template["spec"], "nodeName": node},
        }
        answer = cluster.api.request(
            "POST", f"/api/v1/namespaces/{namespace}/pods", pod, query={"dryRun": "All"}
        )
        assert answer["spec"]["priority"] == 2000001000  # system-node-critical, resolved
        assert answer["spec"]["containers"][0]["securityContext"]["privileged"] is False
    # A field 1.20 does not know is rejected, so the acceptance above means something.
    bad = render_objects(ManifestOptions(namespace=namespace))[-1]
    bad["spec"]["template"]["spec"]["containers"][0]["resizePolicy"] = [
        {"resourceName": "cpu", "restartPolicy": "NotRequired"}
    ]
    with pytest.raises(ApiRequestError) as rejected:
        cluster.api.request(
            "PATCH",
            f"/apis/apps/v1/namespaces/{namespace}/daemonsets/{AGENT_NAME}",
            bad,
            query={"dryRun": "All", "fieldManager": "meshready"},
            content_type="application/apply-patch+yaml",
        )
    assert rejected.value.status in (400, 422, 500), rejected.value


def test_agent_rbac_for_real(cluster: LocalCluster, admin_client: Client, namespace: str) -> None:
    install(admin_client, ManifestOptions(namespace=namespace))
    node = f"{namespace}-n"
    cluster.create_node(node)
    sa = cluster.serviceaccount_kubeconfig(namespace, AGENT_NAME)
    wait_for(lambda: can_i(sa, "patch", "nodes", name=node), what="RBAC for the agent")

    allowed = [
        ("get", "nodes", None, None), ("list", "nodes", None, None), ("watch", "nodes", None, None),
        ("patch", "nodes", None, None), ("patch", "nodes", None, "status"),
        ("create", "events", "default", None),
    ]  # fmt: skip
    for verb, resource, ns, sub in allowed:
        assert can_i(sa, verb, resource, namespace=ns, subresource=sub), (verb, resource, sub)
    denied = [
        ("get", "secrets", namespace, "", None), ("list", "secrets", None, "", None),
        ("delete", "nodes", None, "", None), ("create", "nodes", None, "", None),
        ("update", "nodes", None, "", None), ("update", "nodes", None, "", "status"),
        ("deletecollection", "nodes", None, "", None), ("get", "pods", namespace, "", None),
        ("create", "pods", namespace, "", None), ("get", "configmaps", namespace, "", None),
        ("patch", "daemonsets", namespace, "apps", None), ("list", "events", "default", "", None),
        ("delete", "events", "default", "", None), ("get", "serviceaccounts", namespace, "", None),
        ("create", "serviceaccounts", namespace, "", "token"),
        ("bind", "clusterroles", None, "rbac.authorization.k8s.io", None),
        ("escalate", "clusterroles", None, "rbac.authorization.k8s.io", None),
        ("patch", "clusterroles", None, "rbac.authorization.k8s.io", None),
        ("impersonate", "users", None, "", None),
        # Events only in `default` (a Role there), where node events must go: nowhere else
        ("create", "events", namespace, "", None), ("create", "events", "kube-system", "", None),
    ]  # fmt: skip
    for verb, resource, ns, group, sub in denied:
        assert not can_i(sa, verb, resource, namespace=ns, group=group, subresource=sub), (
            verb, resource, sub,
        )  # fmt: skip

    # And with real requests, not only reviews.
    with cluster.client(sa) as client:
        client.patch(Node, node, {"metadata": {"labels": {"meshready.io/ready": "false"}}})
        from lightkube.resources.core_v1 import Secret

        for attempt in (
            lambda: list(client.list(Secret, namespace=namespace)),
            lambda: client.delete(Node, node),
            lambda: client.get(DaemonSet, AGENT_NAME, namespace=namespace),
        ):
            with pytest.raises(ApiError) as err:
                attempt()
            assert err.value.status.code == 403
    uninstall(admin_client, namespace)


def test_existing_namespace_is_used_not_taken_over(
    cluster: LocalCluster, admin_client: Client, namespace: str
) -> None:
    steps = install(admin_client, ManifestOptions(namespace=namespace))
    assert steps[0].action == "skipped"
    ns = admin_client.get(Namespace, namespace)
    assert "app.kubernetes.io/managed-by" not in (ns.metadata.labels or {})  # type: ignore[union-attr]
    lines: list[str] = []
    uninstall(admin_client, namespace, echo=lines.append)
    assert f"namespace/{namespace} skipped: not created by meshready: left in place" in lines
    assert admin_client.get(Namespace, namespace).status.phase == "Active"  # type: ignore[union-attr]


def test_conflicting_field_owner_needs_force(
    cluster: LocalCluster, admin_client: Client, namespace: str
) -> None:
    install(admin_client, ManifestOptions(namespace=namespace))
    # Someone else takes over the image with their own apply.
    cluster.api.request(
        "PATCH",
        f"/apis/apps/v1/namespaces/{namespace}/daemonsets/{AGENT_NAME}",
        {"apiVersion": "apps/v1", "kind": "DaemonSet",
         "metadata": {"name": AGENT_NAME, "namespace": namespace},
         "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": AGENT_NAME}},
                  "template": {"metadata": {"labels": {"app.kubernetes.io/name": AGENT_NAME}},
                               "spec": {"containers": [{"name": "agent", "image": "theirs:1"}]}}}},
        query={"fieldManager": "someone-else", "force": True},
        content_type="application/apply-patch+yaml",
    )  # fmt: skip
    kubeconfig = str(cluster.admin_kubeconfig)
    refused = run_cli("install", "--kubeconfig", kubeconfig, "-n", namespace, "--no-wait")
    assert refused.returncode == 1
    assert "--force-conflicts" in refused.stderr and "Traceback" not in refused.stderr
    forced = run_cli(
        "install", "--kubeconfig", kubeconfig, "-n", namespace, "--no-wait", "--force-conflicts"
    )
    assert forced.returncode == 0, forced.stderr
    ds = admin_client.get(DaemonSet, AGENT_NAME, namespace=namespace)
    assert ds.spec.template.spec.containers[0].image != "theirs:1"  # type: ignore[union-attr]
    uninstall(admin_client, namespace)


def _set_ds_status(cluster: LocalCluster, namespace: str, **status: int) -> None:
    ds = cluster.api.get(f"/apis/apps/v1/namespaces/{namespace}/daemonsets/{AGENT_NAME}")
    body = {"status": {"observedGeneration": ds["metadata"]["generation"],
                       "currentNumberScheduled": status["desired"], "numberMisscheduled": 0,
                       "desiredNumberScheduled": status["desired"],
                       "numberReady": status["ready"], "updatedNumberScheduled": status["updated"],
                       "numberAvailable": status["ready"]}}  # fmt: skip
    cluster.api.merge_patch(
        f"/apis/apps/v1/namespaces/{namespace}/daemonsets/{AGENT_NAME}/status", body
    )


def test_install_follows_the_rollout(
    cluster: LocalCluster, admin_client: Client, namespace: str
) -> None:
    """The harness has no DaemonSet controller: this test writes the status as it would."""
    kubeconfig = str(cluster.admin_kubeconfig)

    def controller() -> None:
        wait_for(lambda: cluster.api.exists(
            f"/apis/apps/v1/namespaces/{namespace}/daemonsets/{AGENT_NAME}"), timeout=30)  # fmt: skip
        for desired, updated, ready in ((3, 1, 0), (3, 2, 1), (3, 3, 3)):
            time.sleep(0.7)
            _set_ds_status(cluster, namespace, desired=desired, updated=updated, ready=ready)

    thread = threading.Thread(target=controller, daemon=True)
    thread.start()
    done = run_cli("install", "--kubeconfig", kubeconfig, "-n", namespace, "--timeout", "60")
    thread.join(10)
    assert done.returncode == 0, done.stderr
    progress = [line for line in done.stdout.splitlines() if line.startswith("rollout:")]
    assert progress[0] == "rollout: waiting for the DaemonSet controller"
    assert "rollout: 3/3 updated, 3/3 ready (node ready), 3/3 available" in progress
    assert len(progress) >= 3
    assert "done: 3 agent(s)" in done.stdout

    # Stuck: a node that cannot get ready keeps its agent unready; the wait ends with exit 1.
    _set_ds_status(cluster, namespace, desired=3, updated=3, ready=2)
    stuck = run_cli("install", "--kubeconfig", kubeconfig, "-n", namespace, "--timeout", "1")
    assert stuck.returncode == 1
    assert "rollout not finished after 1 s" in stuck.stderr and "Traceback" not in stuck.stderr
    uninstall(admin_client, namespace)


def test_kubectl_plugin_flags(
    cluster: LocalCluster, admin_client: Client, namespace: str, tmp_path: Path
) -> None:
    """--kubeconfig, --context and -n as kubectl means them; $KUBECONFIG with several files."""
    admin = json.loads(cluster.admin_kubeconfig.read_text())
    broken = json.loads(json.dumps(admin))
    broken["clusters"][0]["name"] = "nowhere"
    broken["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    broken["contexts"][0]["name"] = "nowhere"
    broken["contexts"][0]["context"]["cluster"] = "nowhere"
    broken["current-context"] = "nowhere"
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(yaml.safe_dump(broken))
    second.write_text(yaml.safe_dump(admin))
    good_context = admin["current-context"]

    failed = run_cli("install", "--kubeconfig", str(first), "-n", namespace, "--no-wait")
    assert failed.returncode == 1 and "cannot reach the API server" in failed.stderr
    assert "Traceback" not in failed.stderr
    env = {"KUBECONFIG": f"{first}:{second}"}
    chosen = run_cli("install", "--context", good_context, "-n", namespace, "--no-wait", env=env)
    assert chosen.returncode == 0, chosen.stderr
    assert f"daemonset.apps/{AGENT_NAME} created" in chosen.stdout
    missing = run_cli("install", "--kubeconfig", str(tmp_path / "none"), "--no-wait")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    unknown = run_cli("install", "--kubeconfig", str(second), "--context", "nope", "--no-wait")
    assert unknown.returncode == 1 and "Context 'nope' not found" in unknown.stderr
    uninstall(admin_client, namespace)


def test_uninstall_waits_for_agent_pods_then_cleans_nodes_anyway(
    cluster: LocalCluster, admin_client: Client, namespace: str
) -> None:
    """No kubelet here: a bound agent pod never finishes terminating, which exercises the wait."""
    install(admin_client, ManifestOptions(namespace=namespace))
    node = f"{namespace}-n"
    cluster.create_node(node, taints=[STARTUP])
    cluster.create_pod(
        namespace, f"{AGENT_NAME}-x", node_name=node, labels={"app.kubernetes.io/name": AGENT_NAME}
    )
    done = run_cli(
        "uninstall", "--kubeconfig", str(cluster.admin_kubeconfig), "-n", namespace,
        "--timeout", "1",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "waiting for 1 agent pod(s) to stop" in lines
    assert "warning: 1 agent pod(s) still running after 1 s; cleaning nodes anyway" in lines
    assert f"node/{node} cleaned: taint meshready.io/not-ready:NoSchedule" in lines
    assert lines.index("waiting for 1 agent pod(s) to stop") < lines.index(
        f"node/{node} cleaned: taint meshready.io/not-ready:NoSchedule"
    )
