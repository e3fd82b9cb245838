"""Read rules from files or profiles, telling the syntax from the name or the content."""

from __future__ import annotations

import os
from enum import StrEnum

from meshready.boundedio import read_text
from meshready.errors import InputError
from meshready.knowledge.profiles import PROFILES, Profile
from meshready.knowledge.requests import Family
from meshready.rules.iptables_parser import parse_iptables
from meshready.rules.model import Ruleset
from meshready.rules.nft_parser import parse_nft


class RuleSyntax(StrEnum):
    """The syntax of a rules file, as ``--rules iptables:|ip6tables:|nft:FILE`` names it; also the
    kind of rules a probe applies (with iptables-restore, ip6tables-restore or nft)."""

    IPTABLES = "iptables"
    IP6TABLES = "ip6tables"
    NFT = "nft"


_FAMILIES = {RuleSyntax.IPTABLES: Family.IPV4, RuleSyntax.IP6TABLES: Family.IPV6}
_PREFIXES = frozenset(syntax.value for syntax in RuleSyntax)
_NFT_STARTS = ("add ", "table ", "flush ", "delete ", "insert ", "create ", "define ", "destroy ")


def parse_rules_text(text: str, source: str, syntax: RuleSyntax | None = None) -> Ruleset:
    """``syntax``: None to detect it."""
    if syntax is None:
        syntax = detect_syntax(text, source)
    if syntax == RuleSyntax.NFT:
        return parse_nft(text, source)
    return parse_iptables(text, source, _FAMILIES.get(syntax) if syntax else None)


def detect_syntax(text: str, source: str) -> RuleSyntax | None:
    """nft, or None for iptables (whose family the parser tells)."""
    if source.endswith(".nft"):
        return RuleSyntax.NFT
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith(_NFT_STARTS):
            return RuleSyntax.NFT
        if stripped.startswith(("*", ":", "-", "COMMIT", "iptables", "ip6tables")):
            return None  # iptables; the family is detected by the parser
        raise InputError(source, "neither iptables-restore nor nft syntax", 1)
    raise InputError(source, "no rules in this file")


def load_rules_file(spec: str) -> Ruleset:
    """``FILE``, or ``iptables:FILE``, ``ip6tables:FILE``, ``nft:FILE`` to say the syntax."""
    syntax: RuleSyntax | None = None
    path = spec
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in _PREFIXES:
        syntax, path = RuleSyntax(prefix), rest
    if not os.path.lexists(path):
        raise InputError(path, "no such file")
    text = read_text(path, errors="strict")  # bounded; a FIFO or device is refused, never read
    return parse_rules_text(text, path, syntax)


def profile_rulesets(profile: Profile) -> list[Ruleset]:
    return [parse_rules_text(profile.read(f), f"profile:{profile.name}/{f}") for f in profile.files]


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError as exc:
        raise InputError(
            "--profile", f"unknown profile {name!r} (known: {', '.join(sorted(PROFILES))})"
        ) from exc
