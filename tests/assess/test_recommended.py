"""Required and recommended modules (iptables-nft, per iptables version) in the report."""

from __future__ import annotations

import pytest

from meshready.assess.assess import assess
from meshready.assess.plan import needs_from_options
from meshready.assess.report import State
from meshready.errors import InputError
from meshready.host.facts import gather_offline
from meshready.knowledge.profiles import PROFILES
from meshready.knowledge.requests import Backend
from meshready.rules.derive import needs_for
from meshready.rules.iptables_parser import parse_iptables
from tests.conftest import DEBIAN_61_AMD64

PORTS = "*nat\n-A OUTPUT -p tcp --dport 15008 -j RETURN\n-A OUTPUT -m owner --uid-owner 1 -j RETURN\nCOMMIT\n"
WARN = "Warning: Extension tcp revision 0 not supported, missing kernel module?"


def _report(version: str):  # type: ignore[no-untyped-def]
    rs = parse_iptables(PORTS, "t.v4.rules", None)
    facts = gather_offline(None, None, DEBIAN_61_AMD64)
    return assess(needs_for([rs], Backend.NFT, version), facts, Backend.NFT)


def test_recommended_module_is_reported_with_its_warning() -> None:
    report = _report("1.8.9")
    by_name = {m.name: m for m in report.modules}
    assert not by_name["xt_tcpudp"].required
    assert by_name["xt_tcpudp"].warning == WARN
    assert by_name["xt_owner"].required and by_name["nft_compat"].required
    assert "xt_tcpudp" in report.recommended and "xt_tcpudp" not in report.missing
    assert "xt_tcpudp" in report.load_order  # fix loads it too
    data = report.to_dict()
    assert data["recommended"] == list(report.recommended)
    assert any("recommended, not required: xt_tcpudp" in n and WARN in n for n in data["notes"])


def test_same_rules_require_it_with_1_8_7() -> None:
    report = _report("1.8.7")
    assert all(m.required for m in report.modules)
    assert "xt_tcpudp" in report.missing and not report.recommended


def test_readiness_ignores_recommended_modules() -> None:
    report = _report("1.8.9")
    # every required module loaded, xt_tcpudp (recommended) not
    loaded = "Module Size Used by\n" + "".join(
        f"{m} 1 0\n" for m in report.load_order if m != "xt_tcpudp"
    )
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        lsmod = Path(tmp) / "lsmod"
        lsmod.write_text(loaded)
        facts = gather_offline(lsmod, None, DEBIAN_61_AMD64)
        rs = parse_iptables(PORTS, "t.v4.rules", None)
        again = assess(needs_for([rs], Backend.NFT, "1.8.9"), facts, Backend.NFT)
    assert again.ready, again.summary
    assert again.summary.startswith("ready:") and "xt_tcpudp" in again.summary
    tcpudp = next(m for m in again.modules if m.name == "xt_tcpudp")
    assert tcpudp.state is State.LOADABLE and not tcpudp.required


def test_profile_states_its_iptables_version_and_option_overrides() -> None:
    spec = needs_from_options("istio-ambient", (), Backend.NFT)
    assert spec.iptables is not None
    assert spec.iptables.version == PROFILES["istio-ambient"].iptables_version == "1.8.10"
    assert spec.iptables.measured_as == "1.8.9"
    assert spec.iptables.source.startswith("profile istio-ambient: ")
    assert any(not n.required for n in spec.needs)  # -m mark, -p udp --dport: warn only
    old = needs_from_options("istio-ambient", (), Backend.NFT, "1.8.7")
    assert old.iptables is not None and old.iptables.source == "--iptables-version"
    assert all(n.required for n in old.needs)
    for name, profile in PROFILES.items():
        assert (profile.iptables_version is None) == (Backend.NFT not in profile.backends), name
        if profile.iptables_version:
            assert profile.iptables_source, name


def test_native_nftables_rules_assume_no_iptables() -> None:
    assert needs_from_options("istio-sidecar-nftables", (), None).iptables is None


@pytest.mark.parametrize("bad", ["1.8", "latest", "1.8.10; reboot"])
def test_bad_iptables_version_is_an_input_error(bad: str) -> None:
    with pytest.raises(InputError, match="--iptables-version"):
        needs_from_options("linkerd", (), Backend.NFT, bad)
