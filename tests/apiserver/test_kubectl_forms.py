"""The kubectl forms against a real kube-apiserver (issue 14): `check node/NAME` and `fix
node/NAME` (from the agent's published report, or through a short-lived pod), `-l` selectors,
`diagnose node/NAME`, server-side selection of failing pods, request timeouts and errors that name
the server and context, tables at three widths, and every `-o json` validated against its schema.

There is no kubelet here: where a pod must run, a thread plays the kubelet's part (it serves the
container's log through the fake kubelet and writes the pod's status), so everything the CLI does
through the API is real: the pod is validated, created, read and deleted by the apiserver.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from meshready.cluster.manifests import DEFAULT_IMAGE, ManifestOptions, daemonset_object
from meshready.cluster.names import ANNOTATION_REPORT, CONDITION_TYPE, LABEL_READY
from tests.apiserver.cluster import FakeKubelet, LocalCluster, wait_for
from tests.cli.paste import command_blocks, make_root
from tests.cli.test_json_contracts import validate
from tests.conftest import CASE, CliResult

pytestmark = pytest.mark.apiserver

FOUNDING = (
    "--lsmod",
    str(CASE / "lsmod.txt"),
    "--kernel-release",
    "5.15.0-100.96.32.el8uek.aarch64",
)


def _publish(cluster: LocalCluster, node: str, ready: bool, loadable: list[str]) -> None:
    report = {
        "schema": "meshready.io/node-report/v1",
        "ready": ready,
        "reason": "InterceptionVerified" if ready else "ModulesNotLoaded",
        "backend": "legacy",
        "profile": "istio-sidecar",
        "kernel": "5.15.0-100.96.32.el8uek.aarch64",
        "modules": {"loaded": ["ip_tables"], "loadable": loadable}
        if loadable
        else {"loaded": ["ip_tables", "iptable_nat"]},
        "bootID": "boot-1",
        "probe": {"mode": "inplace", "ok": ready, "proxyBypassed": ready},
    }
    cluster.api.merge_patch(
        f"/api/v1/nodes/{node}",
        {
            "metadata": {
                "labels": {LABEL_READY: str(ready).lower()},
                "annotations": {ANNOTATION_REPORT: json.dumps(report)},
            }
        },
    )
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    condition = {
        "type": CONDITION_TYPE,
        "status": str(ready),
        "reason": report["reason"],
        "message": "all modules loaded" if ready else f"not loaded: {' '.join(loadable)}",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
    kubelet_ready = dict(condition, type="Ready", status="True", reason="KubeletReady")
    cluster.api.merge_patch(
        f"/api/v1/nodes/{node}/status",
        {"status": {"conditions": [kubelet_ready, condition], "nodeInfo": {"bootID": "boot-1"}}},
    )


class PlayKubelet:
    """Waits for the meshready pod on NODE, records it, serves LOG as its container's log and
    ends it with EXIT (or leaves it waiting with WAITING, as a kubelet that cannot pull)."""

    def __init__(
        self,
        cluster: LocalCluster,
        kubelet: FakeKubelet,
        node: str,
        kind: str,
        log: str = "",
        exit_code: int = 0,
        waiting: str | None = None,
    ) -> None:
        self.cluster, self.kubelet, self.node, self.kind = cluster, kubelet, node, kind
        self.log, self.exit_code, self.waiting = log, exit_code, waiting
        self.pods: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.pods:
            items = self.cluster.api.get(
                "/api/v1/pods",
                labelSelector=f"app.kubernetes.io/name=meshready-{self.kind}",
                fieldSelector=f"spec.nodeName={self.node}",
            )["items"]
            if not items:
                time.sleep(0.05)
                continue
            pod = items[0]
            self.pods.append(pod)
            ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            if self.waiting:
                state: dict[str, Any] = {"waiting": {"reason": self.waiting, "message": "nope"}}
                phase = "Pending"
            else:
                self.kubelet.set_log(ns, name, "meshready", self.log)
                state = {"terminated": {"exitCode": self.exit_code, "reason": "Completed"}}
                phase = "Succeeded" if self.exit_code == 0 else "Failed"
            self.cluster.set_pod_status(
                ns,
                name,
                {
                    "phase": phase,
                    "containerStatuses": [
                        {
                            "name": "meshready",
                            "image": DEFAULT_IMAGE,
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "state": state,
                        }
                    ],
                },
            )

    def pod(self) -> dict[str, Any]:
        self.thread.join(5)
        assert self.pods, "the CLI created no pod on the node"
        return self.pods[0]


@pytest.fixture
def kube(cluster: LocalCluster) -> Callable[..., list[str]]:
    def args(*extra: str) -> list[str]:
        return [*extra, "--kubeconfig", str(cluster.admin_kubeconfig)]

    return args


@pytest.fixture
def nodes(cluster: LocalCluster, kubelet: FakeKubelet, namespace: str) -> dict[str, str]:
    names = {k: f"{namespace}-{k}" for k in ("ready", "notready", "bare")}
    for key, name in names.items():
        cluster.create_node(name, kubelet=kubelet, labels={"pool": key, "team": namespace})
    _publish(cluster, names["ready"], True, [])
    _publish(cluster, names["notready"], False, ["iptable_nat", "xt_REDIRECT"])
    return names


def _gone(cluster: LocalCluster, pod: dict[str, Any]) -> bool:
    meta = pod["metadata"]
    return not cluster.api.exists(f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}")


def test_check_node_reads_the_agents_report(
    nodes: dict[str, str], kube: Callable[..., list[str]], run_cli: Callable[..., CliResult]
) -> None:
    ready = run_cli("check", f"node/{nodes['ready']}", *kube())
    assert ready.code == 0, ready.err
    assert f"node/{nodes['ready']}, check from its meshready agent's report" in ready.out
    assert "READY" in ready.out
    notready = run_cli("check", f"node/{nodes['notready']}", *kube("-o", "json"))
    assert notready.code == 1
    data = json.loads(notready.out)
    assert validate(data) == "node-check"
    (node,) = data["nodes"]
    assert node["via"] == "agent" and node["ready"] is False and node["pod"] is None
    assert node["result"]["probe"]["proxy_bypassed"] is False  # one naming style: snake_case
    text = run_cli("check", f"node/{nodes['notready']}", *kube())
    assert (
        "xt_REDIRECT" in text.out and f"kubectl meshready fix node/{nodes['notready']}" in text.out
    )
    # The agent checks istio-sidecar: asked about linkerd, its report is no answer.
    other = run_cli(
        "check", f"node/{nodes['ready']}", "--profile", "linkerd", *kube("--via", "agent")
    )
    assert other.code == 1 and "no current report from a meshready agent" in other.out


def test_check_node_without_an_agent_runs_a_pod_and_deletes_it(
    nodes: dict[str, str],
    cluster: LocalCluster,
    kubelet: FakeKubelet,
    namespace: str,
    kube: Callable[..., list[str]],
    run_cli: Callable[..., CliResult],
) -> None:
    report = run_cli("check", *FOUNDING, "-o", "json").out  # what the pod prints, a real report
    bare = nodes["bare"]
    play = PlayKubelet(cluster, kubelet, bare, "check", "meshready: warning: x\n" + report, 1)
    result = run_cli("check", f"node/{bare}", "-n", namespace, *kube("-o", "json"))
    assert result.code == 1, result.err
    data = json.loads(result.out)
    assert validate(data) == "node-check"
    (node,) = data["nodes"]
    assert node["via"] == "pod" and node["ready"] is False and node["pod_deleted"] is True
    assert node["result"]["schema"] == "meshready.io/report/v1"
    assert node["messages"] == ["meshready: warning: x"]
    pod = play.pod()
    assert _gone(cluster, pod)
    spec = pod["spec"]
    assert spec["nodeName"] == bare and spec["restartPolicy"] == "Never"
    assert spec["tolerations"] == [{"operator": "Exists"}]
    (container,) = spec["containers"]
    assert container["image"] == DEFAULT_IMAGE
    assert container["command"] == ["meshready"] and container["args"][0] == "check"
    assert "--host-root=/host" in container["args"]
    host = next(m for m in container["volumeMounts"] if m["mountPath"] == "/host")
    assert host["readOnly"] is True
    volume = next(v for v in spec["volumes"] if v["name"] == host["name"])
    assert volume["hostPath"]["path"] == "/"
    security = container["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"]} and security["privileged"] is False


def test_fix_node_runs_with_exactly_the_agents_capabilities(
    nodes: dict[str, str],
    cluster: LocalCluster,
    kubelet: FakeKubelet,
    namespace: str,
    kube: Callable[..., list[str]],
    run_cli: Callable[..., CliResult],
) -> None:
    report = json.loads(run_cli("check", *FOUNDING, "-o", "json").out)
    fix_output = {
        "schema": "meshready.io/fix/v1",
        "dry_run": False,
        "ready": False,
        "plan": {"backend": "legacy", "load": [], "present": [], "blockers": []},
        "result": {"loaded": ["iptable_nat"], "persist_changed": True, "persist_path": "/x"},
        "report": report,
    }
    notready = nodes["notready"]
    play = PlayKubelet(cluster, kubelet, notready, "fix", json.dumps(fix_output, indent=2), 1)
    result = run_cli("fix", f"node/{notready}", "-n", namespace, *kube())
    assert result.code == 1, result.err
    assert "loaded: iptable_nat" in result.out and "deleted" in result.out
    pod = play.pod()
    assert _gone(cluster, pod)
    agent = daemonset_object(ManifestOptions().validated())["spec"]["template"]["spec"]
    loaders = [
        c
        for c in [*agent.get("initContainers", []), *agent["containers"]]
        if "SYS_MODULE" in c["securityContext"]["capabilities"].get("add", [])
    ]
    assert len(loaders) == 1  # the agent's one container that may load modules
    (container,) = pod["spec"]["containers"]
    assert container["securityContext"] == loaders[0]["securityContext"]
    assert "--loader=python" in container["args"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/host"]["readOnly"] is True
    assert not mounts["/host/etc/modules-load.d"].get("readOnly")
    # A node whose agent reports it ready is left alone.
    ready = run_cli("fix", f"node/{nodes['ready']}", *kube())
    assert ready.code == 0 and "from its meshready agent's report" in ready.out


def test_selectors_pick_nodes_with_kubectl_syntax(
    nodes: dict[str, str],
    namespace: str,
    kube: Callable[..., list[str]],
    run_cli: Callable[..., CliResult],
) -> None:
    result = run_cli(
        "check",
        "-l",
        f"team={namespace},pool in (ready, notready)",
        *kube("-o", "json", "--via", "agent"),
    )
    assert result.code == 1, result.err
    data = json.loads(result.out)
    assert sorted(n["node"] for n in data["nodes"]) == sorted([nodes["ready"], nodes["notready"]])
    table = run_cli("check", "-l", f"team={namespace},pool!=bare", *kube("--via", "agent"))
    assert table.out.splitlines()[0].split() == ["NODE", "READY", "VIA", "MISSING", "ERROR"]
    bad = run_cli("check", "-l", "pool in (a", *kube())
    assert bad.code == 2 and bad.err.startswith("meshready: error: -l: unbalanced")
    none = run_cli("check", "-l", f"team={namespace},pool=nope", *kube())
    assert none.code == 2 and "no node matches" in none.err
    missing = run_cli("check", "node/no-such-node", *kube())
    assert missing.code == 2 and "node/no-such-node: no such node" in missing.err


def test_a_pod_that_cannot_start_is_an_error_naming_the_image_and_is_deleted(
    nodes: dict[str, str],
    cluster: LocalCluster,
    kubelet: FakeKubelet,
    namespace: str,
    kube: Callable[..., list[str]],
    run_cli: Callable[..., CliResult],
) -> None:
    play = PlayKubelet(cluster, kubelet, nodes["bare"], "check", waiting="ImagePullBackOff")
    result = run_cli(
        "check", f"node/{nodes['bare']}", "-n", namespace, "--image", "example.com/mr:x", *kube()
    )
    assert result.code == 1
    assert "ImagePullBackOff" in result.out and "example.com/mr:x" in result.out
    assert _gone(cluster, play.pod())


def test_a_pod_no_kubelet_runs_times_out_and_is_deleted(
    nodes: dict[str, str],
    cluster: LocalCluster,
    namespace: str,
    kube: Callable[..., list[str]],
    run_cli: Callable[..., CliResult],
) -> None:
    started = time.monotonic()
    result = run_cli(
        "check", f"node/{nodes['bare']}", "-n", namespace, "--timeout", "2", *kube("-o", "json")
    )
    assert time.monotonic() - started < 30
    assert result.code == 1
    (node,) = json.loads(result.out)["nodes"]
    assert "did not finish within 2 s" in node["error"]
    left = cluster.api.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
    assert not [p for p in left if p["metadata"]["name"].startswith("meshready-check-")]


def _pod_with_init(
    cluster: LocalCluster, ns: str, name: str, node: str, phase: str, failed: bool
) -> None:
    state = (
        {"waiting": {"reason": "CrashLoopBackOff"}}
        if failed
        else {"terminated": {"exitCode": 0, "reason": "Completed"}}
    )
    cluster.create_pod(
        ns,
        name,
        node_name=node,
        init_containers=[{"name": "istio-init", "image": "proxyv2"}],
        status={
            "phase": phase,
            "initContainerStatuses": [
                {
                    "name": "istio-init",
                    "image": "proxyv2",
                    "imageID": "",
                    "ready": not failed,
                    "restartCount": 3 if failed else 0,
                    "state": state,
                    **({"lastState": {"terminated": {"exitCode": 1}}} if failed else {}),
                }
            ],
        },
    )


def test_only_pods_that_can_be_failing_are_listed(
    nodes: dict[str, str], cluster: LocalCluster, namespace: str
) -> None:
    from meshready.cluster.failing_pods import LogReader, list_candidate_pods

    for i in range(12):
        _pod_with_init(cluster, namespace, f"running-{i}", nodes["ready"], "Running", False)
    _pod_with_init(cluster, namespace, "stuck", nodes["notready"], "Pending", True)
    cluster.create_pod(
        namespace,
        "cni",
        node_name=nodes["notready"],
        labels={"k8s-app": "istio-cni-node"},
        status={"phase": "Running"},
    )
    from lightkube import KubeConfig

    config = KubeConfig.from_file(cluster.admin_kubeconfig).get()
    seen: list[int] = []
    with LogReader(config) as reader:
        # (the watch cache answers: it may trail the writes above by a moment)
        wait_for(
            lambda: len(list_candidate_pods(reader, namespace=namespace)) == 2,
            what="the watch cache has the pods",
        )
        pods = list_candidate_pods(reader, namespace=namespace, on_pod=seen.append)
        names = sorted(p.metadata.name for p in pods)
        assert names == ["cni", "stuck"]  # the twelve running pods never left the server
        assert seen and seen[-1] == 2  # progress as the lists arrive
        on_node = list_candidate_pods(reader, namespace=namespace, node=nodes["ready"])
        assert on_node == []
        everywhere = list_candidate_pods(reader, labels=[("k8s-app", "istio-cni-node")])
        assert [p.metadata.name for p in everywhere if p.metadata.namespace == namespace] == ["cni"]


def test_diagnose_node_uses_the_published_modules_and_real_pod_names(
    nodes: dict[str, str],
    cluster: LocalCluster,
    kubelet: FakeKubelet,
    namespace: str,
    kube: Callable[..., list[str]],
    run_cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    log = (CASE / "istio-init.log").read_text()
    for name, node in (("web-1", nodes["notready"]), ("other", nodes["ready"])):
        _pod_with_init(cluster, namespace, name, node, "Pending", True)
        kubelet.set_log(namespace, name, "istio-init", log, previous=True)
        kubelet.set_log(namespace, name, "istio-init", "")
    result = run_cli("diagnose", f"node/{nodes['notready']}", *kube("-o", "json"))
    assert result.code == 1, result.err
    data = json.loads(result.out)
    assert validate(data) == "diagnose-cluster"
    assert [p["pod"] for p in data["pods"]] == ["web-1"]  # only that node's pods
    (group,) = data["groups"]
    modprobe = next(s["run"] for s in group["node_fix"] if "modprobe" in s["run"])
    assert " ".join(modprobe.split()) == "sudo modprobe -a iptable_nat xt_REDIRECT"
    assert group["bindings"] == [{"NAMESPACE": namespace, "POD": "web-1"}]
    conf = next(s["run"] for s in group["node_fix"] if "<<" in s["run"]).split("\n")[1:-1]
    assert {"iptable_nat", "xt_REDIRECT"} <= set(conf)
    for width in (60, 100, 200):
        monkeypatch.setenv("COLUMNS", str(width))
        text = run_cli("diagnose", f"node/{nodes['notready']}", *kube())
        assert f"NAMESPACE={namespace} POD=web-1\nkubectl delete pod" in text.out
        assert "<the failing pod>" not in text.out
        table = text.out.split("\nwhat to do:", 1)[0].strip().splitlines()
        assert len(table) == 2 and table[0].startswith("NODE")  # one row for the one group
        assert len(table[1]) <= width or width < len(nodes["notready"]) + 40
        # Pasted as printed: the node's block loads and persists, the kubectl block deletes
        # exactly the failed pod.
        node_block, cluster_block = command_blocks(text.out)[:2]
        node_root = make_root(tmp_path / f"node-{width}")
        done = node_root.run(node_block)
        assert done.returncode == 0, done.stderr
        assert (
            node_root.file("/etc/modules-load.d/meshready.conf")
            == "".join(f"{m}\n" for m in conf).encode()
        )
        assert node_root.calls() == ["modprobe -a iptable_nat xt_REDIRECT"]
        work = make_root(tmp_path / f"workstation-{width}")
        done = work.run(cluster_block)
        assert done.returncode == 0, done.stderr
        assert work.calls() == [f"kubectl delete pod --namespace {namespace} web-1"]


@pytest.mark.parametrize("width", [60, 100, 200])
def test_status_table_fits_the_terminal(
    width: int,
    nodes: dict[str, str],
    namespace: str,
    kube: Callable[..., list[str]],
    run_cli: Callable[..., CliResult],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    mine = ("-l", f"team={namespace}")
    result = run_cli("status", "-n", namespace, *mine, *kube())
    lines = result.out.splitlines()
    rows = [ln for ln in lines if ln.startswith(namespace)]
    assert len(rows) == 3  # one line per node, whatever the width
    assert [r.split()[0] for r in rows] == sorted(nodes.values())  # names never cut
    if width >= 100:  # (at 60 the names this suite makes are most of the line already)
        table = [ln for ln in lines if not ln.startswith("(") and "nodes:" not in ln]
        assert all(len(ln) <= width for ln in table), table
    bare = run_cli("status", "-n", namespace, "--no-headers", *mine, *kube())
    assert not bare.out.startswith("NODE") and "nodes:" not in bare.out
    assert len(bare.out.splitlines()) == 3
    wide = run_cli("status", "-n", namespace, *mine, *kube("-o", "wide"))
    assert "KERNEL" in wide.out.splitlines()[0]
    data = json.loads(run_cli("status", "-n", namespace, *mine, *kube("-o", "json")).out)
    assert validate(data) == "status" and len(data["nodes"]) == 3


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server on loopback that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    sock.close()


def test_request_timeout_and_errors_name_server_and_context(
    cluster: LocalCluster,
    silent_server: str,
    tmp_path: Path,
    run_cli: Callable[..., CliResult],
) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(cluster.admin_kubeconfig.read_text().replace(cluster.server, silent_server))
    started = time.monotonic()
    result = run_cli("status", "--kubeconfig", str(config), "--request-timeout", "1s")
    assert time.monotonic() - started < 10
    assert result.code == 1 and result.err.count("\n") == 1
    assert silent_server in result.err and "context " in result.err, result.err
    bad = run_cli("status", "--kubeconfig", str(config), "--request-timeout", "soon")
    assert bad.code == 2 and "--request-timeout" in bad.err
