"""iptables-nft requests per iptables version (the model measured in tests/vm, issue 10)."""

from __future__ import annotations

import json

import pytest

from meshready.knowledge.requests import Backend, Need
from meshready.rules.derive import needs_for
from meshready.rules.iptables_parser import parse_iptables
from tests.conftest import DATA

WARN_TCP = "Warning: Extension tcp revision 0 not supported, missing kernel module?"


def _needs(text: str, version: str, name: str = "t.v4.rules") -> dict[str, Need]:
    return {
        n.request.name: n
        for n in needs_for([parse_iptables(text, name, None)], Backend.NFT, version)
    }


PORTS_ONLY = "*nat\n-A OUTPUT -p tcp --dport 15008 -j RETURN\n-A OUTPUT -p udp --dport 53 -j RETURN\nCOMMIT\n"
AMBIENT = """*mangle
-A PREROUTING -m mark --mark 0x3/0xfff -j CONNMARK --set-xmark 0x111/0xfff
-A PREROUTING -s 169.254.7.127/32 -p tcp -m tcp -j ACCEPT
COMMIT
"""


def test_ports_only_warn_from_1_8_9_on() -> None:
    old = _needs(PORTS_ONLY, "1.8.7")
    assert old["nfnetlink-subsys-11"].required and old["ipt_tcp"].required
    assert old["ipt_udp"].required
    for version in ("1.8.9", "1.8.10", "1.8.11"):
        new = _needs(PORTS_ONLY, version)
        assert new["ipt_tcp"].warning == WARN_TCP
        assert not new["ipt_udp"].required
        # nft_compat is asked only for the revision queries: recommended too
        assert not new["nfnetlink-subsys-11"].required
        assert new["nft-chain-2-nat"].required


def test_bare_tcp_match_and_targets_are_required() -> None:
    needs = _needs(AMBIENT, "1.8.9")
    assert needs["ipt_mark"].warning is not None  # `-m mark --mark` is translated natively
    assert needs["ipt_tcp"].required  # `-p tcp -m tcp` goes through nft_compat
    assert needs["ipt_CONNMARK"].required
    assert needs["nfnetlink-subsys-11"].required  # one required use wins
    assert all(n.required for n in _needs(AMBIENT, "1.8.7").values())


def test_ipv6_names() -> None:
    needs = _needs(PORTS_ONLY, "1.8.11", "t.v6.rules")
    assert not needs["ip6t_tcp"].required
    assert "nft-chain-10-nat" in needs


def test_parser_tells_bare_matches() -> None:
    rs = parse_iptables(
        "*filter\n-A INPUT -p tcp -m tcp -j ACCEPT\n-A INPUT -p tcp -m tcp --dport 1 "
        "-m mark ! --mark 1 -j ACCEPT\n-A INPUT -p udp --sport 5 -j ACCEPT\nCOMMIT\n",
        "x.v4",
        None,
    )
    rules = rs.tables[0].rules
    assert rules[0].bare_matches == ("tcp",)
    assert rules[1].bare_matches == ()
    assert rules[2].matches == ("udp",) and rules[2].bare_matches == ()


ATOMS = {
    p.name: json.loads(p.read_text())
    for p in sorted((DATA / "expected").glob("iptables-nft-atoms-*.json"))
}


def _atom_cases() -> list[tuple[str, str]]:
    return [(name, key) for name, data in ATOMS.items() for key in data]


def test_atom_measurements_cover_every_version() -> None:
    assert ATOMS, "no tests/data/expected/iptables-nft-atoms-*.json (scripts/vm/measure-iptables)"
    for name, data in ATOMS.items():
        assert {k.rsplit("@", 1)[1] for k in data} == {"1.8.7", "1.8.9", "1.8.11"}, name


@pytest.mark.parametrize(("name", "key"), _atom_cases())
def test_model_matches_the_measured_extension(name: str, key: str) -> None:
    """Each extension usage measured alone in a real kernel: the requests it made, and whether
    refusing the module that answers each was fatal; the model must say the same."""
    atom_id, version = key.rsplit("@", 1)
    atom = ATOMS[name][key]
    family = atom_id.rsplit(".", 1)[1]
    text = f"*{atom['table']}\n:MR - [0:0]\n-A MR {atom['rule']}\nCOMMIT\n"
    needs = _needs(text, version, f"atom.{family}.rules")
    compat = {r for r in needs if r.startswith(("ipt_", "ip6t_", "nfnetlink-subsys-11"))}
    assert compat == set(atom["requests"])
    for module, measured in atom["without"].items():
        for request in measured["for"]:
            need = needs[request]
            assert need.required == measured["fatal"], (module, request, measured["output"])
            if not need.required:
                assert need.warning in measured["output"], measured["output"]
