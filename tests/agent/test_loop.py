"""The agent loop in-process: triggers, retries with backoff, health and metrics, stopping."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import httpx2
import pytest

from meshready.agent.backoff import Backoff, jittered
from meshready.agent.loop import Agent, AgentConfig
from meshready.agent.work import NodeWork
from meshready.assess.plan import needs_from_options
from meshready.cluster.node import SyncOutcome
from meshready.cluster.published import Publication
from tests.agent.fakes import FakeNode, make_node, needed_modules

SPEC = needs_from_options("istio-sidecar", (), None)


class FakePublisher:
    """Stands in for cluster.node.NodePublisher: fails FAILURES times, then records."""

    def __init__(self, failures: int = 0) -> None:
        self.node_name = "node-a"
        self.client: Any = None
        self.failures = failures
        self.attempts = 0
        self.published: list[Publication] = []
        self.lock = threading.Lock()

    def sync(self, pub: Publication) -> SyncOutcome:
        with self.lock:
            self.attempts += 1
            if self.failures:
                self.failures -= 1
                raise httpx2.ConnectError("connection refused")
            self.published.append(pub)
        return SyncOutcome(wrote=["metadata", "condition"])


def sample(agent: Agent, name: str, **labels: str) -> float:
    value = agent.metrics.registry.get_sample_value(name, labels)
    assert value is not None, (name, labels)
    return value


def wait_until(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s")
        time.sleep(0.01)


@pytest.fixture
def node(tmp_path: Path) -> FakeNode:
    fake = make_node(tmp_path)
    fake.load(*needed_modules(fake))
    return fake


def _agent(node: FakeNode, publisher: Any = None, **config: Any) -> Agent:
    settings: dict[str, Any] = {
        "node_name": "node-a",
        "interval": 0.05,
        "jitter": 0.0,
        "watch": False,
        "metrics_addr": None,
        "boot_id_file": node.proc / "sys" / "kernel" / "random" / "boot_id",
        "retry_base": 0.01,
        "retry_cap": 0.05,
    }
    settings.update(config)
    work = NodeWork(SPEC, node.root, fixer=None, prober=None)
    factory = (lambda: publisher) if publisher is not None else None
    return Agent(AgentConfig(**settings), work, publisher=factory)


def _run(agent: Agent) -> tuple[threading.Thread, list[int]]:
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(agent.run()), daemon=True)
    thread.start()
    return thread, codes


def test_timer_rechecks_and_stop_exits_zero(node: FakeNode) -> None:
    publisher = FakePublisher()
    agent = _agent(node, publisher)
    thread, codes = _run(agent)
    wait_until(lambda: agent.checks >= 3 and len(publisher.published) >= 1)
    agent.request_stop()
    thread.join(5)
    assert not thread.is_alive() and codes == [0]
    assert sample(agent, "meshready_checks_total", trigger="start") == 1
    assert sample(agent, "meshready_checks_total", trigger="timer") >= 2
    assert publisher.published[0].ready is True


def test_api_errors_back_off_while_checks_go_on(node: FakeNode) -> None:
    publisher = FakePublisher(failures=4)
    agent = _agent(node, publisher, interval=0.02)
    thread, _ = _run(agent)
    wait_until(lambda: publisher.published)
    checks_while_failing = agent.checks
    agent.request_stop()
    thread.join(5)
    assert sample(agent, "meshready_api_errors_total", operation="publish") == 4
    assert checks_while_failing >= 2  # node-local work did not wait for the API


def test_boot_trigger_from_the_watcher_and_from_the_local_boot_id(node: FakeNode) -> None:
    agent = _agent(node, FakePublisher(), interval=3600)
    thread, _ = _run(agent)
    wait_until(lambda: agent.checks == 1)
    agent.trigger("boot")
    wait_until(lambda: agent.checks == 2)
    assert sample(agent, "meshready_checks_total", trigger="boot") == 1
    agent.request_stop()
    thread.join(5)

    # A reboot seen locally when the timer fires: the check is counted as a boot check.
    second = _agent(node, None, interval=0.05)
    thread, _ = _run(second)
    wait_until(lambda: second.checks == 1)
    node.reboot("99999999-0000-0000-0000-000000000000")
    wait_until(lambda: sample(second, "meshready_checks_total", trigger="boot") == 1)
    wait_until(lambda: second.last is not None and second.last.ready is False)
    second.request_stop()
    thread.join(5)


def test_once_publishes_then_exits_with_readiness(node: FakeNode) -> None:
    publisher = FakePublisher(failures=2)
    assert _agent(node, publisher, once=True).run() == 0
    assert len(publisher.published) == 1 and publisher.attempts == 3

    never = FakePublisher(failures=10**6)
    started = time.monotonic()
    assert _agent(node, never, once=True, once_timeout=0.3).run() == 1
    assert time.monotonic() - started < 3

    node.unload_all()
    assert _agent(node, FakePublisher(), once=True).run() == 1  # published, not ready


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_health_ready_and_metrics_endpoints(node: FakeNode) -> None:
    node.unload_all()
    agent = _agent(node, None, interval=0.05, metrics_addr=("127.0.0.1", 0))
    thread, _ = _run(agent)
    wait_until(lambda: agent.server is not None and agent.checks >= 1)
    assert agent.server is not None
    base = f"http://127.0.0.1:{agent.server.port}"
    assert _get(base + "/healthz") == (200, "ok\n")
    # Pod readiness is the agent's (it checked), not the node's: a node that is not ready must
    # not hold up rollouts; the node's readiness is the Node condition and the taint.
    code, body = _get(base + "/readyz")
    assert code == 200 and "node not ready (ModulesNotLoaded)" in body
    node.load(*needed_modules(node))
    wait_until(lambda: "node ready" in _get(base + "/readyz")[1])
    code, metrics = _get(base + "/metrics")
    assert code == 200
    for line in (
        "meshready_node_ready 1.0",
        'meshready_modules{state="loaded"} 18.0',
        'meshready_modules{state="loadable"} 0.0',
        'meshready_module_loads_total{result="ok"} 0.0',
        'meshready_api_errors_total{operation="publish"} 0.0',
        "meshready_probe_duration_seconds_count 0.0",
        'meshready_info{backend="legacy",kernel="6.1.0-56-cloud-amd64"',
        "process_resident_memory_bytes",
    ):
        assert line in metrics, line
    assert _get(base + "/nope")[0] == 404
    agent.request_stop()
    thread.join(5)
    with pytest.raises(OSError):
        urllib.request.urlopen(base + "/healthz", timeout=1)


def test_a_stuck_loop_fails_liveness() -> None:
    from meshready.agent.server import Health

    health = Health(stuck_after=0.05)
    assert health.live()[0]
    time.sleep(0.1)
    ok, why = health.live()
    assert not ok and "no progress" in why
    health.progress()
    assert health.live()[0]


def test_backoff_grows_with_jitter_and_resets() -> None:
    values = iter([0.0, 1.0, 0.5, 0.0, 1.0])
    backoff = Backoff(base=1.0, cap=4.0, rng=lambda: next(values))
    assert [backoff.next() for _ in range(4)] == [0.5, 2.0, 3.0, 2.0]  # ceilings 1, 2, 4, 4
    backoff.reset()
    assert backoff.next() == 1.0
    delays = [Backoff(base=1.0, cap=8.0).next() for _ in range(200)]
    assert min(delays) >= 0.5 and max(delays) <= 1.0 and len(set(delays)) > 100
    assert jittered(100, 0.2, lambda: 0.0) == 80 and jittered(100, 0.2, lambda: 1.0) == 120
    with pytest.raises(ValueError):
        Backoff(base=0)


def test_pod_readiness_waits_for_the_first_publication_not_for_the_node(node: FakeNode) -> None:
    # issue 14: readiness means "the agent is healthy and has published", whatever the node says.
    node.unload_all()
    publisher = FakePublisher(failures=3)
    agent = _agent(node, publisher, interval=60.0)
    thread, _ = _run(agent)
    wait_until(lambda: agent.checks >= 1)
    ready, reason = agent.health.readiness()
    if not publisher.published:
        assert not ready and "no check" in reason
    wait_until(lambda: agent.health.readiness()[0])
    assert publisher.published and publisher.attempts == 4
    assert "published: node not ready (ModulesNotLoaded)" in agent.health.readiness()[1]
    agent.request_stop()
    thread.join(5)
