"""Parsed rules, independent of the syntax they were written in."""

from __future__ import annotations

from dataclasses import dataclass, field

from meshready.knowledge.requests import Family


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


@dataclass(frozen=True)
class NftRule:
    family: str
    table: str
    chain: str
    expressions: tuple[str, ...]  # possibly modular expressions the rule uses
    line: int
    text: str


@dataclass
class NftRuleset:
    source: str
    tables: list[tuple[str, str, int]] = field(default_factory=list)  # (family, name, line)
    chains: list[NftChain] = field(default_factory=list)
    rules: list[NftRule] = field(default_factory=list)


Ruleset = XtRuleset | NftRuleset
