"""The agent as in its pod: its own network namespace, the real in-place probe, and the API.

The agent process runs in a new network namespace (`unshare --net`, loopback up), as in a pod:
its in-place probe applies the profile's rules with the real iptables-legacy into that namespace
and proves a connection is redirected, then it publishes InterceptionVerified with its
ServiceAccount's token. The API server, on the host's loopback, is reached through a unix-socket
bridge (tests/agent/bridge.py): the kubeconfig and TLS are unchanged. Module state comes from the
fake /proc (this kernel has netfilter built in and cannot load modules). Needs root and unshare.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Node

from meshready.cluster.install import install, uninstall
from meshready.cluster.manifests import ManifestOptions
from meshready.cluster.names import AGENT_NAME
from meshready.cluster.published import read_node_state
from tests.agent.bridge import serve_unix_to_tcp
from tests.agent.fakes import make_node, needed_modules
from tests.agent.process import REPO, AgentProcess

from .cluster import LocalCluster, can_i, wait_for

pytestmark = [pytest.mark.apiserver, pytest.mark.netns]

STARTUP = {"key": "meshready.io/not-ready", "effect": "NoSchedule"}


def test_agent_in_its_own_network_namespace_probes_for_real_and_publishes(
    cluster: LocalCluster, admin_client: Client, namespace: str, tmp_path: Path
) -> None:
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None or shutil.which("ip") is None:
        pytest.fail("needs root, unshare and ip (iproute2)", pytrace=False)
    install(admin_client, ManifestOptions(namespace=namespace))
    node_name = f"{namespace}-node"
    cluster.create_node(node_name, taints=[STARTUP])
    sa = cluster.serviceaccount_kubeconfig(namespace, AGENT_NAME)
    wait_for(lambda: can_i(sa, "patch", "nodes"), what="RBAC")
    node = make_node(tmp_path / "node")
    node.load(*needed_modules(node))

    sock = tmp_path / "api.sock"
    bridge = serve_unix_to_tcp(sock, cluster.port)
    bridge_cmd = shlex.join(
        [sys.executable, str(REPO / "tests" / "agent" / "bridge.py"), str(cluster.port), str(sock)]
    )
    # In the new namespace: loopback up, the bridge in the background, then the agent (exec).
    script = f'ip link set lo up && {{ {bridge_cmd} >/dev/null & }} && sleep 0.3 && exec "$@"'
    netns = [unshare, "--net", "sh", "-c", script, "netns"]
    args = ["--node-name", node_name, *node.agent_args(), "--kubeconfig", str(sa),
            "--probe-mode", "inplace", "--loader", "none", "--interval", "3600",
            "--metrics-addr", "off"]  # fmt: skip
    try:
        with AgentProcess(args, tmp_path / "agent.log", loader=None, wrap=netns) as agent:
            agent.wait_for(
                lambda: not read_node_state(admin_client.get(Node, node_name)).taints,
                timeout=60,
                what="published ready from the pod-like namespace",
            )
            state = read_node_state(admin_client.get(Node, node_name))
            assert state.condition is not None
            assert state.condition.reason == "InterceptionVerified", agent.output()
            assert "redirect probe worked in the pod's network namespace" in (
                state.condition.message or ""
            )
            probe = (state.report or {})["probe"]
            assert probe["mode"] == "inplace" and probe["ok"] and probe["redirected"]
            assert not state.taints
            assert agent.terminate() == 0
    finally:
        bridge.close()
        uninstall(admin_client, namespace)
