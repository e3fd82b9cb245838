"""`meshready probe` for real on this machine (netfilter built in): throwaway namespaces, real
iptables-legacy, iptables-nft and nft, real TCP connections, SO_ORIGINAL_DST."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshready.actions.probe import probe
from meshready.assess.plan import needs_from_options
from meshready.knowledge.requests import Backend
from tests.netns.nsutil import children_of, descendants_of, snapshot

pytestmark = pytest.mark.netns

CASES = [
    ("istio-sidecar", "legacy"),
    ("istio-sidecar", "nft"),
    ("istio-sidecar-tproxy", "legacy"),
    ("istio-sidecar-tproxy", "nft"),
    ("istio-ambient", "legacy"),
    ("istio-ambient", "nft"),
    ("linkerd", "legacy"),
    ("linkerd", "nft"),
    ("istio-sidecar-nftables", "nftables"),
    ("istio-ambient-nftables", "nftables"),
]


@pytest.mark.parametrize(("profile", "backend"), CASES, ids=[f"{p}-{b}" for p, b in CASES])
def test_profiles_pass_for_real(profile: str, backend: str) -> None:
    before = snapshot()
    # Other suites' servers (the test apiserver, etcd) may be this process's children too.
    children = children_of(os.getpid())
    result = probe(needs_from_options(profile, (), Backend(backend)))
    assert result.ok, result.to_dict()
    assert result.redirected and result.proxy_bypassed is True
    assert result.original_dst == "192.0.2.2:8080"
    assert result.redirect_port == (4140 if profile == "linkerd" else 15001)
    assert len(result.applied) == (1 if backend == "nftables" else 2)
    assert snapshot() == before  # this machine's own rules untouched
    assert children_of(os.getpid()) == children  # no child left behind


@pytest.mark.parametrize("backend", ["legacy", "nft"])
def test_cli_probe_passes_with_each_iptables(backend: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "meshready.cli.main", "probe", "--backend", backend, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["ok"] and data["backend"] == backend and data["mode"] == "netns"
    human = subprocess.run(
        [sys.executable, "-m", "meshready.cli.main", "probe", "--backend", backend],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert human.returncode == 0 and human.stdout.startswith("probe PASS (netns, backend")


def _rules(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_fails_when_the_proxy_is_redirected_too(tmp_path: Path) -> None:
    rules = _rules(
        tmp_path,
        "noexclude.v4.rules",
        "*nat\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n",
    )
    result = probe(needs_from_options(None, (rules,), Backend.LEGACY), proxy_uid=1337)
    assert result.redirected and result.proxy_bypassed is False and not result.ok
    assert "proxy" in result.detail and "redirected" in result.detail


def test_fails_when_nothing_is_redirected(tmp_path: Path) -> None:
    # captures only traffic to one address the probe never uses
    text = (
        "*nat\n-A OUTPUT -p tcp -d 10.9.9.9/32 --dport 9999 -j REDIRECT --to-ports 15001\nCOMMIT\n"
    )
    rules = _rules(tmp_path, "other-dest.v4.rules", text)
    result = probe(needs_from_options(None, (rules,), Backend.NFT), proxy_uid=1337)
    assert not result.ok and not result.redirected
    assert "no application connection was redirected: 192.0.2.2:8080" in result.detail
    assert "192.0.2.2:9999" in result.detail  # the port the rules name was tried too


def test_rules_that_capture_only_some_ports(tmp_path: Path) -> None:
    """Istio's includeOutboundPorts: only 31000 and 32000 are captured (shared/rules)."""
    rules = _rules(tmp_path, "ports.v4.rules", "\n".join([
        "*nat",
        ":ISTIO_REDIRECT - [0:0]",
        ":ISTIO_OUTPUT - [0:0]",
        "-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001",
        "-A OUTPUT -j ISTIO_OUTPUT",
        "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
        "-A ISTIO_OUTPUT -p tcp --dport 32000 -j ISTIO_REDIRECT",
        "-A ISTIO_OUTPUT -p tcp --dport 31000 -j ISTIO_REDIRECT",
        "COMMIT",
    ]) + "\n")  # fmt: skip
    result = probe(needs_from_options(None, (rules,), Backend.LEGACY))
    assert result.ok, result.to_dict()
    assert result.original_dst == "192.0.2.2:32000" and result.proxy == "uid 1337"


def test_user_rules_with_proxy_uid_from_the_rules(tmp_path: Path) -> None:
    rules = _rules(tmp_path, "mine.v4.rules", "\n".join([
        "iptables -t nat -N MESH",
        "iptables -t nat -A OUTPUT -p tcp -j MESH",
        "iptables -t nat -A MESH -m owner --uid-owner 999 -j RETURN",
        "iptables -t nat -A MESH -p tcp -j REDIRECT --to-ports 7000",
    ]) + "\n")  # fmt: skip
    result = probe(needs_from_options(None, (rules,), Backend.LEGACY))
    assert result.ok, result.to_dict()
    assert result.proxy == "uid 999" and result.redirect_port == 7000


def test_rules_the_kernel_rejects(tmp_path: Path) -> None:
    # REDIRECT is valid only in the nat table: the kernel refuses it at COMMIT
    rules = _rules(
        tmp_path, "bad.v4.rules", "*mangle\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n"
    )
    before = snapshot()
    result = probe(needs_from_options(None, (rules,), Backend.LEGACY))
    assert not result.ok and result.error is not None
    assert "iptables-legacy-restore failed" in result.error
    assert snapshot() == before


def test_timeout_kills_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[int] = []
    real_fork = os.fork

    def fork() -> int:
        pid = real_fork()
        if pid:
            started.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)
    children = children_of(os.getpid())
    result = probe(needs_from_options("istio-sidecar", (), Backend.LEGACY), timeout=0.05)
    assert not result.ok and result.error is not None and "did not finish" in result.error
    assert started and descendants_of(started[0]) == []
    assert children_of(os.getpid()) == children
