"""Loading in the init container, reporting in the agent, against a real kube-apiserver.

The DaemonSet's init container (`meshready agent --init`) is the only process holding
SYS_MODULE: it loads and persists, writes its record and exits. The long-running agent
(`--loader none --fix-record`) never loads; it publishes what the init container did. A reboot
(new boot ID, modules gone, the memory volume with the record gone) leaves the agent reporting
not-ready until the kubelet runs the init container again in the new pod sandbox: then the next
check is ready again. This test plays the kubelet's part (runs the init step again) and checks
each state on the Node, the agent process staying up throughout and never loading a module.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Event, Node

from meshready.cluster.install import install, uninstall
from meshready.cluster.manifests import ManifestOptions
from meshready.cluster.names import AGENT_NAME
from meshready.cluster.published import read_node_state
from tests.agent.fakes import make_node, needed_modules
from tests.agent.process import AgentProcess

from .cluster import LocalCluster, can_i, wait_for

pytestmark = pytest.mark.apiserver

STARTUP = {"key": "meshready.io/not-ready", "effect": "NoSchedule"}
BOOT1 = "0b5e7c1a-1111-4000-8000-0000000000a1"
BOOT2 = "0b5e7c1a-2222-4000-8000-0000000000a2"


def test_init_container_loads_and_the_agent_only_reports(
    cluster: LocalCluster, admin_client: Client, namespace: str, tmp_path: Path
) -> None:
    install(admin_client, ManifestOptions(namespace=namespace))
    node_name = f"{namespace}-node"
    cluster.create_node(node_name, taints=[STARTUP], node_info={"bootID": BOOT1})
    sa = cluster.serviceaccount_kubeconfig(namespace, AGENT_NAME)
    wait_for(lambda: can_i(sa, "patch", "nodes", name=node_name), what="RBAC for the agent")
    node = make_node(tmp_path / "node", boot_id=BOOT1)
    record = tmp_path / "run-meshready" / "fix.json"  # the pod's memory emptyDir
    needed = needed_modules(make_node(tmp_path / "twin"))

    def init(name: str) -> AgentProcess:
        # as manifests.init_args: no cluster, no probe, no metrics; the fake loader stands in
        # for finit_module (this machine's kernel cannot load modules)
        args = ["--init", "--no-cluster", *node.agent_args(), "--loader", "python", "--persist",
                "--probe-mode", "off", "--metrics-addr", "off", "--fix-record", str(record)]  # fmt: skip
        return AgentProcess(args, tmp_path / f"{name}.log", loader="fake")

    with init("init1") as first:
        assert first.wait_exit(60) == 0, first.output()
    assert node.loaded() == set(needed)
    assert node.persisted() is not None
    assert record.is_file()

    # The agent: never loads (no fake loader injected, --loader none), reports the record.
    agent_args = ["--node-name", node_name, *node.agent_args(), "--kubeconfig", str(sa),
                  "--probe-mode", "off", "--loader", "none", "--fix-record", str(record),
                  "--retry-max", "0.5", "--interval", "1", "--jitter", "0"]  # fmt: skip
    with AgentProcess(agent_args, tmp_path / "agent.log", loader=None) as agent:
        agent.wait_for(
            lambda: (
                (s := read_node_state(admin_client.get(Node, node_name))).ready is True
                and not s.taints
            ),
            what="ready and the startup taint removed",
        )
        report = read_node_state(admin_client.get(Node, node_name)).report
        assert report is not None and report["persisted"] == needed

        def loaded_events() -> list[Event]:
            found = admin_client.list(
                Event, namespace="default", fields={"involvedObject.name": node_name}
            )
            return [e for e in found if e.reason == "ModulesLoaded"]

        wait_for(loaded_events, what="the ModulesLoaded event")
        loaded = loaded_events()
        assert loaded and "init container loaded" in (loaded[0].message or "")

        # Reboot: new boot ID, nothing loaded, the memory volume (and its record) gone.
        node.reboot(BOOT2)
        record.unlink()
        agent.wait_for(
            lambda: (
                (s := read_node_state(admin_client.get(Node, node_name))).ready is False
                and s.condition is not None
                and s.condition.reason == "ModulesNotLoaded"
            ),
            what="not ready after the reboot, loading left to the init container",
        )
        cond = read_node_state(admin_client.get(Node, node_name)).condition
        assert cond is not None and "init container" in (cond.message or "")
        assert node.loaded() == set()  # the agent did not load anything itself

        # The kubelet runs the init container again in the new sandbox.
        with init("init2") as second:
            assert second.wait_exit(60) == 0, second.output()
        agent.wait_for(
            lambda: read_node_state(admin_client.get(Node, node_name)).ready is True,
            what="ready again after the init container ran in the new boot",
        )
        assert agent.alive()
        assert agent.terminate() == 0
    assert "Traceback" not in agent.output()
    uninstall(admin_client, namespace)
