"""The probe's pure parts: rule texts, redirect ports, proxy identity, inplace rewriting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshready.actions.probe import (
    Mode,
    ProbeFailure,
    ProbeResult,
    RuleText,
    hide_nft,
    hide_xt,
    probe,
    redirect_ports,
    rule_texts,
    to_restore,
)
from meshready.actions.probe.result import ModeReport
from meshready.actions.probe.rules import candidate_ports, uses_owner
from meshready.actions.probe_targets import (
    PROBE_TARGETS,
    ProbeTarget,
    derive_target_from_rules,
    target_for_rules,
)
from meshready.assess.plan import needs_from_options
from meshready.knowledge.profiles import PROFILES
from meshready.knowledge.requests import Backend
from meshready.rules.load import parse_rules_text


def test_every_profile_has_a_proxy_identity() -> None:
    assert set(PROBE_TARGETS) == set(PROFILES)
    assert PROBE_TARGETS["istio-sidecar"].proxy_uid == 1337
    assert PROBE_TARGETS["linkerd"].proxy_uid == 2102
    assert PROBE_TARGETS["istio-ambient"].proxy_mark == 0x3


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_texts_and_ports(name: str) -> None:
    spec = needs_from_options(name, (), None)
    texts = rule_texts(spec)
    assert [t.source for t in texts] == list(spec.rules)
    ports = redirect_ports(texts)
    assert ports, "every profile redirects outbound traffic"
    expected = {"linkerd": 4140}.get(name, 15001)
    assert expected in ports
    target = target_for_rules(name, spec.rulesets)
    assert str(target.dport) not in {str(p) for p in ports}


def test_rules_files_keep_their_kind(tmp_path: Path) -> None:
    v4 = tmp_path / "a.v4.rules"
    v4.write_text("*nat\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n")
    nft = tmp_path / "b.nft"
    nft.write_text("add table inet t\nadd chain inet t o { type nat hook output priority 0 ; }\n"
                   "add rule inet t o tcp dport 80 redirect to :15002\n")  # fmt: skip
    spec = needs_from_options(None, (str(v4), str(nft)), Backend.LEGACY)
    kinds = [(t.kind, t.source) for t in rule_texts(spec)]
    assert kinds == [("iptables", str(v4)), ("nft", str(nft))]
    assert redirect_ports(rule_texts(spec)) == [15001, 15002]


def test_command_lines_become_restore_input() -> None:
    text = """# my rules
iptables -t nat -N MESH_OUT
iptables -w 5 -t nat -A OUTPUT -p tcp -j MESH_OUT
iptables -t nat -A MESH_OUT -m owner --uid-owner 999 -j RETURN
iptables -t nat -A MESH_OUT -p tcp -m comment --comment "send to proxy" -j REDIRECT --to-ports 7000
iptables -t nat -P OUTPUT ACCEPT
iptables -A INPUT -p tcp --dport 22 -j ACCEPT
"""
    out = to_restore(text)
    assert out.splitlines() == [
        "*nat",
        ":MESH_OUT - [0:0]",
        "-A OUTPUT -p tcp -j MESH_OUT",
        "-A MESH_OUT -m owner --uid-owner 999 -j RETURN",
        '-A MESH_OUT -p tcp -m comment --comment "send to proxy" -j REDIRECT --to-ports 7000',
        "COMMIT",
        "*filter",
        "-A INPUT -p tcp --dport 22 -j ACCEPT",
        "COMMIT",
    ]
    target = derive_target_from_rules([parse_rules_text(out, "t")])
    assert target.proxy_uid == 999 and target.app_uid not in (0, 999)


def test_restore_input_is_kept() -> None:
    text = PROFILES["istio-sidecar"].read("istio-sidecar.v4.rules")
    assert to_restore(text) == text


def test_derive_target_picks_a_port_the_rules_do_not_name() -> None:
    def derive(text: str) -> ProbeTarget:
        return derive_target_from_rules([parse_rules_text(text, "t")])

    t = derive("*filter\n:X - [0:0]\n-A X -p tcp --dport 8080 -j RETURN\n"
               "-A X -p tcp --dport 80 -j RETURN\nCOMMIT\n")  # fmt: skip
    assert t.dport == 9080 and t.proxy_uid is None
    assert derive("add rule inet t o meta skuid 555 counter return").proxy_uid == 555
    assert derive("add rule inet t o meta skuid != 555 counter return").proxy_uid is None
    assert target_for_rules("istio-sidecar", [], proxy_uid=7).proxy_uid == 7


def test_hide_xt_renames_every_chain_and_touches_no_builtin() -> None:
    text = PROFILES["istio-sidecar"].read("istio-sidecar.v4.rules")
    out, created = hide_xt(text, "MRPabcd")
    lines = out.splitlines()
    assert lines[0] == "*nat"
    assert ":MRPabcd_OUTPUT - [0:0]" in lines and ":MRPabcd_PREROUTING - [0:0]" in lines
    assert "-A MRPabcd_OUTPUT -j MRPabcd_ISTIO_OUTPUT" in lines
    assert any("-j REDIRECT --to-ports 15001" in ln for ln in lines)
    for ln in lines:
        if ln.startswith("-"):
            assert ln.split()[1].startswith("MRPabcd_"), ln  # never a built-in chain
        if ln.startswith(":"):
            assert ln.endswith("- [0:0]") and ln.startswith(":MRPabcd_")  # no policy set
    assert set(created) == {"nat", "raw"}
    assert all(len(c) <= 28 for cs in created.values() for c in cs)


def test_hide_xt_shortens_long_chain_names() -> None:
    text = "*nat\n:A_VERY_LONG_CHAIN_NAME_OF_MESH - [0:0]\n-A OUTPUT -j A_VERY_LONG_CHAIN_NAME_OF_MESH\nCOMMIT\n"
    out, created = hide_xt(text, "MRPabcd")
    (long_name,) = [c for c in created["nat"] if "VERY" in c]
    assert len(long_name) <= 28 and f"-j {long_name}" in out


def test_hide_nft_renames_tables_and_unhooks_chains() -> None:
    text = PROFILES["istio-sidecar-nftables"].read("istio-sidecar.nft")
    out, tables = hide_nft(text, "meshready-probe-abcd")
    assert ("inet", "meshready-probe-abcd-istio-proxy-nat") in tables
    assert "hook" not in out and "type nat" not in out
    assert "add chain inet meshready-probe-abcd-istio-proxy-nat output" in out.splitlines()
    assert "istio-proxy-nat " not in out.replace("meshready-probe-abcd-istio-proxy-nat", "")
    assert "redirect to :15001" in out


def test_hide_nft_refuses_blocks() -> None:
    with pytest.raises(ProbeFailure, match="line-oriented"):
        hide_nft("table inet x {\n chain y { }\n}\n", "p")


def test_probe_without_redirect_says_so(tmp_path: Path) -> None:
    rules = tmp_path / "drop.v4.rules"
    rules.write_text("*filter\n-A OUTPUT -p tcp --dport 25 -j DROP\nCOMMIT\n")
    result = probe(needs_from_options(None, (str(rules),), Backend.LEGACY))
    assert not result.ok and result.error is not None and "no REDIRECT" in result.error


def _texts(
    tmp_path: Path, name: str, text: str, backend: Backend = Backend.LEGACY
) -> list[RuleText]:
    path = tmp_path / name
    path.write_text(text)
    return rule_texts(needs_from_options(None, (str(path),), backend))


def test_ports_come_from_the_parsed_rules_not_their_text(tmp_path: Path) -> None:
    texts = _texts(
        tmp_path,
        "a.v4.rules",
        "*nat\n"
        '-A OUTPUT -p tcp -m comment --comment "-j REDIRECT --to-ports 9 --dport 7" -j RETURN\n'
        "-A OUTPUT -p tcp ! --dport 53 -j REDIRECT --to-ports 15001\n"
        "-A OUTPUT -p tcp -m multiport --dports 8443,9000:9100 -j REDIRECT --to-port 15002\n"
        "-A OUTPUT -p tcp --dport 15001 -j RETURN\n"
        "-A OUTPUT -p tcp --dport 3306 -m owner --uid-owner 999 -j RETURN\n"
        "COMMIT\n",
    )
    assert redirect_ports(texts) == [15001, 15002]
    # the negated rule names no capture port; 15001 is a redirect target; of a range, its start
    assert candidate_ports(texts) == [8443, 9000, 3306]
    assert uses_owner(texts)


def test_nft_ports_and_owner_come_from_the_parsed_rules(tmp_path: Path) -> None:
    texts = _texts(
        tmp_path,
        "b.nft",
        "add table inet t\n"
        "add chain inet t o { type nat hook output priority 0 ; }\n"
        'add rule inet t o tcp dport != 53 comment "skuid 7 redirect to :9" redirect to :15001\n'
        "add rule inet t o tcp dport { 80, 443 } redirect to :15002\n"
        "add rule inet t o th dport 1000-2000 return\n",
        Backend.NFTABLES,
    )
    assert redirect_ports(texts) == [15001, 15002]
    assert candidate_ports(texts) == [80, 443, 1000]
    assert not uses_owner(texts)  # "skuid" only in a comment


def test_hide_nft_keeps_regular_chains_and_rules_as_they_are() -> None:
    text = (
        "add table ip t\n"
        "add chain ip t c\n"
        "add chain ip t b { type filter hook input priority 0 ; policy accept ; } ;\n"
        "add rule ip t c tcp dport { 80, 443 } accept\n"
    )
    out, tables = hide_nft(text, "p")
    assert tables == [("ip", "p-t")]
    assert out.splitlines() == [
        "add table ip p-t",
        "add chain ip p-t c",
        "add chain ip p-t b",
        "add rule ip p-t c tcp dport { 80, 443 } accept",
    ]


def test_hide_xt_renames_by_every_command_spelling() -> None:
    text = (
        "*nat\n:MESH - [0:0]\n--new-chain OTHER\n--append OUTPUT --jump MESH\n"
        "--insert MESH 1 --goto OTHER\n--policy OUTPUT ACCEPT\n--flush MESH\nCOMMIT\n"
    )
    out, created = hide_xt(text, "MRPabcd")
    # OUTPUT too: the rules appended to it go to an unhooked copy
    assert created == {"nat": ["MRPabcd_MESH", "MRPabcd_OTHER", "MRPabcd_OUTPUT"]}
    assert out.splitlines() == [
        "*nat",
        ":MRPabcd_MESH - [0:0]",
        ":MRPabcd_OTHER - [0:0]",
        ":MRPabcd_OUTPUT - [0:0]",
        "--append MRPabcd_OUTPUT --jump MRPabcd_MESH",
        "--insert MRPabcd_MESH 1 --goto MRPabcd_OTHER",
        "COMMIT",
    ]


def test_the_mode_report_crosses_the_pipe_unchanged() -> None:
    report = ModeReport(
        applied=["a.rules"],
        steps=["s"],
        notes=["n"],
        redirected=True,
        proxy_bypassed=None,
        original_dst="192.0.2.2:8080",
        redirect_port=15001,
    )
    assert ModeReport.from_json(json.loads(report.to_json())) == report
    assert ModeReport.from_json({"redirected": "yes", "applied": "a"}) == ModeReport()


def test_result_json_keys_values_and_order() -> None:
    result = ProbeResult(
        ok=True,
        redirected=True,
        proxy_bypassed=True,
        backend=Backend.NFTABLES,
        duration_s=0.12345,
        detail="d",
        mode=Mode.INPLACE,
        applied=("x",),
        redirect_port=15001,
        proxy="uid 1337",
    )
    data = result.to_dict()
    assert list(data) == [
        "ok",
        "redirected",
        "proxy_bypassed",
        "backend",
        "duration_s",
        "detail",
        "error",
        "mode",
        "applied",
        "original_dst",
        "redirect_port",
        "proxy",
        "steps",
    ]
    assert json.loads(json.dumps(data)) == {
        "ok": True,
        "redirected": True,
        "proxy_bypassed": True,
        "backend": "nftables",
        "duration_s": 0.123,
        "detail": "d",
        "error": None,
        "mode": "inplace",
        "applied": ["x"],
        "original_dst": None,
        "redirect_port": 15001,
        "proxy": "uid 1337",
        "steps": [],
    }
    assert type(data["backend"]) is str and type(data["mode"]) is str
