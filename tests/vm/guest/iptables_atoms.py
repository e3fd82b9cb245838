"""One rule per extension usage found in the shared rules and the profiles: the units
measure_iptables.py measures. Each atom's rule sits in a user chain MR of its table, jumped to from
the built-in chain its target is valid in (REDIRECT: nat OUTPUT; TPROXY: mangle PREROUTING)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Atom:
    id: str
    family: str  # v4 | v6
    table: str
    rule: str  # after "-A MR "


_FROM = {"nat": "OUTPUT", "mangle": "PREROUTING", "raw": "PREROUTING"}

_SHAPES: list[tuple[str, str, dict[str, str]]] = [
    # id, table, rule per family ({"": both, "v4": ..., "v6": ...})
    ("addr-iface", "nat", {"v4": "-o lo -s 127.0.0.6/32 ! -d 127.0.0.1/32 -j RETURN",
                           "v6": "-o lo -s ::6/128 ! -d ::1/128 -j RETURN"}),
    ("proto-tcp", "nat", {"": "-p tcp -j RETURN"}),
    ("tcp-dport", "nat", {"": "-p tcp --dport 15008 -j RETURN"}),
    ("tcp-not-dport", "nat", {"": "-p tcp ! --dport 53 -j RETURN"}),
    ("m-tcp", "nat", {"": "-p tcp -m tcp -j ACCEPT"}),
    ("m-tcp-dport", "nat", {"": "-p tcp -m tcp --dport 15008 -j RETURN"}),
    ("udp-dport", "nat", {"": "-p udp --dport 53 -j RETURN"}),
    ("udp-sport", "raw", {"": "-p udp --sport 15053 -j RETURN"}),
    ("m-udp-dport", "nat", {"": "-p udp -m udp --dport 53 -j RETURN"}),
    ("mark", "nat", {"": "-m mark --mark 0x539/0xfff -j RETURN"}),
    ("not-mark", "nat", {"": "-m mark ! --mark 0x3/0xfff -j RETURN"}),
    ("owner-uid", "nat", {"": "-m owner --uid-owner 1337 -j RETURN"}),
    ("not-owner-gid", "nat", {"": "-m owner ! --gid-owner 1337 -j RETURN"}),
    ("multiport", "nat", {"": "-p tcp -m multiport --dports 53,15008 -j RETURN"}),
    ("not-multiport", "nat", {"": "-p tcp -m multiport ! --dports 53,15008 -j RETURN"}),
    ("comment", "nat", {"": '-m comment --comment "meshready atom" -j RETURN'}),
    ("conntrack", "mangle", {"": "-p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"}),
    ("connmark", "mangle", {"": "-m connmark --mark 0x111/0xfff -j RETURN"}),
    ("REDIRECT", "nat", {"": "-p tcp -j REDIRECT --to-ports 15001"}),
    ("MARK", "mangle", {"": "-p tcp -j MARK --set-mark 0x539"}),
    ("CONNMARK-set", "mangle", {"": "-j CONNMARK --set-xmark 0x111/0xfff"}),
    ("CONNMARK-restore", "mangle", {"": "-j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff"}),
    ("TPROXY", "mangle", {"": "-p tcp -j TPROXY --on-port 15006 --tproxy-mark 0x111/0xfff"}),
    ("CT", "raw", {"": "-p udp -j CT --zone 1"}),
]  # fmt: skip

ATOMS: list[Atom] = [
    Atom(f"{sid}.{fam}", fam, table, rules.get(fam, rules.get("", "")))
    for fam in ("v4", "v6")
    for table in ("nat", "mangle", "raw")  # grouped by table: one clean start per group
    for sid, t, rules in _SHAPES
    if t == table and (fam in rules or "" in rules)
]


def atom_rules(atom: Atom, base_only: bool = False) -> str:
    """iptables-restore input: the table, chain MR jumped to from a built-in chain, the atom."""
    lines = [f"*{atom.table}", ":MR - [0:0]", f"-A {_FROM[atom.table]} -j MR"]
    if not base_only:
        lines.append(f"-A MR {atom.rule}")
    return "\n".join([*lines, "COMMIT", ""])
