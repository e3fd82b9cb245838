"""Find the interception rules a log prints and derive every module they need.

istio-init prints the iptables-restore input it is about to apply ("Writing following contents to
rules file", "Running iptables-restore with the following input"); linkerd-init and istio-cni print
each ``iptables -t nat -A ...`` command; kuma-init prints its rules file; native nft modes print nft
commands. Logs cut rules short, repeat them and mix them with other text, so extraction is lenient:
each rule is parsed on its own and rules that do not parse are skipped. The modules come from the
same derivation and resolution as ``meshready check`` (rules.derive, assess.resolve).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from meshready.assess.resolve import knowledge_index, resolve_request
from meshready.diagnose.readers import LogLine
from meshready.errors import InputError
from meshready.knowledge.iptables import (
    COMMANDS,
    JUMP_OPTIONS,
    STANDARD_TARGETS,
    TABLE_OPTIONS,
    TABLES,
)
from meshready.knowledge.renames import parse_kernel_version
from meshready.knowledge.requests import Backend, Family, Need
from meshready.rules.derive import needs_for
from meshready.rules.iptables_parser import chain_declaration, parse_iptables, table_header
from meshready.rules.model import NftRuleset, Ruleset, XtRuleset
from meshready.rules.nft_parser import parse_nft

_COMMAND = re.compile(
    r"(?:^|\s|[>;+]\s?)(?P<bin>(?:/\S*/)?ip6?tables(?:-legacy|-nft)?)\s+(?P<args>.*)$"
)
_SHELL_PREFIX = re.compile(r"^(?:[<>+]+\s*|:;\s*|\$\s+|>>\s*nsenter\s+\[\S+\s+)")
_SHELL_FIRST = frozenset("<>+:$")  # what _SHELL_PREFIX can start with (speed: a long log)
_NFT_CMD = re.compile(
    r"^(?:nft\s+)?(?P<verb>add|insert|create|replace)\s+(?P<obj>table|chain|rule)\s+(?P<rest>.+)$"
)
# Logs lose the quotes that keep a comment one word ("--comment proxy-init/ignore-port/1629"
# inside a quoted log message): a quoted comment or the one word after --comment is dropped, so
# that rules differing only in their comment are one rule.
_COMMENT = re.compile(r"\s+-m comment --comment\s+(\"[^\"]*\"|\S+)")
# The commands that add a rule or a chain (short forms of knowledge.iptables.COMMANDS).
_ADDING = frozenset({"-A", "-I", "-R", "-N"})
# Log text is split on blanks, not read as shell words: logs print rules inside their own quoted
# messages, so quotes in them do not pair up. A name ends where the punctuation of the sentence
# around it starts ("-N CONSUL_PROXY_INBOUND, err: exit status 3").
_NAME = re.compile(r"[\w-]+")
_TABLE_NAME = re.compile(r"\w+")


@dataclass
class LogRules:
    """Rules found in a log: per (family, table) the rule lines, and nft commands."""

    xt: dict[tuple[Family, str], list[tuple[int, str]]] = field(default_factory=dict)
    chains: dict[tuple[Family, str], set[str]] = field(default_factory=dict)
    nft: list[tuple[int, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.xt and not self.nft

    def rule_at(self, restore_line: int) -> str | None:
        """The rule that an iptables-restore 'line N' points at, when the log printed the file."""
        for rules in self.xt.values():
            for number, text in rules:
                if number == restore_line:
                    return text
        return None


def find_rules(lines: list[LogLine]) -> LogRules:
    found = LogRules()
    table: str | None = None
    family = Family.IPV4
    block_line = 0
    seen: set[tuple[Family, str, str]] = set()
    intro = ""  # the last line outside the rules, as it came (lower-cased only when read)
    for ln in lines:
        text = ln.text.strip()
        if text[:1] in _SHELL_FIRST:
            text = _SHELL_PREFIX.sub("", text)
        head = table_header(text)
        if head in TABLES:
            table = head
            family = Family.IPV6 if "ip6tables" in intro.lower() else Family.IPV4
            block_line = 0
            continue
        if table is not None:
            block_line += 1
            if text == "COMMIT":
                table = None
                continue
            decl = chain_declaration(text)
            if decl is not None and _declares(text, decl):
                found.chains.setdefault((family, table), set()).add(decl[0])
                continue
            if _adds_to(text) is not None:
                _add(found, seen, family, table, text, block_line + 1)
                continue
            if text.startswith("#") or not text:
                continue
            table = None  # the block ended without COMMIT (cut short)
        cmd = _COMMAND.search(text) if "tables" in text else None
        if cmd and _names_adding_command(cmd["args"]):
            fam = Family.IPV6 if "ip6tables" in cmd.group("bin") else Family.IPV4
            tbl, args = _table_option(cmd["args"])
            if tbl in TABLES and _adds_to(args) is not None:
                _add(found, seen, fam, tbl, args, ln.lineno)
            continue
        nm = _NFT_CMD.match(text)
        if nm:
            found.nft.append((ln.lineno, f"{nm['verb']} {nm['obj']} {nm['rest']}"))
            continue
        intro = text
    return found


def _adds_to(rule: str) -> str | None:
    """The chain a rule line adds to (``-A CHAIN ...``, ``-N CHAIN``), None for other lines."""
    words = rule.split(None, 2)
    if len(words) < 2 or COMMANDS.get(words[0]) not in _ADDING:
        return None
    name = _NAME.match(words[1])
    return name.group() if name else None


def _declares(text: str, words: list[str]) -> bool:
    """A chain declaration as iptables-save prints one: ``:NAME POLICY ...``, the name right after
    the colon; a policy is required (iptables/iptables-restore.c, "policy invalid")."""
    return len(words) > 1 and text[1:2] == words[0][:1] and _NAME.fullmatch(words[0]) is not None


def _names_adding_command(args: str) -> bool:
    # "--replace" in a command line never made it a rule here (only -R did); kept as it was
    return any(COMMANDS.get(w) in _ADDING and w != "--replace" for w in args.split())


def _table_option(args: str) -> tuple[str, str]:
    """The table an ``iptables`` command line names (filter by default) and its arguments
    without the ``-t TABLE`` option."""
    words = args.split()
    for i, word in enumerate(words[:-1]):
        name = _TABLE_NAME.match(words[i + 1]) if word in TABLE_OPTIONS else None
        if name:
            tail = len(words[i + 1]) - name.end()  # punctuation after the name stays
            return name.group(), _without_words(args, i, 2, tail)
    return "filter", args


def _without_words(text: str, first: int, count: int, keep: int = 0) -> str:
    """``text`` without ``count`` blank-separated words from word ``first`` on and the one blank
    before them, but for the last ``keep`` characters of the last word; stripped."""
    bounds: list[tuple[int, int]] = []
    i = 0
    while i < len(text) and len(bounds) < first + count:
        while i < len(text) and text[i].isspace():
            i += 1
        start = i
        while i < len(text) and not text[i].isspace():
            i += 1
        bounds.append((start, i))
    cut_from = bounds[first][0] - 1 if first else 0
    return (text[:cut_from] + text[bounds[first + count - 1][1] - keep :]).strip()


def _add(
    found: LogRules,
    seen: set[tuple[Family, str, str]],
    family: Family,
    table: str,
    text: str,
    number: int,
) -> None:
    if "-m comment --comment" in text:
        text = _COMMENT.sub("", text)
    key = (family, table, text)
    if key in seen:
        return  # and its chains were recorded the first time (a long log repeats its rules)
    chains = found.chains.setdefault((family, table), set())
    chain = _adds_to(text)
    if chain is not None:
        chains.add(chain)
    words = text.split()
    i = 0
    while i < len(words) - 1:
        if words[i] not in JUMP_OPTIONS:
            i += 1
            continue
        found_name = _NAME.match(words[i + 1])
        name = found_name.group() if found_name else ""
        # Only names that look like chains: targets are upper-case words (MARK, REDIRECT)
        if (
            name
            and name not in STANDARD_TARGETS
            and ("_" in name or "-" in name or name != name.upper())
        ):
            chains.add(name)
        i += 2  # the name is taken, even when it is a jump option itself ("-j -j")
    seen.add(key)
    found.xt.setdefault((family, table), []).append((number, text))


def rulesets(found: LogRules) -> list[Ruleset]:
    """Parsed rulesets, one rule at a time so that one bad line does not lose the rest."""
    out: list[Ruleset] = []
    for (family, table), rules in found.xt.items():
        chains = found.chains.get((family, table), set())
        header = [f"*{table}"] + [f":{c} - [0:0]" for c in sorted(chains)]
        candidates = [rule for _n, rule in rules if not rule.startswith(("-N", "--new-chain"))]
        # A log that prints a whole iptables-save (istio-init does) parses in one go; only when
        # some line is bad is each rule tried alone, with a header of just the chains it names:
        # the whole header per rule made a 2 MB dump take half a minute (quadratic).
        try:
            whole: Ruleset | None = parse_iptables(
                "\n".join([*header, *candidates, "COMMIT"]), "log", family
            )
        except InputError:
            whole = None
        if whole is not None:
            if candidates:
                out.append(whole)
            continue
        good = [rule for rule in candidates if _parses_alone(rule, table, chains, family)]
        if good:
            out.append(parse_iptables("\n".join([*header, *good, "COMMIT"]), "log", family))
    if found.nft:
        commands = [cmd for _n, cmd in found.nft]
        try:
            nft: NftRuleset | None = parse_nft("\n".join(commands), "log")
        except InputError:
            nft = None
        if nft is None:
            kept: list[str] = []
            # Commands depend on the tables and chains declared before them, so a bad one is
            # found by growing the script; bounded, as a log can repeat its commands endlessly.
            for cmd in commands[:_NFT_INCREMENTAL_LIMIT]:
                try:
                    parse_nft("\n".join([*kept, cmd]), "log")
                except InputError:
                    continue
                kept.append(cmd)
            nft = parse_nft("\n".join(kept), "log") if kept else None
        if nft is not None and (nft.rules or nft.chains):
            out.append(nft)
    return out


_NFT_INCREMENTAL_LIMIT = 2000


def _parses_alone(rule: str, table: str, chains: set[str], family: Family) -> bool:
    named = [word for word in dict.fromkeys(rule.split()) if word in chains]
    text = "\n".join([f"*{table}", *(f":{c} - [0:0]" for c in named), rule, "COMMIT"])
    try:
        parse_iptables(text, "log", family)
    except InputError:
        return False
    return True


def modules_for_rules(
    found: LogRules, backend: Backend, kernel_release: str | None
) -> tuple[tuple[str, ...], tuple[Need, ...]]:
    """The modules (by real name, in need order) the log's rules ask for under ``backend``."""
    sets = rulesets(found)
    xt = [r for r in sets if isinstance(r, XtRuleset)]
    nft = [r for r in sets if isinstance(r, NftRuleset)]
    needs: list[Need] = []
    if xt and backend is not Backend.NFTABLES:
        needs.extend(needs_for(xt, backend))
    if nft:
        needs.extend(needs_for(nft, Backend.NFTABLES))
    return modules_for_needs(needs, kernel_release), tuple(needs)


def modules_for_needs(needs: list[Need], kernel_release: str | None) -> tuple[str, ...]:
    index = knowledge_index(parse_kernel_version(kernel_release or ""))
    modules: list[str] = []
    for need in needs:
        for module in resolve_request(need.request, index).modules:
            if module not in modules:
                modules.append(module)
    return tuple(modules)
