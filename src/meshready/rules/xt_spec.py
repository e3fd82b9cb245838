"""One iptables rule specification read word by word: its protocol, matches, target, options.

The parser reads each rule's specification once for what it keeps (:func:`read_spec`); the model
reads one rule's options again when they are asked for (:func:`spec_options`), because storing an
object per option made parsing a kube-proxy iptables-save a quarter slower. Options and their
syntax: iptables(8) "PARAMETERS", iptables-extensions(8).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection, Sequence

from meshready.errors import InputError
from meshready.knowledge.iptables import (
    COMMANDS,
    GOTO_OPTIONS,
    JUMP_OPTIONS,
    NUMBERED_RULE_COMMANDS,
    PROGRAMS,
    PROTOCOL_MATCH_NAME,
    PROTOCOL_OPTIONS,
    STANDARD_TARGETS,
    TABLE_OPTIONS,
    WAIT_OPTIONS,
)

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


def after_program(tokens: list[str]) -> tuple[str | None, str | None, list[str]]:
    """A command line's words split as ``PROGRAM [-t TABLE] REST``: (program, table, rest); a
    restore line (no program) comes back as (None, None, tokens)."""
    if not tokens or tokens[0] not in PROGRAMS:
        return None, None, tokens
    rest = tokens[1:]
    if len(rest) >= 2 and rest[0] in TABLE_OPTIONS:
        return tokens[0], rest[1], rest[2:]
    return tokens[0], None, rest


def rule_spec(tokens: list[str]) -> list[str]:
    """The rule specification in ``COMMAND CHAIN [RULENUM] SPEC...``: the words after the chain
    (and the rule number that -I, -R and -D may take)."""
    rest = tokens[2:]
    if COMMANDS.get(tokens[0]) in NUMBERED_RULE_COMMANDS and rest and rest[0].isdigit():
        return rest[1:]
    return rest


def line_spec(text: str) -> tuple[str, ...]:
    """The rule specification of a rule line the parser read (``-A CHAIN ...`` or ``iptables [-t
    T] -A CHAIN ...``). The model keeps the line, not its words: a copy of every word of 300k
    kube-proxy rules took 250 MB."""
    return tuple(rule_spec(after_program(split_line(text))[2]))


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
    *WAIT_OPTIONS,
}
_CORE_NO_ARG = {"-f", "--fragment", "-4", "--ipv4", "-6", "--ipv6", "-v", "--verbose", "-n"}

# An option as the model stores it: (name, values, negated, owner); model.XtOption names them.
OptionRow = tuple[str, tuple[str, ...], bool, str | None]

# What a specification uses: (protocol, matches in order, target extension, the -j/-g argument,
# matches given without an option of their own); a plain tuple, built once per parsed rule.
Spec = tuple[str | None, tuple[str, ...], str | None, str | None, tuple[str, ...]]


def spec_options(
    spec: Sequence[str], chains: Collection[str], lineno: int = 1
) -> tuple[OptionRow, ...]:
    """The options of the rule specification ``spec`` in order (not -m, -j, -g, -c)."""
    rows: list[OptionRow] = []
    read_spec(list(spec), chains, "rule", lineno, rows)
    return tuple(rows)


def read_spec(
    tokens: list[str],
    chains: Collection[str],
    source: str,
    lineno: int,
    rows: list[OptionRow] | None = None,
) -> Spec:
    """What the rule specification in ``tokens`` (the words after the chain) uses; its options
    are appended to ``rows`` when given. A jump to a name that is neither a standard verdict nor
    one of ``chains`` is a target extension, as iptables takes it.

    Raises InputError (``source``, ``lineno``) for a specification iptables would reject.
    """
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
        if tok in JUMP_OPTIONS:
            name = _arg(tokens, i, source, lineno)
            jump = name
            if tok in GOTO_OPTIONS or name in STANDARD_TARGETS or name in chains:
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
    bare = tuple(m for m in matches if m not in with_options)
    return protocol, tuple(matches), target, jump, bare


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
