"""Parse iptables rules: ``iptables-restore`` input, ``iptables-save`` output and ``iptables ...``
command lines (the form istio-cni and older istio-init logs print).

Only what decides kernel modules is kept: tables, built-in chains, matches and targets. Syntax errors
that iptables-restore would also reject raise InputError naming the file and line.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Collection

from meshready.errors import InputError
from meshready.knowledge.iptables import (
    BUILTIN_CHAINS,
    CHAIN_COMMAND_ARGS,
    COMMANDS,
    RULE_COMMANDS,
    TABLES,
)
from meshready.knowledge.requests import Family
from meshready.rules.model import XtRule, XtRuleset, XtTable
from meshready.rules.xt_spec import after_program, read_spec, rule_spec, split_line

_V6_HINT = re.compile(
    r"(^|\s)(-[sd]|--source|--destination)\s+!?\s*[0-9a-fA-F]*:[0-9a-fA-F:]*(/\d+)?"
)
_V4_HINT = re.compile(r"(^|\s)(-[sd]|--source|--destination)\s+!?\s*\d+\.\d+\.\d+\.\d+")


def guess_family(text: str, source: str) -> Family:
    """IPv6 if the file says so: an ip6tables-save header, a ``.v6`` name, ICMPv6, IPv6 addresses."""
    head = text[:4096]
    if "ip6tables-save" in head:
        return Family.IPV6
    if "iptables-save" in head:
        return Family.IPV4
    name = source.rsplit("/", 1)[-1].lower()
    for pattern, family in ((r"[._-]v6([._-]|$)", Family.IPV6), (r"[._-]v4([._-]|$)", Family.IPV4)):
        if re.search(pattern, name):
            return family
    if "icmpv6" in text or "icmp6" in text:
        return Family.IPV6
    if _V6_HINT.search(text) and not _V4_HINT.search(text):
        return Family.IPV6
    if re.search(r"(^|[._-])(ipv6|ip6)([._-]|$)", name):
        return Family.IPV6
    return Family.IPV4


def table_header(line: str) -> str | None:
    """The table a restore line ``*TABLE`` opens (None for any other line); ``line`` stripped."""
    return line[1:].strip() if line.startswith("*") else None


def chain_declaration(line: str) -> list[str] | None:
    """The words of a restore chain declaration ``:CHAIN POLICY [PACKETS:BYTES]`` after its colon
    (None for any other line); ``line`` stripped."""
    return line[1:].split() if line.startswith(":") else None


def parse_iptables(text: str, source: str, family: Family | None = None) -> XtRuleset:
    """Parse iptables-restore input or iptables command lines from ``text``."""
    fam = family or guess_family(text, source)
    ruleset = XtRuleset(source=source, family=fam)
    tables: dict[str, XtTable] = {}
    declared: dict[str, set[str]] = {}
    open_table: XtTable | None = None

    def table_for(name: str, lineno: int) -> XtTable:
        if name not in TABLES:
            raise InputError(source, f"unknown table '{name}' (known: {', '.join(TABLES)})", lineno)
        if name not in tables:
            tables[name] = XtTable(name=name, line=lineno)
            declared[name] = set(BUILTIN_CHAINS[name])
            ruleset.tables.append(tables[name])
        return tables[name]

    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = table_header(line)
        if header is not None:
            if open_table is not None:
                raise InputError(
                    source, f"table '{open_table.name}' opened before COMMIT of the last", lineno
                )
            open_table = table_for(header, lineno)
            continue
        if line == "COMMIT":
            if open_table is None:
                raise InputError(source, "COMMIT outside a table", lineno)
            open_table = None
            continue
        parts = chain_declaration(line)
        if parts is not None:
            if open_table is None:
                raise InputError(source, "chain declaration outside a table", lineno)
            if not parts:
                raise InputError(source, "chain declaration without a name", lineno)
            chain = parts[0]
            declared[open_table.name].add(chain)
            if chain in BUILTIN_CHAINS[open_table.name]:
                open_table.builtin_chains_used.add(chain)
            continue

        program, given_table, tokens = after_program(split_line(line, source, lineno))
        if program is not None:
            # A command line: "iptables [-t TABLE] COMMAND ...".
            if family is None and program.startswith("ip6"):
                ruleset.family = Family.IPV6
            table = table_for(given_table or "filter", lineno)
        elif open_table is not None:
            table = open_table
        elif tokens and tokens[0].startswith("-"):
            raise InputError(source, "rule outside a table (no '*table' line before it)", lineno)
        else:
            raise InputError(source, f"not an iptables-restore line: {line[:60]!r}", lineno)
        _command(
            tokens, table, declared[table.name], source, lineno, line, BUILTIN_CHAINS[table.name]
        )

    if open_table is not None:
        raise InputError(source, f"table '{open_table.name}' has no COMMIT", open_table.line)
    for table in ruleset.tables:
        for rule in table.rules:
            if rule.chain not in declared[table.name]:
                raise InputError(
                    source,
                    f"chain '{rule.chain}' does not exist in table '{table.name}'",
                    rule.line,
                )
    return ruleset


def parse_rule_line(
    line: str,
    table: str = "filter",
    chains: Collection[str] = (),
    source: str = "rule",
    lineno: int = 1,
) -> XtRule | None:
    """One rule read alone: ``-A CHAIN ...`` (restore input) or ``iptables [-t T] -A CHAIN ...``.

    Nothing outside the line is checked (the table and chains need not exist); a jump to a name
    that is neither a standard verdict nor one of ``chains`` is taken as a target extension, as
    iptables does. Returns None for lines that add no rule (comments, headers, chain commands);
    raises InputError for a rule iptables would reject on its own.
    """
    _program, given_table, tokens = after_program(split_line(line.strip(), source, lineno))
    table = given_table or table
    if not tokens or COMMANDS.get(tokens[0]) not in RULE_COMMANDS:
        return None
    holder = XtTable(name=table, line=lineno)
    builtin = BUILTIN_CHAINS.get(table, ())
    _command(tokens, holder, set(chains), source, lineno, line.strip(), builtin)
    return holder.rules[0]


def _command(
    tokens: list[str],
    table: XtTable,
    chains: set[str],
    source: str,
    lineno: int,
    text: str,
    builtin: tuple[str, ...],
) -> None:
    if not tokens:
        return
    written = tokens[0]
    cmd = COMMANDS.get(written)
    if cmd in CHAIN_COMMAND_ARGS:
        nargs = CHAIN_COMMAND_ARGS[cmd]
        if nargs > 0 and len(tokens) < 1 + nargs:
            raise InputError(source, f"{written} needs {nargs} argument(s)", lineno)
        if cmd == "-N":
            chains.add(tokens[1])
        elif cmd == "-E":
            chains.add(tokens[2])
        elif cmd == "-P" and tokens[1] in builtin:
            table.builtin_chains_used.add(tokens[1])
        return
    if cmd not in RULE_COMMANDS:
        raise InputError(source, f"unknown command {written!r}", lineno)
    if len(tokens) < 2 or tokens[1].startswith("-"):
        raise InputError(source, f"{written} needs a chain name", lineno)
    chain = tokens[1]
    rest = rule_spec(tokens)
    if chain in builtin:
        table.builtin_chains_used.add(chain)
    protocol, matches, target, jump, bare = read_spec(rest, chains, source, lineno)
    table.rules.append(
        XtRule(
            line=lineno,
            table=table.name,
            chain=chain,
            protocol=protocol,
            matches=matches,
            target=target,
            text=text,
            bare_matches=bare,
            # interned: a kube-proxy iptables-save repeats a few commands and chain names 300k times
            jump=sys.intern(jump) if jump is not None else None,
            command=sys.intern(written),
        )
    )
