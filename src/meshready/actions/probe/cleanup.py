"""Removing what an inplace probe loaded: its own chains and tables, and those of a killed one.

The regexes here match names meshready itself generated (``MRPxxxx_`` chains,
``meshready-probe-xxxx`` tables) in the output of iptables-save and ``nft list tables``: they
recognise our own names and never read the mesh's rules, which only the parsers in rules/ do.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
from collections.abc import Iterator

from meshready.actions.probe.result import ProbeFailure
from meshready.actions.probe.rules import RuleText, join_tokens
from meshready.actions.probe.tools import apply_command, find_binary, run_apply, save_command
from meshready.knowledge.iptables import JUMP_OPTIONS
from meshready.knowledge.requests import Backend
from meshready.rules.iptables_parser import chain_declaration, table_header
from meshready.rules.load import RuleSyntax
from meshready.rules.xt_spec import split_line

ANY_XT_PREFIX = re.compile(r"^MRP[0-9a-f]{4}_")
ANY_NFT_PREFIX = re.compile(r"^meshready-probe-[0-9a-f]{4}")


def xt_prefix(token: str) -> str:
    """The prefix of the chains one probe creates (iptables chain names: 28 characters at most)."""
    return f"MRP{token}"


def nft_prefix(token: str) -> str:
    return f"meshready-probe-{token}"


def _xt_cleanup(backend: Backend, kind: RuleSyntax, pattern: re.Pattern[str]) -> list[str]:
    """Remove every chain matching ``pattern`` (and rules jumping to it) from all tables."""
    leftovers: list[str] = []
    proc = subprocess.run(save_command(backend, kind), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return [f"{kind}-save failed: {' '.join(proc.stderr.split())[:200]}"]
    blocks: dict[str, list[str]] = {}
    table = None
    for line in proc.stdout.splitlines():
        header = table_header(line)
        if header is not None:
            table = header
            blocks[table] = []
        elif table is not None and line.strip() and line != "COMMIT" and not line.startswith("#"):
            blocks[table].append(line)
    restore = apply_command(RuleText("cleanup", kind, ""), backend, noflush=True)
    for table, lines in blocks.items():
        declared = [words[0] for words in map(chain_declaration, lines) if words]
        ours = [chain for chain in declared if pattern.match(chain)]
        if not ours:
            continue
        hooks = []
        for ln in lines:
            tokens = split_line(ln) if ln.startswith("-A") else []  # iptables-save writes -A
            if len(tokens) > 1 and not pattern.match(tokens[1]):
                jumps = [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t in JUMP_OPTIONS]
                if any(pattern.match(j) for j in jumps):
                    hooks.append(join_tokens(["-D", *tokens[1:]]))
        body = [
            f"*{table}",
            *hooks,
            *(f"-F {c}" for c in ours),
            *(f"-X {c}" for c in ours),
            "COMMIT",
        ]
        try:
            run_apply(restore, "\n".join(body) + "\n", f"cleanup of {table}")
        except ProbeFailure as exc:
            leftovers.append(str(exc))
    return leftovers


def _nft_cleanup(pattern: re.Pattern[str]) -> list[str]:
    nft = find_binary("nft")
    proc = subprocess.run([nft, "list", "tables"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return [f"nft list tables failed: {' '.join(proc.stderr.split())[:200]}"]
    leftovers = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table" and pattern.match(parts[2]):
            res = subprocess.run(
                [nft, "delete", "table", parts[1], parts[2]],
                capture_output=True,
                text=True,
                check=False,
            )
            if res.returncode != 0:
                leftovers.append(f"nft delete table {parts[1]} {parts[2]}: {res.stderr.strip()}")
    return leftovers


@contextlib.contextmanager
def inplace_cleanup(
    backend: Backend, kinds: set[RuleSyntax], token: str, notes: list[str]
) -> Iterator[None]:
    """Stale leftovers removed before, and this probe's chains and tables after, whatever happens."""
    mine_xt = re.compile(rf"^{xt_prefix(token)}_")
    mine_nft = re.compile(rf"^{nft_prefix(token)}")

    def clean(xt: re.Pattern[str], nft: re.Pattern[str]) -> list[str]:
        left: list[str] = []
        for kind in (RuleSyntax.IPTABLES, RuleSyntax.IP6TABLES):
            if kind in kinds:
                left += _xt_cleanup(backend, kind, xt)
        if RuleSyntax.NFT in kinds:
            left += _nft_cleanup(nft)
        return left

    stale = clean(ANY_XT_PREFIX, ANY_NFT_PREFIX)  # leftovers of a killed earlier probe
    if stale:
        notes.append("stale cleanup: " + "; ".join(stale))
    tables_before = _nft_tables() if backend is not Backend.LEGACY else None
    try:
        yield
    finally:
        left = clean(mine_xt, mine_nft)
        if tables_before is not None:
            left += _drop_new_empty_tables(tables_before)
        if left:
            notes.append("cleanup incomplete: " + "; ".join(left))


def _nft_tables() -> set[tuple[str, str]] | None:
    """(family, name) of every nf_tables table here; None without the nft binary."""
    try:
        nft = find_binary("nft")
    except ProbeFailure:
        return None
    proc = subprocess.run([nft, "list", "tables"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    return {
        (parts[1], parts[2])
        for parts in (line.split() for line in proc.stdout.splitlines())
        if len(parts) == 3 and parts[0] == "table"
    }


def _drop_new_empty_tables(before: set[tuple[str, str]]) -> list[str]:
    """Delete tables the probe made appear (iptables-nft creates them on use) that hold no rule."""
    now = _nft_tables()
    if now is None:
        return []
    nft = find_binary("nft")
    left = []
    for family, name in sorted(now - before):
        proc = subprocess.run(
            [nft, "-j", "list", "table", family, name], capture_output=True, text=True, check=False
        )
        try:
            items = json.loads(proc.stdout).get("nftables", [])
        except ValueError:
            continue
        if any(set(item) & {"rule", "set", "map", "element"} for item in items):
            continue  # someone else's rules appeared meanwhile: not ours to remove
        res = subprocess.run(
            [nft, "delete", "table", family, name], capture_output=True, text=True, check=False
        )
        if res.returncode != 0:
            left.append(f"nft delete table {family} {name}: {' '.join(res.stderr.split())}")
    return left
