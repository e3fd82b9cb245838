"""What the parsed model carries beyond modules: options, ports, owners, marks, verdicts.

Lines come from the shared Istio rules (/work/shared/rules) and the profiles; each table row is
one rule line and what later layers read from it.
"""

from __future__ import annotations

import pytest

from meshready.errors import InputError
from meshready.knowledge.iptables import CHAIN_COMMAND_ARGS, COMMANDS, RULE_COMMANDS
from meshready.rules.iptables_parser import (
    chain_declaration,
    parse_iptables,
    parse_rule_line,
    split_line,
    table_header,
)
from meshready.rules.model import (
    MarkMatch,
    NftMatch,
    NftRule,
    PortRange,
    XtOption,
    XtRule,
    leading_id,
    port_ranges,
)
from meshready.rules.nft_parser import parse_nft
from meshready.rules.xt_spec import spec_options
from tests.conftest import shared_dir

_CHAINS = (
    "ISTIO_OUTPUT",
    "ISTIO_REDIRECT",
    "ISTIO_IN_REDIRECT",
    "ISTIO_INBOUND",
    "ISTIO_TPROXY",
    "ISTIO_DIVERT",
)


def _xt(line: str, table: str = "nat") -> XtRule:
    decls = [f":{c} - [0:0]" for c in _CHAINS]
    rs = parse_iptables("\n".join([f"*{table}", *decls, line, "COMMIT"]), "t.rules")
    (rule,) = rs.tables[0].rules
    return rule


def _nft(body: str) -> NftRule:
    (rule,) = parse_nft(f"add rule inet t c {body}", "t.nft").rules
    return rule


@pytest.mark.parametrize(
    ("line", "redirect", "tproxy"),
    [
        ("-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001", 15001, None),
        (
            "-A ISTIO_OUTPUT -p udp --dport 53 -d 127.0.0.53/32 -j REDIRECT --to-port 15053",
            15053,
            None,
        ),
        ("-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports 15001-15002 --random", 15001, None),
        (
            "-A ISTIO_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --tproxy-mark 1337/0xffffffff "
            "--on-port 15006",
            None,
            15006,
        ),
        ("-A ISTIO_OUTPUT -j ISTIO_REDIRECT", None, None),
        ("-A ISTIO_OUTPUT -p tcp -j REDIRECT", None, None),
    ],
)
def test_xt_target_ports(line: str, redirect: int | None, tproxy: int | None) -> None:
    rule = _xt(line, "mangle" if "TPROXY" in line else "nat")
    assert (rule.redirect_port, rule.tproxy_port) == (redirect, tproxy)


def test_xt_target_values_and_options_belong_to_their_extension() -> None:
    rule = _xt(
        "-A ISTIO_TPROXY ! -d 127.0.0.1/32 -p tcp -j TPROXY --tproxy-mark 1337/0xffffffff "
        "--on-port 15006",
        "mangle",
    )
    assert rule.target == "TPROXY" and rule.jump == "TPROXY"
    assert rule.target_values("--on-port") == ("15006",)
    assert rule.target_values("--to-ports") == ()
    assert rule.options == (
        XtOption("-d", ("127.0.0.1/32",), True, None),
        XtOption("-p", ("tcp",), False, None),
        XtOption("--tproxy-mark", ("1337/0xffffffff",), False, "TPROXY"),
        XtOption("--on-port", ("15006",), False, "TPROXY"),
    )


@pytest.mark.parametrize(
    ("line", "ports", "negated"),
    [
        ("-A ISTIO_INBOUND -p tcp --dport 15008 -j RETURN", (PortRange(15008, 15008),), False),
        (
            "-A ISTIO_INBOUND -p tcp -m tcp --dport 15008 -j RETURN",
            (PortRange(15008, 15008),),
            False,
        ),
        (
            "-A ISTIO_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --uid-owner 1337 -j RETURN",
            (),
            True,
        ),
        (
            "-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp -m multiport ! --dports 53,15008 "
            "-m owner --uid-owner 1337 -j ISTIO_IN_REDIRECT",
            (),
            True,
        ),
        (
            "-A ISTIO_INBOUND -p tcp -m multiport --dports 80,8000:8100 -j ISTIO_IN_REDIRECT",
            (PortRange(80, 80), PortRange(8000, 8100)),
            False,
        ),
        (
            "-A ISTIO_INBOUND -p tcp --destination-port 1024: -j RETURN",
            (PortRange(1024, 65535),),
            False,
        ),
        ("-A ISTIO_INBOUND -p udp --sport 53 -j RETURN", (), False),
        ("-A ISTIO_INBOUND -p tcp --dport ! 22 -j RETURN", (), True),  # the old "!" place
    ],
)
def test_xt_destination_ports(line: str, ports: tuple[PortRange, ...], negated: bool) -> None:
    rule = _xt(line)
    assert rule.destination_ports == ports
    assert rule.negates_destination_port is negated


@pytest.mark.parametrize(
    ("line", "uid", "gid"),
    [
        ("-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN", ("1337", False), None),
        (
            "-A ISTIO_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --uid-owner 1337 -j RETURN",
            ("1337", True),
            None,
        ),
        ("-A ISTIO_OUTPUT -m owner --gid-owner 1337 -j RETURN", None, ("1337", False)),
        (
            "-A ISTIO_OUTPUT -m owner --uid-owner 1000-1999 ! --gid-owner 5 -j RETURN",
            ("1000-1999", False),
            ("5", True),
        ),
        ("-A ISTIO_OUTPUT -m mark --mark 0x3/0xfff -j RETURN", None, None),
    ],
)
def test_xt_owner(line: str, uid: tuple[str, bool] | None, gid: tuple[str, bool] | None) -> None:
    rule = _xt(line)
    got_uid = (rule.uid_owner.value, rule.uid_owner.negated) if rule.uid_owner else None
    got_gid = (rule.gid_owner.value, rule.gid_owner.negated) if rule.gid_owner else None
    assert (got_uid, got_gid) == (uid, gid)
    assert rule.jump == "RETURN" and rule.target is None


@pytest.mark.parametrize(
    ("line", "mark"),
    [
        (
            "-A ISTIO_OUTPUT -p tcp -m mark --mark 0x111/0xfff -j ACCEPT",
            MarkMatch(0x111, 0xFFF, False),
        ),
        (
            "-A ISTIO_OUTPUT ! -d 127.0.0.1/32 -p tcp -m mark ! --mark 0x3/0xfff "
            "-j REDIRECT --to-ports 15001",
            MarkMatch(0x3, 0xFFF, True),
        ),
        (
            "-A ISTIO_OUTPUT -p tcp -o lo -m mark --mark 1337 -j RETURN",
            MarkMatch(1337, None, False),
        ),
        (
            "-A ISTIO_OUTPUT -p tcp -m mark --mark 0x539/0xfff -j RETURN",
            MarkMatch(1337, 0xFFF, False),
        ),
        # connmark's --mark and MARK's --set-mark are not the packet-mark match
        ("-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark", None),
        ("-A ISTIO_DIVERT -j MARK --set-mark 1337", None),
    ],
)
def test_xt_mark(line: str, mark: MarkMatch | None) -> None:
    assert _xt(line, "mangle").mark == mark


def test_command_lines_and_commands_as_written() -> None:
    text = """iptables -t nat -N MESH_OUT
iptables -t nat -A OUTPUT -p tcp -j MESH_OUT
iptables -t nat --insert MESH_OUT 1 -m owner --uid-owner 999 -j RETURN
iptables -t nat -A MESH_OUT -p tcp -m comment --comment "send to proxy" -j REDIRECT --to-ports 7000
"""
    rules = parse_iptables(text, "cmds").tables[0].rules
    assert [(r.command, r.chain, r.jump, r.target) for r in rules] == [
        ("-A", "OUTPUT", "MESH_OUT", None),
        ("--insert", "MESH_OUT", "RETURN", None),
        ("-A", "MESH_OUT", "REDIRECT", "REDIRECT"),
    ]
    assert rules[1].uid_owner == XtOption("--uid-owner", ("999",), False, "owner")
    assert rules[2].options_named("--comment") == (
        XtOption("--comment", ("send to proxy",), False, "comment"),
    )
    assert rules[2].redirect_port == 7000


def test_goto_keeps_its_chain_as_jump() -> None:
    rule = _xt("-A ISTIO_OUTPUT -p tcp -g ISTIO_REDIRECT")
    assert rule.jump == "ISTIO_REDIRECT" and rule.target is None


def test_command_tables_cover_every_spelling() -> None:
    assert {COMMANDS[c] for c in ("-A", "--append", "-I", "--insert")} == {"-A", "-I"}
    assert set(COMMANDS.values()) == RULE_COMMANDS | set(CHAIN_COMMAND_ARGS)
    assert COMMANDS["--rename-chain"] == "-E" and CHAIN_COMMAND_ARGS["-E"] == 2


def test_split_line_unquotes() -> None:
    assert split_line('-A X -m comment --comment "a b" -j RETURN') == [
        "-A", "X", "-m", "comment", "--comment", "a b", "-j", "RETURN",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("value", "separator", "ranges"),
    [
        ("80", ":", (PortRange(80, 80),)),
        ("53,15008", ":", (PortRange(53, 53), PortRange(15008, 15008))),
        ("8000:8100", ":", (PortRange(8000, 8100),)),
        (":1024", ":", (PortRange(0, 1024),)),
        ("1000-2000", "-", (PortRange(1000, 2000),)),
        ("http,70000,9:1", ":", ()),
    ],
)
def test_port_ranges(value: str, separator: str, ranges: tuple[PortRange, ...]) -> None:
    assert port_ranges(value, separator) == ranges


def test_leading_id() -> None:
    assert [leading_id(v) for v in ("1337", "1000-1999", "root", "12ab")] == [
        1337,
        1000,
        None,
        None,
    ]


@pytest.mark.parametrize(
    ("body", "redirect", "tproxy"),
    [
        ("meta l4proto tcp counter redirect to :15001", 15001, None),
        ("ip daddr 127.0.0.53/32 udp dport 53 counter redirect to :15053", 15053, None),
        ("meta l4proto tcp ip daddr != 127.0.0.1/32 tproxy ip to :15006 meta mark set 1337 accept", None, 15006),
        ("meta l4proto tcp tproxy to :15006 accept", None, 15006),
        ("meta l4proto tcp tproxy ip to 127.0.0.1:15008 accept", None, 15008),
        ("meta l4proto tcp tproxy ip to 127.0.0.1 accept", None, None),
        ("counter jump istio-redirect", None, None),
    ],
)  # fmt: skip
def test_nft_redirect_and_tproxy_ports(body: str, redirect: int | None, tproxy: int | None) -> None:
    rule = _nft(body)
    assert (rule.redirect_port, rule.tproxy_port) == (redirect, tproxy)


@pytest.mark.parametrize(
    ("body", "ports", "negated"),
    [
        ("meta l4proto tcp tcp dport 15008 counter return", (PortRange(15008, 15008),), False),
        ("tcp dport { 80, 443 } counter jump x", (PortRange(80, 80), PortRange(443, 443)), False),
        ("th dport 1000-2000 counter accept", (PortRange(1000, 2000),), False),
        ("meta l4proto tcp tcp dport != { 53, 15008 } skuid 1337 counter jump x", (), True),
        ("oifname lo meta l4proto tcp tcp dport != 53 skuid != 1337 counter return", (), True),
        ("udp sport 15053 meta skuid 1337 counter ct zone set 2", (), False),
    ],
)
def test_nft_destination_ports(body: str, ports: tuple[PortRange, ...], negated: bool) -> None:
    rule = _nft(body)
    assert rule.destination_ports == ports
    assert rule.negates_destination_port is negated


@pytest.mark.parametrize(
    ("body", "skuid", "skgid", "verdict"),
    [
        ("skuid 1337 counter return", NftMatch("skuid", None, ("1337",)), None, ("return", None)),
        (
            "oifname lo meta l4proto tcp tcp dport != 53 skuid != 1337 counter return",
            NftMatch("skuid", "!=", ("1337",)),
            None,
            ("return", None),
        ),
        (
            "udp dport 53 meta skgid 1337 counter ct zone set 1",
            None,
            NftMatch("meta skgid", None, ("1337",)),
            (None, None),
        ),
        (
            "meta skuid eq 3 counter jump istio-in-redirect",
            NftMatch("meta skuid", "eq", ("3",)),
            None,
            ("jump", "istio-in-redirect"),
        ),
    ],
)
def test_nft_owner_and_verdict(
    body: str, skuid: NftMatch | None, skgid: NftMatch | None, verdict: tuple[str | None, ...]
) -> None:
    rule = _nft(body)
    assert (rule.skuid, rule.skgid) == (skuid, skgid)
    assert (rule.verdict, rule.verdict_chain) == verdict


def test_nft_marks_are_matches_only_where_they_match() -> None:
    rule = _nft("meta l4proto tcp tcp dport 15008 meta mark & 0xfff != 0x3 counter tproxy ip to "
                ":15008 meta mark set meta mark & 0xfffff000 | 0x111 accept")  # fmt: skip
    assert rule.matches_of("mark") == (NftMatch("meta mark", "!=", ("0x3",), "0xfff"),)
    assert _nft("counter meta mark set ct mark").matches == ()
    assert _nft("ct mark 1337 counter meta mark set ct mark").matches_of("ct mark") == (
        NftMatch("ct mark", None, ("1337",)),
    )
    assert _nft('comment "skuid 1 return" accept').matches == ()


def test_block_form_fills_the_same_fields() -> None:
    text = """table inet t {
    chain out {
        type nat hook output priority -100; policy accept;
        meta skuid 1337 counter return
        tcp dport { 80, 8080 } counter redirect to :15001
    }
}
"""
    rules = parse_nft(text, "t.nft").rules
    assert rules[0].skuid == NftMatch("meta skuid", None, ("1337",))
    assert rules[0].verdict == "return"
    assert rules[1].redirect_port == 15001
    assert rules[1].destination_ports == (PortRange(80, 80), PortRange(8080, 8080))


def test_shared_istio_rules_both_syntaxes_agree() -> None:
    """The iptables and nft forms of each shared Istio case name the same ports and owners."""
    rules = shared_dir() / "rules"
    for xt_path in sorted((rules / "sidecar-iptables").glob("*.v4.rules")):
        nft_path = rules / "sidecar-nft" / xt_path.name.replace(".v4.rules", ".nft")
        xt = parse_iptables(xt_path.read_text(), str(xt_path))
        nft = parse_nft(nft_path.read_text(), str(nft_path))
        xt_rules = [r for t in xt.tables for r in t.rules]
        redirects = {r.redirect_port for r in xt_rules} - {None}
        assert redirects == {r.redirect_port for r in nft.rules} - {None}, xt_path.name
        tproxies = {r.tproxy_port for r in xt_rules} - {None}
        assert tproxies == {r.tproxy_port for r in nft.rules} - {None}, xt_path.name
        uids = {r.uid_owner.value for r in xt_rules if r.uid_owner and not r.uid_owner.negated}
        skuids = {v for r in nft.rules if r.skuid and not r.skuid.negated for v in r.skuid.values}
        assert uids == skuids, xt_path.name
        if "tproxy" not in xt_path.name:
            dports = {p for r in xt_rules for p in r.destination_ports}
            assert dports == {p for r in nft.rules for p in r.destination_ports}, xt_path.name


def test_parse_rule_line_reads_one_rule_alone() -> None:
    rule = parse_rule_line("iptables -t nat -I MESH 2 -m owner ! --uid-owner 7 -j RETURN")
    assert rule is not None
    assert (rule.table, rule.chain, rule.command, rule.jump) == ("nat", "MESH", "-I", "RETURN")
    assert rule.uid_owner == XtOption("--uid-owner", ("7",), True, "owner")
    assert rule.spec == ("-m", "owner", "!", "--uid-owner", "7", "-j", "RETURN")
    alone = parse_rule_line("-A X -p tcp -j ISTIO_REDIRECT")
    assert alone is not None and alone.target == "ISTIO_REDIRECT"  # no chain known: a target
    known = parse_rule_line("-A X -p tcp -j ISTIO_REDIRECT", chains={"ISTIO_REDIRECT"})
    assert known is not None and known.target is None and known.jump == "ISTIO_REDIRECT"
    for other in ("# comment", "*nat", ":X - [0:0]", "-N X", "iptables -P OUTPUT ACCEPT", ""):
        assert parse_rule_line(other) is None
    with pytest.raises(InputError, match="needs a chain name"):
        parse_rule_line("-A -j RETURN")


def test_options_are_read_from_the_spec_on_demand() -> None:
    rule = _xt("-A ISTIO_OUTPUT -s 10.0.0.0/8 -p tcp -m tcp --dport 80 -j ISTIO_REDIRECT")
    assert rule.option_rows == (
        ("-s", ("10.0.0.0/8",), False, None),
        ("-p", ("tcp",), False, None),
        ("--dport", ("80",), False, "tcp"),
    )
    assert spec_options(rule.spec, {"ISTIO_REDIRECT"}) == rule.option_rows
    assert XtRule(1, "nat", "X", None, (), None, "-A X").options == ()


def test_restore_and_command_forms_carry_the_same_options() -> None:
    line = "-A ISTIO_OUTPUT -o lo -p tcp ! --dport 53 -m owner ! --uid-owner 1337 -j RETURN"
    restore = _xt(line)
    command = (
        parse_iptables(f"iptables -t nat -N ISTIO_OUTPUT\niptables -t nat {line}", "cmds")
        .tables[0]
        .rules[0]
    )
    assert restore.options == command.options and restore.jump == command.jump


def test_table_header_and_chain_declaration() -> None:
    assert [table_header(x) for x in ("*nat", "* mangle ", ":X - [0:0]")] == ["nat", "mangle", None]
    assert chain_declaration(":ISTIO_OUTPUT - [0:0]") == ["ISTIO_OUTPUT", "-", "[0:0]"]
    assert chain_declaration("-A X") is None
