"""Parsed rules, independent of the syntax they were written in.

Besides what decides kernel modules (matches, targets, expressions), a rule keeps the options and
statements later layers read: the ports it redirects to and matches, the owner it matches, the mark
it matches. Those layers read them here, never from the rule text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property

from meshready.knowledge.requests import Family
from meshready.rules.xt_spec import OptionRow, line_spec, spec_options

# An owner id as written: a number or a range "1000-1999" (iptables-extensions(8) "owner",
# nft(8) "META EXPRESSIONS"); a name ("root") is no id.
_LEADING_ID = re.compile(r"(\d+)\b")


@dataclass(frozen=True, slots=True)
class PortRange:
    """A port or an inclusive port range a rule matches (``80`` is ``PortRange(80, 80)``)."""

    first: int
    last: int


def port_ranges(value: str, range_separator: str = ":") -> tuple[PortRange, ...]:
    """The ports in ``value``: a list ``a,b`` of ports or ranges ``a:b`` (iptables) or ``a-b`` (nft).

    An iptables range may leave out a bound (``1024:`` is 1024 to 65535, iptables-extensions(8)
    "tcp"). Parts that are no port number (service names, empty parts) are left out.
    """
    out: list[PortRange] = []
    for part in value.split(","):
        first, sep, last = part.strip().partition(range_separator)
        if sep and range_separator == ":":
            first, last = first or "0", last or "65535"
        elif not sep:
            last = first
        if first.isdigit() and last.isdigit() and int(first) <= int(last) < 65536:
            out.append(PortRange(int(first), int(last)))
    return tuple(out)


def leading_id(value: str) -> int | None:
    """The id an owner match starts with: ``1337`` for ``1337`` and ``1337-1340``; None for names."""
    match = _LEADING_ID.match(value)
    return int(match.group(1)) if match else None


@dataclass(frozen=True, slots=True)
class XtOption:
    """One option of an iptables rule as written: ``! --uid-owner 1337``, ``--to-ports 15001``."""

    name: str  # as written, e.g. "--to-ports", "-s", "--dport"
    values: tuple[str, ...] = ()  # its arguments, unquoted
    negated: bool = False  # "!" before it (or before its argument, the old syntax)
    # The match or target extension it belongs to ("tcp", "owner", "REDIRECT"); None for core
    # options of the rule itself (-s, -d, -i, -o, -p ...).
    owner: str | None = None

    @property
    def value(self) -> str:
        """The first argument ("" for an option without one, like ``--syn``)."""
        return self.values[0] if self.values else ""


@dataclass(frozen=True, slots=True)
class MarkMatch:
    """``-m mark [!] --mark VALUE[/MASK]``: the packet mark the rule matches."""

    value: int
    mask: int | None
    negated: bool


# Options of the implicit protocol matches and of multiport that name destination ports
# (iptables-extensions(8), "tcp", "udp", "multiport"); multiport takes lists of ports/ranges.
_DPORT_OPTIONS = frozenset({"--dport", "--dports", "--destination-port", "--destination-ports"})
_TARGET_PORT_OPTIONS = {"REDIRECT": ("--to-ports", "--to-port"), "TPROXY": ("--on-port",)}


@dataclass(frozen=True)
class XtRule:
    """One iptables rule: the extensions it uses, where it was written."""

    line: int
    table: str
    chain: str
    protocol: str | None
    matches: tuple[str, ...]  # explicit (-m) and implicit (-p tcp --dport) matches, in order
    target: str | None  # extension target name; None for standard verdicts and user chains
    text: str
    # matches given without any option of their own (`-p tcp -m tcp`): iptables-nft cannot
    # translate those natively and sends them through nft_compat
    bare_matches: tuple[str, ...] = ()
    jump: str | None = None  # the -j/-g argument as written: verdicts and user chains included
    command: str = "-A"  # the command as written: "-A", "--append", "-I" ...

    @property
    def spec(self) -> tuple[str, ...]:
        """The rule specification after the chain (and rule number), unquoted: what ``options``
        reads; taken from ``text`` when asked for."""
        return line_spec(self.text)

    @cached_property
    def option_rows(self) -> tuple[OptionRow, ...]:
        """``options`` as plain tuples (name, values, negated, owner), read on first use."""
        # The parse took the jump for a chain exactly when it found no target extension.
        chains = (self.jump,) if self.target is None and self.jump is not None else ()
        return spec_options(self.spec, chains, self.line)

    @property
    def options(self) -> tuple[XtOption, ...]:
        """Every option of the rule in order, core and extension ones (not -m, -j, -g, -c)."""
        return tuple(XtOption(*row) for row in self.option_rows)

    def options_named(self, *names: str, owner: str | None = None) -> tuple[XtOption, ...]:
        """The options called one of ``names`` (of extension ``owner`` when given), in order."""
        return tuple(
            XtOption(*row)
            for row in self.option_rows
            if row[0] in names and (owner is None or row[3] == owner)
        )

    def target_values(self, *names: str) -> tuple[str, ...]:
        """The arguments of the target's first option called one of ``names`` (() if none)."""
        if self.target is None:
            return ()
        found = self.options_named(*names, owner=self.target)
        return found[0].values if found else ()

    def _target_port(self, target: str) -> int | None:
        if self.target != target:
            return None
        values = self.target_values(*_TARGET_PORT_OPTIONS[target])
        # "--to-ports 15001-15002" is a range (iptables-extensions(8), REDIRECT): its first port
        port = leading_id(values[0]) if values else None
        return port if port is not None and 0 < port < 65536 else None

    @property
    def redirect_port(self) -> int | None:
        """``-j REDIRECT --to-ports P`` (or ``--to-port``): P, the first of a range; else None."""
        return self._target_port("REDIRECT")

    @property
    def tproxy_port(self) -> int | None:
        """``-j TPROXY --on-port P``: P; else None."""
        return self._target_port("TPROXY")

    @property
    def destination_ports(self) -> tuple[PortRange, ...]:
        """Destination ports matched without ``!``: ``--dport``, multiport ``--dports`` ..."""
        out: list[PortRange] = []
        for option in self.options:
            if option.name in _DPORT_OPTIONS and not option.negated:
                out.extend(port_ranges(option.value))
        return tuple(out)

    @property
    def negates_destination_port(self) -> bool:
        """True when the rule matches some destination port with ``!`` (``! --dport 53``)."""
        return any(o.name in _DPORT_OPTIONS and o.negated for o in self.options)

    @property
    def uid_owner(self) -> XtOption | None:
        """``-m owner [!] --uid-owner ID``; ``leading_id(option.value)`` is the number."""
        found = self.options_named("--uid-owner", owner="owner")
        return found[0] if found else None

    @property
    def gid_owner(self) -> XtOption | None:
        """``-m owner [!] --gid-owner ID``."""
        found = self.options_named("--gid-owner", owner="owner")
        return found[0] if found else None

    @property
    def mark(self) -> MarkMatch | None:
        """``-m mark [!] --mark VALUE[/MASK]``, numbers as iptables reads them (0x.. hex)."""
        found = self.options_named("--mark", owner="mark")
        if not found:
            return None
        value, _, mask = found[0].value.partition("/")
        try:
            return MarkMatch(int(value, 0), int(mask, 0) if mask else None, found[0].negated)
        except ValueError:
            return None


@dataclass
class XtTable:
    name: str
    line: int
    builtin_chains_used: set[str] = field(default_factory=set)
    rules: list[XtRule] = field(default_factory=list)


@dataclass
class XtRuleset:
    """Rules for iptables or ip6tables (one family)."""

    source: str
    family: Family
    tables: list[XtTable] = field(default_factory=list)


@dataclass(frozen=True)
class NftChain:
    family: str
    table: str
    name: str
    chain_type: str | None  # None for regular (non-base) chains
    line: int


@dataclass(frozen=True, slots=True)
class NftMatch:
    """One relational expression of an nft rule: ``tcp dport != { 53, 15008 }``, ``meta skuid 3``."""

    selector: str  # as written: "tcp dport", "th dport", "meta skuid", "skuid", "ct mark"
    operator: str | None  # "!=", "==", "eq", "<" ...; None when implicit (equality)
    values: tuple[str, ...]  # one value, or the elements of an anonymous set "{ a, b }"
    mask: str | None = None  # ``meta mark & 0xfff == 0x3``: "0xfff"

    @property
    def negated(self) -> bool:
        return self.operator in ("!=", "ne")

    @property
    def key(self) -> str:
        """The selector without a leading ``meta``: "skuid" for ``meta skuid`` and ``skuid``."""
        return self.selector.removeprefix("meta ")


@dataclass(frozen=True)
class NftRule:
    family: str
    table: str
    chain: str
    expressions: tuple[str, ...]  # possibly modular expressions the rule uses
    line: int
    text: str
    matches: tuple[NftMatch, ...] = ()  # port, owner and mark matches, in order
    redirect_port: int | None = None  # ``redirect to :P``
    tproxy_port: int | None = None  # ``tproxy [ip|ip6] to [ADDR]:P``
    verdict: str | None = None  # the last verdict keyword: "return", "accept", "jump" ...
    verdict_chain: str | None = None  # the chain of ``jump``/``goto``

    def matches_of(self, *keys: str) -> tuple[NftMatch, ...]:
        """The matches whose ``key`` is one of ``keys`` ("tcp dport", "skuid", "mark" ...)."""
        return tuple(m for m in self.matches if m.key in keys)

    def _dport_matches(self) -> tuple[NftMatch, ...]:
        return tuple(m for m in self.matches if m.key.endswith("dport"))

    @property
    def destination_ports(self) -> tuple[PortRange, ...]:
        """Destination ports matched without ``!=``: ``tcp dport 80``, ``th dport { 53, 80 }``."""
        out: list[PortRange] = []
        for match in self._dport_matches():
            if not match.negated:
                for value in match.values:
                    out.extend(port_ranges(value, "-"))
        return tuple(out)

    @property
    def negates_destination_port(self) -> bool:
        """True when the rule matches some destination port with ``!=``."""
        return any(m.negated for m in self._dport_matches())

    @property
    def skuid(self) -> NftMatch | None:
        """The first ``[meta] skuid [OP] ID`` match."""
        found = self.matches_of("skuid")
        return found[0] if found else None

    @property
    def skgid(self) -> NftMatch | None:
        """The first ``[meta] skgid [OP] ID`` match."""
        found = self.matches_of("skgid")
        return found[0] if found else None


@dataclass
class NftRuleset:
    source: str
    tables: list[tuple[str, str, int]] = field(default_factory=list)  # (family, name, line)
    chains: list[NftChain] = field(default_factory=list)
    rules: list[NftRule] = field(default_factory=list)


Ruleset = XtRuleset | NftRuleset
