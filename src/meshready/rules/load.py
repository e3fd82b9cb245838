"""Read rules from files or profiles, telling the syntax from the name or the content."""

from __future__ import annotations

import os

from meshready.boundedio import read_text
from meshready.errors import InputError
from meshready.knowledge.profiles import PROFILES, Profile
from meshready.knowledge.requests import Family
from meshready.rules.iptables_parser import parse_iptables
from meshready.rules.model import Ruleset
from meshready.rules.nft_parser import parse_nft

_PREFIXES = {"iptables": Family.IPV4, "ip6tables": Family.IPV6, "nft": None}
_NFT_STARTS = ("add ", "table ", "flush ", "delete ", "insert ", "create ", "define ", "destroy ")


def parse_rules_text(text: str, source: str, syntax: str | None = None) -> Ruleset:
    """``syntax``: "iptables", "ip6tables", "nft", or None to detect."""
    if syntax is None:
        syntax = detect_syntax(text, source)
    if syntax == "nft":
        return parse_nft(text, source)
    return parse_iptables(text, source, _PREFIXES.get(syntax) if syntax else None)


def detect_syntax(text: str, source: str) -> str | None:
    if source.endswith(".nft"):
        return "nft"
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith(_NFT_STARTS):
            return "nft"
        if stripped.startswith(("*", ":", "-", "COMMIT", "iptables", "ip6tables")):
            return None  # iptables; the family is detected by the parser
        raise InputError(source, "neither iptables-restore nor nft syntax", 1)
    raise InputError(source, "no rules in this file")


def load_rules_file(spec: str) -> Ruleset:
    """``FILE``, or ``iptables:FILE``, ``ip6tables:FILE``, ``nft:FILE`` to say the syntax."""
    syntax: str | None = None
    path = spec
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in _PREFIXES:
        syntax, path = prefix, rest
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
