"""Parse iptables rules: ``iptables-restore`` input, ``iptables-save`` output and ``iptables ...``
command lines (the form istio-cni and older istio-init logs print).

Only what decides kernel modules is kept: tables, built-in chains, matches and targets. Syntax errors
that iptables-restore would also reject raise InputError naming the file and line.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection

from meshready.errors import InputError
from meshready.knowledge.iptables import (
    BUILTIN_CHAINS,
    CHAIN_COMMAND_ARGS,
    COMMANDS,
    NUMBERED_RULE_COMMANDS,
    PROTOCOL_MATCH_NAME,
    PROTOCOL_OPTIONS,
    RULE_COMMANDS,
    STANDARD_TARGETS,
    TABLES,
)
from meshready.knowledge.requests import Family
from meshready.rules.model import OptionRow, XtRule, XtRuleset, XtTable

# Core options of a rule that take one argument and never load an extension.
_CORE_WITH_ARG = {
    "-s",
    "--source",
    "--src",
    "-d",
    "--destination",
    "--dst",
    "-i",
    "--in-interface",
    "-o",
    "--out-interface",
    "-w",
    "--wait",
    "-W",
    "--wait-interval",
}
_CORE_NO_ARG = {"-f", "--fragment", "-4", "--ipv4", "-6", "--ipv6", "-v", "--verbose", "-n"}
_BINARIES = {
    "iptables": Family.IPV4,
    "iptables-legacy": Family.IPV4,
    "iptables-nft": Family.IPV4,
    "ip6tables": Family.IPV6,
    "ip6tables-legacy": Family.IPV6,
    "ip6tables-nft": Family.IPV6,
}
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


# A shell word without backslashes: unquoted runs and closed quotes, as shlex (posix) reads them.
_WORD = re.compile(r"""(?:[^\s"']+|"[^"]*"|'[^']*')+""")
_QUOTED = re.compile(r""""([^"]*)"|'([^']*)'""")


def _unquote(match: re.Match[str]) -> str:
    return match.group(1) if match.group(1) is not None else match.group(2)


def split_line(line: str, source: str = "rules", lineno: int | None = None) -> list[str]:
    """The words of one rule line as iptables-restore and a shell read them (quotes removed).

    Raises InputError (``source``, ``lineno``) for a quote or escape left open.
    """
    if '"' not in line and "'" not in line and "\\" not in line:
        return line.split()  # the common case; shlex is 50x slower
    if "\\" not in line and not _WORD.sub("", line).strip():
        # quotes but no backslash (kube-proxy's comments): the same words, 20x faster than shlex
        return [
            _QUOTED.sub(_unquote, word) if '"' in word or "'" in word else word
            for word in _WORD.findall(line)
        ]
    try:
        return shlex.split(line, comments=False, posix=True)
    except ValueError as exc:
        raise InputError(source, f"cannot split rule ({exc})", lineno) from exc


# tests/hardening checks the splitter under its old private name.
_split = split_line


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

        tokens = split_line(line, source, lineno)
        if tokens and tokens[0] in _BINARIES:
            # A command line: "iptables [-t TABLE] COMMAND ...".
            if family is None and tokens[0].startswith("ip6"):
                ruleset.family = Family.IPV6
            tokens = tokens[1:]
            table_name = "filter"
            if len(tokens) >= 2 and tokens[0] in ("-t", "--table"):
                table_name, tokens = tokens[1], tokens[2:]
            table = table_for(table_name, lineno)
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
    tokens = split_line(line.strip(), source, lineno)
    if tokens and tokens[0] in _BINARIES:
        tokens = tokens[1:]
        if len(tokens) >= 2 and tokens[0] in ("-t", "--table"):
            table, tokens = tokens[1], tokens[2:]
    if not tokens or COMMANDS.get(tokens[0]) not in RULE_COMMANDS:
        return None
    holder = XtTable(name=table, line=lineno)
    builtin = BUILTIN_CHAINS.get(table, ())
    _command(tokens, holder, set(chains), source, lineno, line.strip(), builtin)
    return holder.rules[0]


def rule_options(rule: XtRule) -> tuple[OptionRow, ...]:
    """The options of ``rule`` in order, each as (name, values, negated, owner); read from its
    specification on demand (:attr:`XtRule.options`), as parsing a kube-proxy iptables-save
    with an object per option took a quarter longer."""
    # The parse took the jump for a chain exactly when it found no target extension.
    chains = {rule.jump} if rule.target is None and rule.jump is not None else set()
    rows: list[OptionRow] = []
    tokens = list(rule.spec)
    _rule(tokens, rule.table, rule.chain, chains, "rule", rule.line, rule.text, rule.command, rows)
    return tuple(rows)


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
    rest = tokens[2:]
    if cmd in NUMBERED_RULE_COMMANDS and rest and rest[0].isdigit():
        rest = rest[1:]
    if chain in builtin:
        table.builtin_chains_used.add(chain)
    table.rules.append(_rule(rest, table.name, chain, chains, source, lineno, text, written))


_JUMPS = frozenset({"-j", "--jump", "-g", "--goto"})
_GOTOS = frozenset({"-g", "--goto"})


def _rule(
    tokens: list[str],
    table: str,
    chain: str,
    chains: set[str],
    source: str,
    lineno: int,
    text: str,
    command: str,
    rows: list[OptionRow] | None = None,
) -> XtRule:
    """The rule in ``tokens`` (its specification, after the chain); its options are appended to
    ``rows`` when given (see :func:`rule_options`)."""
    protocol: str | None = None
    matches: list[str] = []
    target: str | None = None
    jump: str | None = None
    current: str | None = None  # the extension that owns the following options
    with_options: set[str] = set()  # matches that got at least one option
    negated = False  # a "!" was read and no option has taken it yet
    i = 0
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        if tok == "!":
            negated = True
            i += 1
            continue
        if tok in ("-p", "--protocol"):
            protocol = _arg(tokens, i, source, lineno).lower()
            if rows is not None:
                rows.append(_core_option(tokens, i, negated))
            negated = False
            i += 2
            continue
        if tok in ("-m", "--match"):
            current = _arg(tokens, i, source, lineno)
            matches.append(current)
            i += 2
            continue
        if tok in _JUMPS:
            name = _arg(tokens, i, source, lineno)
            jump = name
            if tok in _GOTOS or name in STANDARD_TARGETS or name in chains:
                current = None
            else:
                # Like iptables: a name that is no chain must be a target extension.
                target = name
                current = name
            i += 2
            continue
        if tok in ("-c", "--set-counters"):
            i += 3
            continue
        if tok in _CORE_WITH_ARG:
            _arg(tokens, i, source, lineno)
            if rows is not None:
                rows.append(_core_option(tokens, i, negated))
            negated = False
            i += 2
            continue
        if tok in _CORE_NO_ARG:
            if rows is not None:
                rows.append((tok, (), negated, None))
            negated = False
            i += 1
            continue
        if tok.startswith("--"):
            implicit = _implicit_protocol_match(tok, protocol, current, matches)
            if implicit is not None:
                matches.append(implicit)
                current = implicit
            elif current is None:
                raise InputError(source, f"option {tok} belongs to no match or target", lineno)
            with_options.add(current)
            # Its arguments: the words up to the next option; a "!" right after the option is
            # the old ``--dport ! 80`` form of negation.
            start = i + 1
            if start < n and tokens[start] == "!":
                negated = True
                start += 1
            end = start
            while end < n and not _starts_option(tokens[end]):
                end += 1
            if rows is not None:
                rows.append((tok, tuple(tokens[start:end]), negated, current))
            negated = False
            i = end
            continue
        if tok.startswith("-") and len(tok) == 2 and not tok[1].isdigit():
            raise InputError(source, f"unknown option {tok}", lineno)
        # An argument of the option before it.
        i += 1
    return XtRule(
        line=lineno,
        table=table,
        chain=chain,
        protocol=protocol,
        matches=tuple(matches),
        target=target,
        text=text,
        bare_matches=tuple(m for m in matches if m not in with_options),
        spec=tuple(tokens),
        jump=jump,
        command=command,
    )


def _starts_option(token: str) -> bool:
    """A word that starts an option (or is the "!" before one) rather than being an argument."""
    if token[:1] != "-":
        return token == "!"
    return (
        token[1:2] == "-" or (len(token) == 2 and not token[1].isdigit()) or token in _CORE_NO_ARG
    )


def _core_option(tokens: list[str], i: int, negated: bool) -> OptionRow:
    """A core option and its one argument, also in the old "-s ! ADDR" form."""
    value = tokens[i + 1]
    if value == "!" and i + 2 < len(tokens):
        return (tokens[i], (tokens[i + 2],), True, None)
    return (tokens[i], (value,), negated, None)


def _implicit_protocol_match(
    option: str, protocol: str | None, current: str | None, matches: list[str]
) -> str | None:
    if protocol is None:
        return None
    owned = PROTOCOL_OPTIONS.get(protocol)
    if owned is None or option not in owned:
        return None
    name = PROTOCOL_MATCH_NAME.get(protocol, protocol)
    if name in matches:
        return None
    if current == "multiport" and option in ("--dport", "--sport"):
        return None  # getopt abbreviation of multiport's --dports/--sports
    return name


def _arg(tokens: list[str], i: int, source: str, lineno: int) -> str:
    if i + 1 >= len(tokens) or tokens[i + 1] == "":
        raise InputError(source, f"{tokens[i]} needs an argument", lineno)
    return tokens[i + 1]
