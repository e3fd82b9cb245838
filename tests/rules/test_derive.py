"""rules/derive.py, row by row: a rule and a backend in, every request derive gives out.

Hand-written rows name each request exactly (all candidates, in the kernel's order) and whether the
rules fail without it (``REQ``), only warn (``WARN``, iptables-nft from 1.8.9 on) or it is asked for
by the iptables-legacy binary itself (``BIN``). The facts behind them are cited in
knowledge/requests.py, knowledge/iptables.py and knowledge/iptables_versions.py.

Measured rows: every shared rules file and profile, resolved through the real Debian index the way
the kernel resolves a request (each candidate in order, through modules.dep, .alias and .builtin),
against what real kernels did (tests/data/expected; how they were measured: tests/vm/README.md and
scripts/vm/measure-iptables). The per-extension measurements are checked in
test_derive_iptables_nft.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from meshready.errors import InputError
from meshready.host.modindex import ModuleIndex, load_index
from meshready.knowledge.nftables import CORE_CHAIN_TYPES, CORE_EXPRESSIONS
from meshready.knowledge.requests import Backend, Need, Request
from meshready.rules.derive import needs_for
from meshready.rules.load import RuleSyntax, load_rules_file, parse_rules_text
from tests.conftest import DATA, KERNELS, REPO, shared_dir

REQ, WARN, BIN = "required", "warns", "asked by the binary"


def _kind(need: Need) -> str:
    if need.request.by_binary:
        return BIN
    return REQ if need.required else WARN


def _derive(
    text: str, syntax: str, backend: Backend, version: str = "1.8.9", source: str = "t"
) -> dict[str, str]:
    needs = needs_for([parse_rules_text(text, source, RuleSyntax(syntax))], backend, version)
    out = {" ".join(n.request.candidates): _kind(n) for n in needs}
    assert len(out) == len(needs), "a request derived twice"
    return out


@dataclass(frozen=True)
class Row:
    id: str
    backend: Backend
    syntax: str  # "iptables", "ip6tables" or "nft"
    rules: str
    requests: dict[str, str]
    version: str = "1.8.9"


NFT_BASE = {"net-pf-16-proto-12": REQ, "nfnetlink-subsys-10": REQ}
COUNTER_V4 = {"nft-expr-2-counter nft-expr-counter": REQ}

ROWS = [
    # ---------------------------------------------------------------- iptables-legacy
    Row(
        "legacy: nat table, implicit tcp match, REDIRECT",
        Backend.LEGACY,
        "iptables",
        "*nat\n-A OUTPUT -p tcp --dport 80 -j REDIRECT --to-ports 15001\nCOMMIT\n",
        {"ip_tables": BIN, "iptable_nat": REQ, "ipt_tcp": REQ, "ipt_REDIRECT": REQ},
    ),
    Row(
        "legacy: a user chain, udp, owner and CT in raw",
        Backend.LEGACY,
        "iptables",
        "*raw\n:MESH - [0:0]\n-A OUTPUT -j MESH\n"
        "-A MESH -p udp --dport 53 -m owner --uid-owner 1337 -j CT --zone 1\nCOMMIT\n",
        {"ip_tables": BIN, "iptable_raw": REQ, "ipt_udp": REQ, "ipt_owner": REQ, "ipt_CT": REQ},
    ),
    Row(
        "legacy: icmp is ip_tables' own, state its own module, ACCEPT a verdict",
        Backend.LEGACY,
        "iptables",
        "*filter\n-A INPUT -p icmp --icmp-type 8 -m state --state NEW -j ACCEPT\nCOMMIT\n",
        {"ip_tables": BIN, "iptable_filter": REQ, "ipt_state": REQ},
    ),
    Row(
        "legacy: IPv6 names, icmp6 is ip6_tables' own",
        Backend.LEGACY,
        "ip6tables",
        "*mangle\n-A PREROUTING -p tcp -m socket --transparent -j MARK --set-mark 1\n"
        "-A PREROUTING -p tcp -j TPROXY --on-port 15006 --tproxy-mark 1/1\nCOMMIT\n"
        "*filter\n-A INPUT -p icmpv6 --icmpv6-type 128 -j ACCEPT\nCOMMIT\n",
        {
            "ip6_tables": BIN,
            "ip6table_mangle": REQ,
            "ip6t_socket": REQ,
            "ip6t_MARK": REQ,
            "ip6t_TPROXY": REQ,
            "ip6table_filter": REQ,
        },
    ),
    # ---------------------------------------------------------------- iptables-nft
    Row(
        "nft 1.8.9: ports translate natively; their revision queries only warn",
        Backend.NFT,
        "iptables",
        "*nat\n-A OUTPUT -p tcp --dport 15008 -j RETURN\nCOMMIT\n",
        {
            **NFT_BASE,
            "nft-chain-2-nat": REQ,
            **COUNTER_V4,
            "nfnetlink-subsys-11": WARN,
            "ipt_tcp": WARN,
            "nft-expr-2-payload nft-expr-payload": REQ,
            "nft-expr-2-cmp nft-expr-cmp": REQ,
        },
    ),
    Row(
        "nft 1.8.7: the same rule fails without the revision answer",
        Backend.NFT,
        "iptables",
        "*nat\n-A OUTPUT -p tcp --dport 15008 -j RETURN\nCOMMIT\n",
        {
            **NFT_BASE,
            "nft-chain-2-nat": REQ,
            **COUNTER_V4,
            "nfnetlink-subsys-11": REQ,
            "ipt_tcp": REQ,
            "nft-expr-2-payload nft-expr-payload": REQ,
            "nft-expr-2-cmp nft-expr-cmp": REQ,
        },
        version="1.8.7",
    ),
    Row(
        "nft: a bare -m tcp goes through nft_compat, no native translation",
        Backend.NFT,
        "iptables",
        "*filter\n-A INPUT -p tcp -m tcp -j ACCEPT\nCOMMIT\n",
        {**NFT_BASE, **COUNTER_V4, "nfnetlink-subsys-11": REQ, "ipt_tcp": REQ},
    ),
    Row(
        "nft: mark is native and warns, CONNMARK needs nft_compat (one required use wins)",
        Backend.NFT,
        "iptables",
        "*mangle\n-A PREROUTING -m mark --mark 0x1 -j CONNMARK --save-mark\nCOMMIT\n",
        {
            **NFT_BASE,
            **COUNTER_V4,
            "nfnetlink-subsys-11": REQ,
            "ipt_mark": WARN,
            "nft-expr-2-meta nft-expr-meta": REQ,
            "nft-expr-2-cmp nft-expr-cmp": REQ,
            "ipt_CONNMARK": REQ,
        },
    ),
    Row(
        "nft: owner has no native translation",
        Backend.NFT,
        "iptables",
        "*nat\n-A OUTPUT -m owner --uid-owner 1337 -j RETURN\nCOMMIT\n",
        {
            **NFT_BASE,
            "nft-chain-2-nat": REQ,
            **COUNTER_V4,
            "nfnetlink-subsys-11": REQ,
            "ipt_owner": REQ,
        },
    ),
    Row(
        "nft: -m state is sent as the conntrack match",
        Backend.NFT,
        "iptables",
        "*filter\n-A INPUT -m state --state INVALID -j DROP\nCOMMIT\n",
        {**NFT_BASE, **COUNTER_V4, "nfnetlink-subsys-11": REQ, "ipt_conntrack": REQ},
    ),
    Row(
        "nft: mangle OUTPUT is a route chain",
        Backend.NFT,
        "iptables",
        "*mangle\n-A OUTPUT -j MARK --set-mark 1\nCOMMIT\n",
        {
            **NFT_BASE,
            "nft-chain-2-route": REQ,
            **COUNTER_V4,
            "nfnetlink-subsys-11": REQ,
            "ipt_MARK": REQ,
        },
    ),
    Row(
        "nft: IPv6 uses NFPROTO_IPV6 (10) and ip6t_ names; limit is native but unmeasured",
        Backend.NFT,
        "ip6tables",
        "*nat\n-A OUTPUT -p tcp --dport 1 -m limit --limit 1/s -j REDIRECT --to-ports 2\nCOMMIT\n",
        {
            **NFT_BASE,
            "nft-chain-10-nat": REQ,
            "nft-expr-10-counter nft-expr-counter": REQ,
            "nfnetlink-subsys-11": REQ,
            "ip6t_tcp": WARN,
            "nft-expr-10-payload nft-expr-payload": REQ,
            "nft-expr-10-cmp nft-expr-cmp": REQ,
            "ip6t_limit": REQ,
            "nft-expr-10-limit nft-expr-limit": REQ,
            "ip6t_REDIRECT": REQ,
        },
    ),
    # ---------------------------------------------------------------- native nftables
    Row(
        "nftables: inet nat chain and redirect",
        Backend.NFTABLES,
        "nft",
        "table inet t {\n chain c {\n  type nat hook output priority -100;\n"
        "  tcp dport 1 redirect to :15001\n }\n}\n",
        {**NFT_BASE, "nft-chain-1-nat": REQ, "nft-expr-1-redir nft-expr-redir": REQ},
    ),
    Row(
        "nftables: ip6 socket and tproxy in a filter chain (no chain type request)",
        Backend.NFTABLES,
        "nft",
        "table ip6 t {\n chain p {\n  type filter hook prerouting priority mangle;\n"
        "  meta l4proto tcp socket transparent 1 tproxy to :15006 meta mark set 1 accept\n"
        " }\n}\n",
        {
            **NFT_BASE,
            "nft-expr-10-socket nft-expr-socket": REQ,
            "nft-expr-10-tproxy nft-expr-tproxy": REQ,
        },
    ),
    Row(
        "nftables: nat and route chains, masq, ct, limit, log",
        Backend.NFTABLES,
        "nft",
        "table ip t {\n chain c {\n  type nat hook postrouting priority 100;\n  masquerade\n }\n"
        " chain r {\n  type route hook output priority -150;\n"
        "  ct mark set 1 limit rate 1/second log\n }\n}\n",
        {
            **NFT_BASE,
            "nft-chain-2-nat": REQ,
            "nft-chain-2-route": REQ,
            "nft-expr-2-masq nft-expr-masq": REQ,
            "nft-expr-2-ct nft-expr-ct": REQ,
            "nft-expr-2-limit nft-expr-limit": REQ,
            "nft-expr-2-log nft-expr-log": REQ,
        },
    ),
    Row(
        "nftables: an empty table still opens nf_tables",
        Backend.NFTABLES,
        "nft",
        "table inet t {\n}\n",
        NFT_BASE,
    ),
    Row(
        "nft rules are native nftables whatever backend the iptables rules use",
        Backend.LEGACY,
        "nft",
        "table ip t {\n chain c {\n  type filter hook input priority 0;\n  ct state new counter\n"
        " }\n}\n",
        {
            **NFT_BASE,
            "nft-expr-2-ct nft-expr-ct": REQ,
            "nft-expr-2-counter nft-expr-counter": REQ,
        },
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_rule_gives_requests(row: Row) -> None:
    assert _derive(row.rules, row.syntax, row.backend, row.version) == row.requests


PORTS = "*nat\n-A OUTPUT -p udp --dport 53 -j RETURN\nCOMMIT\n"


@pytest.mark.parametrize(
    ("version", "kind"),
    [
        ("1.8.4", REQ),  # older than any measured: taken as the oldest measured (1.8.7)
        ("1.8.7", REQ),
        ("1.8.8", REQ),
        ("1.8.9", WARN),
        ("v1.8.10", WARN),  # Istio's image: as 1.8.9
        ("1.8.11", WARN),
        ("1.9.0", WARN),
    ],
)
def test_iptables_version_decides_what_only_warns(version: str, kind: str) -> None:
    got = _derive(PORTS, "iptables", Backend.NFT, version)
    assert got["ipt_udp"] == kind
    assert got["nfnetlink-subsys-11"] == kind
    assert got["nft-chain-2-nat"] == REQ  # nothing else depends on the version


def test_legacy_and_native_nftables_ignore_the_iptables_version() -> None:
    for version in ("1.8.7", "1.8.11"):
        assert _derive(PORTS, "iptables", Backend.LEGACY, version) == {
            "ip_tables": BIN,
            "iptable_nat": REQ,
            "ipt_udp": REQ,
        }


def test_iptables_rules_refused_by_native_nftables() -> None:
    with pytest.raises(InputError, match="cannot be applied by the native nftables backend"):
        _derive(PORTS, "iptables", Backend.NFTABLES)


def test_reasons_name_every_rule_once_in_order() -> None:
    text = (
        "*nat\n-A OUTPUT -p tcp --dport 1 -j REDIRECT --to-ports 2\n"
        "-A OUTPUT -p tcp --dport 3 -j REDIRECT --to-ports 4\n"
        "-A PREROUTING -p tcp --dport 3 -j REDIRECT --to-ports 4\nCOMMIT\n"
    )
    needs = needs_for([parse_rules_text(text, "f.rules", RuleSyntax.IPTABLES)], Backend.LEGACY)
    assert [n.request.name for n in needs] == [
        "ip_tables",
        "iptable_nat",
        "ipt_tcp",
        "ipt_REDIRECT",
    ]
    by_name = {n.request.name: n.reasons for n in needs}
    assert by_name["ipt_REDIRECT"] == (
        "f.rules:2 -j REDIRECT",
        "f.rules:3 -j REDIRECT",
        "f.rules:4 -j REDIRECT",
    )
    assert by_name["iptable_nat"] == ("f.rules:1 *nat",)


def test_rulesets_add_up_across_families() -> None:
    v4 = parse_rules_text(PORTS, "a.rules", RuleSyntax.IPTABLES)
    v6 = parse_rules_text(PORTS, "b.rules", RuleSyntax.IP6TABLES)
    names = [n.request.name for n in needs_for([v4, v6], Backend.LEGACY)]
    assert names == [
        "ip_tables",
        "iptable_nat",
        "ipt_udp",
        "ip6_tables",
        "ip6table_nat",
        "ip6t_udp",
    ]


# ------------------------------------------------------------------------------ measured rows


@cache
def _index(release: str) -> ModuleIndex:
    return load_index(KERNELS / release)


def _resolve(request: Request, index: ModuleIndex) -> tuple[str, ...]:
    """The modules a request loads: the first candidate the index answers (as the kernel tries
    them, family-specific first); nothing for what nf_tables registers itself."""
    for candidate in request.candidates:
        found = index.lookup(candidate).modules
        if found:
            return found
    kind, _, rest = request.name.removeprefix("nft-").partition("-")
    core = CORE_EXPRESSIONS if kind == "expr" else CORE_CHAIN_TYPES if kind == "chain" else ()
    assert rest.rsplit("-", 1)[-1] in core, f"{request.name}: resolves to nothing"
    return ()


def _modules(needs: list[Need], index: ModuleIndex) -> dict[str, list[Need]]:
    out: dict[str, list[Need]] = {}
    for need in needs:
        for module in _resolve(need.request, index):
            out.setdefault(module, []).append(need)
    return out


NEEDS_RELEASE = "6.1.0-56-cloud-amd64"
NEEDS = json.loads((DATA / "expected" / f"needs-{NEEDS_RELEASE}.json").read_text())


@pytest.mark.parametrize("key", sorted(NEEDS))
def test_shared_file_modules_on_debian_61(key: str) -> None:
    """legacy and native nftables: the modules the rules need directly, each file proved complete
    and minimal in a real guest (tests/vm/test_vm_completeness.py)."""
    name, backend = key.rsplit(":", 1)
    needs = needs_for([load_rules_file(str(shared_dir() / "rules" / name))], Backend(backend))
    assert sorted(_modules(needs, _index(NEEDS_RELEASE))) == NEEDS[key]["direct"]


PROFILES = REPO / "src" / "meshready" / "knowledge" / "data" / "profiles"
NFT_RELEASE = "6.1.0-57-cloud-amd64"
MEASURED = json.loads((DATA / "expected" / f"iptables-nft-{NFT_RELEASE}.json").read_text())


def _measured_file(name: str) -> Path:
    if name.startswith("profile/"):
        return PROFILES / name.removeprefix("profile/")
    return shared_dir() / "rules" / name


@pytest.mark.parametrize("key", sorted(MEASURED))
def test_iptables_nft_file_as_measured(key: str) -> None:
    """iptables-nft, per file and iptables version, against what the kernel logged and loaded."""
    name, version = key.rsplit("@", 1)
    measured = MEASURED[key]
    needs = needs_for([load_rules_file(str(_measured_file(name)))], Backend.NFT, version)
    modules = _modules(needs, _index(NFT_RELEASE))
    # every module a logged request loaded is derived; nothing derived was left unloaded (the rest
    # was loaded as a dependency before its own request came)
    assert set(measured["direct"]) <= set(modules) <= set(measured["loaded"])
    warn_only = sorted(m for m, ns in modules.items() if not any(n.required for n in ns))
    assert warn_only == measured["recommended"]
    # without a warn-only module the rules applied and iptables printed what derive says it would
    for module in warn_only:
        for need in modules[module]:
            assert need.warning in measured["warnings"], (module, need.request.name)
