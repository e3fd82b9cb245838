"""The agent against an API that fails on purpose: a fault-injecting proxy (faultproxy.py) in
front of the real kube-apiserver, the agent a real process with its ServiceAccount's token.

429 with Retry-After, 5xx (one without a Content-Type), slow answers, dropped connections, the
Node deleted, Events rejected for good. Each test asserts what the agent did next.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.resources.core_v1 import Node

from meshready.cluster.install import install, uninstall
from meshready.cluster.manifests import ManifestOptions
from meshready.cluster.names import AGENT_NAME
from meshready.cluster.published import read_node_state
from tests.agent.fakes import FakeNode, make_node
from tests.agent.process import AgentProcess

from .cluster import LocalCluster, can_i, serviceaccount_user, wait_for
from .faultproxy import Fault, FaultProxy

pytestmark = pytest.mark.apiserver

STARTUP = {"key": "meshready.io/not-ready", "effect": "NoSchedule"}
BOOT = "0b5e7c1a-1111-4000-8000-00000000f001"
NODE_PATCH = r"/api/v1/nodes/[^/?]+(\?|$)"
STATUS_PATCH = r"/api/v1/nodes/[^/?]+/status"


@dataclass
class Rig:
    cluster: LocalCluster
    admin: Client
    namespace: str
    node_name: str
    node: FakeNode
    proxy: FaultProxy
    kubeconfig: Path
    tmp: Path

    def agent(self, *extra: str, name: str = "agent") -> AgentProcess:
        args = [
            "--node-name", self.node_name, *self.node.agent_args(),
            "--kubeconfig", str(self.kubeconfig), "--probe-mode", "off", "--loader", "python",
            "--retry-max", "0.5", *extra,
        ]  # fmt: skip
        return AgentProcess(args, self.tmp / f"{name}.log", loader="fake")

    def state(self) -> Any:
        return read_node_state(self.admin.get(Node, self.node_name))


@pytest.fixture
def rig(
    cluster: LocalCluster, admin_client: Client, namespace: str, tmp_path: Path
) -> Iterator[Rig]:
    install(admin_client, ManifestOptions(namespace=namespace))
    node_name = f"{namespace}-node"
    cluster.create_node(node_name, taints=[STARTUP], node_info={"bootID": BOOT})
    sa = cluster.serviceaccount_kubeconfig(namespace, AGENT_NAME)
    wait_for(lambda: can_i(sa, "patch", "nodes", name=node_name), what="RBAC for the agent")
    token = cluster.serviceaccount_token(namespace, AGENT_NAME)
    node = make_node(tmp_path / "node", boot_id=BOOT)
    with FaultProxy(cluster, tmp_path / "proxy") as proxy:
        kubeconfig = proxy.kubeconfig(
            tmp_path / "proxy.kubeconfig", token, serviceaccount_user(namespace, AGENT_NAME),
            namespace,
        )  # fmt: skip
        yield Rig(cluster, admin_client, namespace, node_name, node, proxy, kubeconfig, tmp_path)
    uninstall(admin_client, namespace)


def _published(rig: Rig) -> bool:
    state = rig.state()
    return state.condition is not None and state.condition.status == "True" and not state.taints


def test_retry_after_is_honoured(rig: Rig) -> None:
    fault = rig.proxy.add(
        Fault("PATCH", NODE_PATCH, status=429, headers={"Retry-After": "3"},
              content_type="application/json",
              body=b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":429,'
                   b'"reason":"TooManyRequests","message":"slow down"}')
    )  # fmt: skip
    with rig.agent("--once", "--once-timeout", "30") as agent:
        assert agent.wait_exit(40) == 0, agent.output()
    assert fault.hits == 1
    patches = rig.proxy.requests("PATCH", NODE_PATCH)
    assert patches[0].action == "fault 429"
    waited = patches[1].at - patches[0].at
    # --retry-max 0.5 would retry within 0.5 s: the wait is the server's 3 s
    assert waited >= 2.9, f"retried after {waited:.2f} s, Retry-After said 3"
    assert _published(rig)


def test_server_errors_are_retried_even_without_a_content_type(rig: Rig) -> None:
    rig.proxy.add(Fault("GET", NODE_PATCH, status=500, body=b"boom", content_type=None, times=2))
    rig.proxy.add(Fault("PATCH", STATUS_PATCH, status=503, body=b"busy", content_type="text/plain"))
    with rig.agent("--once", "--once-timeout", "30") as agent:
        assert agent.wait_exit(40) == 0, agent.output()
    actions = [s.action for s in rig.proxy.requests()]
    assert actions.count("fault 500") == 2 and actions.count("fault 503") == 1
    assert "Traceback" not in agent.output() and "internal error" not in agent.output()
    assert _published(rig)


def test_slow_answers_and_dropped_connections(rig: Rig) -> None:
    rig.proxy.add(Fault("GET", NODE_PATCH, drop=True, times=2))
    rig.proxy.add(Fault("PATCH", NODE_PATCH, delay=2.0, times=1))  # slow, then forwarded
    rig.proxy.add(Fault("PATCH", STATUS_PATCH, drop=True, delay=0.5, times=1))
    with rig.agent("--once", "--once-timeout", "40") as agent:
        assert agent.wait_exit(60) == 0, agent.output()
    actions = [s.action for s in rig.proxy.requests()]
    assert actions.count("dropped") == 3
    assert _published(rig)


def test_node_deleted_is_not_retried_for_ever(rig: Rig) -> None:
    rig.admin.delete(Node, rig.node_name)
    with rig.agent("--once", "--once-timeout", "60") as agent:
        code = agent.wait_exit(30)  # far less than --once-timeout: a 404 is not retried
    assert code == 1
    gets = rig.proxy.requests("GET", NODE_PATCH)
    assert len(gets) == 1, [s.action for s in gets]
    assert "refused by the API" in agent.output()


def test_refused_events_never_block_the_node_write(rig: Rig) -> None:
    rig.proxy.add(
        Fault("POST", r"/events", status=422, times=None, content_type="application/json",
              body=b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":422,'
                   b'"reason":"Invalid","message":"event rejected"}')
    )  # fmt: skip
    with rig.agent("--interval", "3600") as agent:
        agent.wait_for(lambda: _published(rig), what="published despite refused events")
        agent.wait_for(
            lambda: agent.metric('meshready_api_errors_total{operation="event"}') >= 1,
            what="event failures counted",
        )
        assert agent.metric("meshready_published") == 1
        assert agent.metric('meshready_api_errors_total{operation="publish"}') == 0
        # Refused events are dropped, not retried: one POST per event.
        posts = rig.proxy.requests("POST", r"/events")
        assert all(s.action == "fault 422" for s in posts)
        assert agent.terminate() == 0
    assert "event" in agent.output() and "dropped" in agent.output()


def test_a_crafted_node_name_never_reaches_the_api(rig: Rig) -> None:
    for name in ("../../api/v1/namespaces/default/secrets/x", "UPPER", "a" * 254, "node\n"):
        crafted = AgentProcess(
            ["--node-name", name, *rig.node.agent_args(), "--kubeconfig", str(rig.kubeconfig),
             "--probe-mode", "off", "--once"],
            rig.tmp / "crafted.log", loader="fake",
        )  # fmt: skip
        with crafted:
            assert crafted.wait_exit(30) == 2, crafted.output()
        assert "not a valid node name" in crafted.output()
    assert not rig.proxy.requests()  # not one request: the name is refused before any use
