"""The rules a probe applies: their text per file, in the syntax of the tool that applies them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from meshready.assess.plan import NeedsSpec
from meshready.boundedio import read_text
from meshready.errors import InputError
from meshready.knowledge.iptables import COMMANDS, PROGRAMS, TABLE_OPTIONS, WAIT_OPTIONS
from meshready.knowledge.requests import Family
from meshready.rules.load import RuleSyntax, get_profile
from meshready.rules.model import NftRule, NftRuleset, Ruleset, XtRule, XtRuleset
from meshready.rules.xt_spec import split_line


@dataclass(frozen=True)
class RuleText:
    source: str
    kind: RuleSyntax  # what applies it: iptables-restore, ip6tables-restore or nft
    text: str  # iptables-restore input or an nft script
    # the same rules parsed; None for the probe's own scripts
    ruleset: Ruleset | None = field(default=None, compare=False, repr=False)


def rule_texts(spec: NeedsSpec) -> list[RuleText]:
    """The rules behind ``spec`` as text, each with the syntax to apply it with."""
    texts: list[str] = []
    if spec.profile is not None:
        profile = get_profile(spec.profile)
        texts = [profile.read(f) for f in profile.files]
    else:
        for source in spec.rules:
            texts.append(read_text(source, errors="strict"))
    out: list[RuleText] = []
    for ruleset, text in zip(spec.rulesets, texts, strict=True):
        if isinstance(ruleset, NftRuleset):
            out.append(RuleText(ruleset.source, RuleSyntax.NFT, text, ruleset))
        else:
            ipv6 = ruleset.family is Family.IPV6
            kind = RuleSyntax.IP6TABLES if ipv6 else RuleSyntax.IPTABLES
            out.append(RuleText(ruleset.source, kind, to_restore(text, ruleset), ruleset))
    return out


_NEEDS_QUOTES = frozenset("\"'\\")


def _quote(token: str) -> str:
    """Quote a token the way iptables-restore reads it (double quotes only)."""
    if token and not any(c.isspace() or c in _NEEDS_QUOTES for c in token):
        return token
    return '"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"'


def join_tokens(tokens: Sequence[str]) -> str:
    """One iptables-restore rule line from its tokens."""
    return " ".join(_quote(t) for t in tokens)


def to_restore(text: str, ruleset: XtRuleset | None = None) -> str:
    """iptables-restore input from ``text``; ``iptables ...`` command lines are converted."""
    lines = [ln.strip() for ln in text.splitlines()]
    commands = [ln for ln in lines if ln and not ln.startswith("#")]
    if not any(ln.split(None, 1)[0] in PROGRAMS for ln in commands):
        return text
    source = ruleset.source if ruleset else "rules"
    tables: dict[str, tuple[list[str], list[str]]] = {}
    for line in commands:
        tokens = split_line(line, source)
        if not tokens or tokens[0] not in PROGRAMS:
            raise InputError(source, f"mixes iptables commands with other lines: {line[:60]!r}")
        tokens = tokens[1:]
        table = "filter"
        cleaned: list[str] = []
        # A restore line takes no table or wait option, so they come out wherever they stand. Not
        # the parser's reading: it takes a table only right after the program and a wait option
        # (with whatever word follows) as an option of the rule, which would change this text.
        it = iter(range(len(tokens)))
        for i in it:
            tok = tokens[i]
            if tok in TABLE_OPTIONS and i + 1 < len(tokens):
                table = tokens[i + 1]
                next(it, None)
            elif tok in WAIT_OPTIONS:
                if i + 1 < len(tokens) and tokens[i + 1].isdigit():
                    next(it, None)
            else:
                cleaned.append(tok)
        decls, rules = tables.setdefault(table, ([], []))
        if not cleaned:
            continue
        command = COMMANDS.get(cleaned[0])
        if command == "-N" and len(cleaned) > 1:
            decls.append(f":{cleaned[1]} - [0:0]")
        elif command == "-P":
            continue
        else:
            rules.append(join_tokens(cleaned))
    out: list[str] = []
    for table, (decls, rules) in tables.items():
        out += [f"*{table}", *decls, *rules, "COMMIT"]
    return "\n".join(out) + "\n"


def _parsed_rules(texts: Sequence[RuleText]) -> Iterator[XtRule | NftRule]:
    """Every parsed rule behind ``texts``, file by file, in the parser's order."""
    for rt in texts:
        if isinstance(rt.ruleset, NftRuleset):
            yield from rt.ruleset.rules
        elif rt.ruleset is not None:
            for table in rt.ruleset.tables:
                yield from table.rules


def redirect_ports(texts: Sequence[RuleText]) -> list[int]:
    """Ports the rules REDIRECT to (iptables ``--to-ports``, nft ``redirect to :PORT``)."""
    ports: list[int] = []
    for rule in _parsed_rules(texts):
        port = rule.redirect_port
        if port is not None and port not in ports:
            ports.append(port)
    return ports


def candidate_ports(texts: Sequence[RuleText]) -> list[int]:
    """Destination ports the rules name (``--dport``, ``--dports``, nft ``dport``): some rules
    capture only those. Ports the rules redirect to are left out, and so are rules that match a
    port with ``!`` (their ports are the ones NOT captured); of a range, its first port."""
    targets = set(redirect_ports(texts))
    found: list[int] = []
    for rule in _parsed_rules(texts):
        if rule.negates_destination_port:
            continue
        for ports in rule.destination_ports:
            port = ports.first
            if 0 < port < 65536 and port not in targets and port not in found:
                found.append(port)
    return found


def uses_owner(texts: Sequence[RuleText]) -> bool:
    """Whether any rule matches on the socket owner's uid (iptables ``owner``, nft ``skuid``)."""
    return any(
        (rule.uid_owner if isinstance(rule, XtRule) else rule.skuid) is not None
        for rule in _parsed_rules(texts)
    )
