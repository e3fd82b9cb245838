"""`meshready agent` as a process, node-local: exit codes, SIGTERM, and the real in-place probe.

The in-place probe runs for real here: the agent process is started in a new network namespace
(`unshare --net`, loopback up, like a pod's), and the probe applies the profile's rules with the
real iptables-legacy binaries into chains hooked to nothing plus one scoped REDIRECT, and proves a
TCP connection is redirected. This machine's kernel has netfilter built in, so no module is
loaded; the module state comes from the fake /proc of the host root (see fakes.py). Needs root and
unshare: without them the test fails, it does not skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.agent.fakes import make_node, needed_modules
from tests.agent.process import AgentProcess, meshready_argv, run_cli


def _netns_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None or shutil.which("ip") is None:
        pytest.fail("the in-place probe test needs root, unshare and ip (iproute2)", pytrace=False)
    return [unshare, "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "netns"]


@pytest.mark.netns
def test_once_in_a_pod_like_namespace_with_the_real_inplace_probe(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    node.load(*needed_modules(node))
    argv = [*_netns_prefix(), *meshready_argv(
        "agent", "--no-cluster", "--once", *node.agent_args(), "--probe-mode", "inplace",
        "--loader", "none", "--metrics-addr", "off", "-o", "json",
    )]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ready"] is True and result["reason"] == "InterceptionVerified"
    probe = result["probe"]
    assert probe["mode"] == "inplace" and probe["ok"] is True
    assert probe["redirected"] is True and probe["proxy_bypassed"] is True
    assert result["seconds"] < 10  # the whole check; the probe's own time is a metric
    # The probe left nothing behind in the namespace it ran in: it was the process's own, and the
    # host's namespace never saw a rule (nothing to check there but that we did not touch it).


@pytest.mark.netns
def test_probe_failure_is_not_ready_in_a_namespace_without_loopback(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    node.load(*needed_modules(node))
    unshare = shutil.which("unshare")
    assert unshare is not None
    argv = [unshare, "--net", *meshready_argv(
        "agent", "--no-cluster", "--once", *node.agent_args(), "--probe-mode", "inplace",
        "--loader", "none", "--metrics-addr", "off", "-o", "json",
    )]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["reason"] == "ProbeFailed" and result["probe"]["ok"] is False


def test_sigterm_exits_cleanly_and_fast(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    args = ["--no-cluster", *node.agent_args(), "--probe-mode", "off", "--loader", "python",
            "--interval", "3600"]  # fmt: skip
    with AgentProcess(args, tmp_path / "agent.log") as agent:
        agent.wait_for(lambda: agent.get("/readyz")[0] == 200, what="ready")
        assert agent.get("/healthz") == (200, "ok\n")
        started = time.monotonic()
        assert agent.terminate() == 0
        assert time.monotonic() - started < 3
    assert "signal 15: stopping" in agent.output() and "Traceback" not in agent.output()


def test_sigint_too(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    args = ["--no-cluster", *node.agent_args(), "--probe-mode", "off", "--loader", "none"]
    with AgentProcess(args, tmp_path / "agent.log", loader=None) as agent:
        agent.wait_for(lambda: agent.metric('meshready_checks_total{trigger="start"}') == 1)
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGINT)
        assert agent.wait_exit(10) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--taint-key", "k:Sometimes"], "--taint-key"),
        (["--metrics-addr", "nowhere"], "--metrics-addr"),
        (["--profile", "nope"], "nope"),
        (["--host-root", "/nonexistent/root"], "--host-root"),
        (["--kubeconfig", "/nonexistent/kubeconfig"], "kubeconfig"),
    ],
)
def test_bad_input_exits_2(args: list[str], message: str) -> None:
    done = run_cli("agent", "--node-name", "n", "--once", *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr


def test_cluster_mode_needs_a_node_name(tmp_path: Path) -> None:
    done = run_cli("agent", "--once", env={"NODE_NAME": ""})
    assert done.returncode == 2 and "--node-name" in done.stderr


def test_unreachable_cluster_keeps_node_work_and_once_fails(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1', insecure-skip-tls-verify: true}}]\n"
        "users: [{name: c, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: c}}]\n"
    )
    done = run_cli(
        "agent", "--node-name", "n", "--once", "--once-timeout", "1", "--retry-max", "0.2",
        *node.agent_args(), "--kubeconfig", str(kubeconfig), "--probe-mode", "off",
        "--loader", "python", "--metrics-addr", "off",
        env={"MESHREADY_TEST_LOADER": "fake"},
    )  # fmt: skip
    assert done.returncode == 1
    assert (
        "could not publish on node n" in done.stderr
        and "cannot reach the API server" in done.stderr
    )
    assert len(node.loaded()) == 18  # the node-local fix happened anyway
