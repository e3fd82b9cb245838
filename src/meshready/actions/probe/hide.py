"""The rules rewritten for the inplace mode: every chain or table renamed under a prefix and hooked
to nothing, so that loading them proves the kernel accepts them without touching any traffic."""

from __future__ import annotations

import hashlib

from meshready.actions.probe.result import ProbeFailure
from meshready.actions.probe.rules import join_tokens
from meshready.knowledge.iptables import (
    BUILTIN_CHAINS,
    CHAIN_COMMAND_ARGS,
    COMMANDS,
    JUMP_OPTIONS,
    RULE_COMMANDS,
)
from meshready.knowledge.nftables import CHANGE_VERBS, FAMILY_NAMES, OBJECT_KINDS
from meshready.rules.iptables_parser import chain_declaration, table_header
from meshready.rules.xt_spec import split_line

# the commands after which a chain exists: -N creates it, -A/-I need it
_ADDS_A_CHAIN = frozenset({"-A", "-I", "-N"})


def _chain_name(prefix: str, name: str) -> str:
    full = f"{prefix}_{name}"
    if len(full) <= 28:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:4]
    return f"{prefix}_{name[: 28 - len(prefix) - 6]}_{digest}"


def hide_xt(text: str, prefix: str) -> tuple[str, dict[str, list[str]]]:
    """The rules with every chain renamed under ``prefix`` and no built-in chain touched.

    Returns the restore input (for ``--noflush``) and, per table, the chains it creates.
    """
    out: list[str] = []
    created: dict[str, list[str]] = {}
    blocks: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = table_header(line)
        if header is not None:
            current = []
            blocks.append((header, current))
        elif line == "COMMIT":
            current = None
        elif current is not None:
            current.append(line)
    for table, lines in blocks:
        declarations = [chain_declaration(ln) for ln in lines]
        declared = {words[0] for words in declarations if words}
        rules = [
            split_line(ln) for ln, words in zip(lines, declarations, strict=True) if words is None
        ]
        for tokens in rules:
            if len(tokens) > 1 and COMMANDS.get(tokens[0]) in _ADDS_A_CHAIN:
                declared.add(tokens[1])
        known = declared | set(BUILTIN_CHAINS.get(table, ()))
        names = {c: _chain_name(prefix, c) for c in sorted(known)}
        chains = [names[c] for c in sorted(declared)]
        created.setdefault(table, [])
        created[table] += [c for c in chains if c not in created[table]]
        body = [f"*{table}", *(f":{c} - [0:0]" for c in chains)]
        for tokens in rules:
            # chain commands would touch chains by their own names (the declarations made ours)
            if not tokens or COMMANDS.get(tokens[0]) in CHAIN_COMMAND_ARGS:
                continue
            if len(tokens) > 1 and COMMANDS.get(tokens[0]) in RULE_COMMANDS:
                tokens[1] = names.get(tokens[1], tokens[1])
            for i, tok in enumerate(tokens[:-1]):
                if tok in JUMP_OPTIONS and tokens[i + 1] in names:
                    tokens[i + 1] = names[tokens[i + 1]]
            body.append(join_tokens(tokens))
        body.append("COMMIT")
        out += body
    return "\n".join(out) + "\n", created


def hide_nft(text: str, prefix: str) -> tuple[str, list[tuple[str, str]]]:
    """The nft script with every table renamed under ``prefix`` and base chains made regular."""
    out: list[str] = []
    tables: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if tokens[0] == "define":
            out.append(line)
            continue
        if tokens[0] == "table" or (line.endswith("{") and tokens[0] not in CHANGE_VERBS):
            raise ProbeFailure(
                "inplace mode takes line-oriented nft scripts (add table/chain/rule ...), "
                "not table blocks"
            )
        if len(tokens) < 3 or tokens[0] not in CHANGE_VERBS or tokens[1] not in OBJECT_KINDS:
            raise ProbeFailure(f"inplace mode cannot rewrite this nft line: {line[:60]!r}")
        pos = 3 if tokens[2] in FAMILY_NAMES else 2
        family = tokens[2] if pos == 3 else "ip"
        if len(tokens) <= pos:
            raise ProbeFailure(f"inplace mode cannot rewrite this nft line: {line[:60]!r}")
        name = f"{prefix}-{tokens[pos]}"
        tokens[pos] = name
        if pos == 2:
            tokens.insert(2, family)
        if tokens[0] in ("delete", "destroy") and tokens[1] == "table":
            continue
        if (family, name) not in tables:
            tables.append((family, name))
        rewritten = " ".join(tokens)
        if tokens[1] == "chain":
            rewritten = _without_chain_spec(rewritten)
        out.append(rewritten)
    return "\n".join(out) + "\n", tables


def _without_chain_spec(line: str) -> str:
    """``add chain F T C { type nat hook output priority 0 ; }`` without its ``{ ... }``: what
    makes a base chain (nft(8) "CHAINS"); a regular chain is hooked to nothing."""
    body = line.rstrip().removesuffix(";").rstrip()
    start = body.rfind("{")
    if body.endswith("}") and start >= 0 and "}" not in body[start:-1]:
        return body[:start].rstrip()
    return line
