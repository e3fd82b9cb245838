"""The agent's probe (``inplace``): in a namespace that already carries a pod's interception rules,
the probe proves the modules and a live redirect without changing the pod's rules or traffic."""

from __future__ import annotations

import pytest

from meshready.actions.probe import Mode, ProbeResult, probe, rule_texts
from meshready.actions.probe.connect import check_connections, listen
from meshready.actions.probe.netns import APP_ADDR, VETH_SETUP
from meshready.actions.probe_targets import PROBE_TARGETS
from meshready.assess.plan import needs_from_options
from meshready.knowledge.profiles import PROFILES
from meshready.knowledge.requests import Backend
from tests.netns.nsutil import apply, in_netns, snapshot

pytestmark = pytest.mark.netns

CASES = [
    ("istio-sidecar", "legacy"),
    ("istio-sidecar", "nft"),
    ("istio-ambient", "legacy"),
    ("linkerd", "nft"),
    ("istio-sidecar-nftables", "nftables"),
    ("istio-ambient-nftables", "nftables"),
]
RESTORE = {
    ("legacy", "iptables"): ["iptables-legacy-restore"],
    ("legacy", "ip6tables"): ["ip6tables-legacy-restore"],
    ("nft", "iptables"): ["iptables-nft-restore"],
    ("nft", "ip6tables"): ["ip6tables-nft-restore"],
}


def _pod_traffic_redirected(profile: str) -> bool:
    """The pod's own interception still works: a veth, a listener, a real connection."""
    apply(["ip", "-batch", "-"], VETH_SETUP.replace("link set lo up\n", ""))
    port = 4140 if profile == "linkerd" else 15001
    target = PROBE_TARGETS[profile]
    with listen(port) as listener:
        check = check_connections(
            {port: listener}, [(APP_ADDR, 8080)], target, (4242, 4242), timeout=5
        )
    return check.redirected and check.proxy_bypassed is True


def _scenario(
    profile: str, backend: str
) -> tuple[ProbeResult, dict[str, str], dict[str, str], bool]:
    spec = needs_from_options(profile, (), Backend(backend))
    for rt in rule_texts(spec):  # the pod's own rules, as its init container applied them
        argv = ["nft", "-f", "-"] if rt.kind == "nft" else RESTORE[(backend, rt.kind)]
        apply(argv, rt.text)
    before = snapshot()
    result = probe(spec, mode=Mode.INPLACE)
    after = snapshot()
    return result, before, after, _pod_traffic_redirected(profile)


@pytest.mark.parametrize(("profile", "backend"), CASES, ids=[f"{p}-{b}" for p, b in CASES])
def test_inplace_leaves_the_pod_as_it_was(profile: str, backend: str) -> None:
    result, before, after, pod_ok = in_netns(lambda: _scenario(profile, backend))
    assert result.ok, result.to_dict()
    assert result.mode == "inplace" and result.redirected and result.proxy_bypassed is True
    assert result.original_dst is not None and result.original_dst.startswith("127.0.0.1:")
    assert after == before
    assert pod_ok, "the pod's own interception stopped working after the probe"


def test_inplace_in_an_empty_namespace_leaves_no_tables() -> None:
    def run() -> tuple[ProbeResult, dict[str, str], dict[str, str]]:
        before = snapshot()
        result = probe(needs_from_options("linkerd", (), Backend.NFT), mode=Mode.INPLACE)
        return result, before, snapshot()

    result, before, after = in_netns(run)
    assert result.ok, result.to_dict()
    assert after == before  # iptables-nft's tables, created on use, are removed when left empty


def test_inplace_cleans_up_after_a_failure(tmp_path) -> None:  # type: ignore[no-untyped-def]
    good = PROFILES["istio-sidecar"].read("istio-sidecar.v4.rules")
    (tmp_path / "good.v4.rules").write_text(good)
    (tmp_path / "bad.v4.rules").write_text(
        "*mangle\n-A OUTPUT -p tcp -j REDIRECT --to-ports 1\nCOMMIT\n"
    )
    spec = needs_from_options(
        None, (str(tmp_path / "good.v4.rules"), str(tmp_path / "bad.v4.rules")), Backend.LEGACY
    )

    def run() -> tuple[ProbeResult, dict[str, str], dict[str, str]]:
        apply(["iptables-legacy-restore"], good)
        before = snapshot()
        result = probe(spec, mode=Mode.INPLACE)
        return result, before, snapshot()

    result, before, after = in_netns(run)
    assert not result.ok and result.error is not None and "bad.v4.rules" in result.error
    assert after.get("iptables-legacy-save", "").replace("*mangle\n", "").count("MRP") == 0
    for key in before:
        assert "MRP" not in after[key] and "meshready-probe" not in after[key]


def test_inplace_removes_stale_chains_of_a_killed_probe() -> None:
    def run() -> tuple[ProbeResult, str]:
        apply(["iptables-legacy-restore", "--noflush"],
              "*nat\n:MRP0a0a_LIVE - [0:0]\n-A MRP0a0a_LIVE -p tcp -j REDIRECT --to-ports 1\n"
              "-I OUTPUT 1 -o lo -p tcp --dport 9 -j MRP0a0a_LIVE\nCOMMIT\n")  # fmt: skip
        result = probe(needs_from_options("istio-sidecar", (), Backend.LEGACY), mode=Mode.INPLACE)
        return result, snapshot()["iptables-legacy-save"]

    result, after = in_netns(run)
    assert result.ok and "MRP" not in after
