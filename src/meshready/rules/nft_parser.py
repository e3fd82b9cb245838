"""Parse nft scripts (``nft -f`` input): commands (``add rule inet t c ...``) and the block form
(``table inet t { chain c { type nat hook output priority 0; ... } }``).

Only what decides kernel modules is kept: tables, base-chain types and the expressions each rule
compiles to. Syntax errors raise InputError naming the file and line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from meshready.errors import InputError
from meshready.knowledge.nftables import (
    COMMAND_VERBS,
    FAMILY_NAMES,
    KEYWORD_EXPRESSIONS,
    OBJECT_KINDS,
    VERDICTS,
)
from meshready.rules.model import NftChain, NftMatch, NftRule, NftRuleset

_POSITION = {"position", "handle", "index"}
_TOP_BLOCKS = frozenset({"table"})
_TABLE_BLOCKS = frozenset(
    {"chain", "set", "map", "flowtable", "counter", "quota", "ct", "limit", "secmark", "synproxy"}
)
_NO_BLOCKS: frozenset[str] = frozenset()


@dataclass(frozen=True)
class _Tok:
    kind: str  # word | string | { | } | ; | nl
    text: str
    line: int


def _tokenize(text: str, source: str) -> list[_Tok]:
    toks: list[_Tok] = []
    line = 1
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            toks.append(_Tok("nl", "\n", line))
            line += 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif c == "\\" and i + 1 < n and text[i + 1] == "\n":
            line += 1
            i += 2
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c == '"':
            end = text.find('"', i + 1)
            if end < 0 or "\n" in text[i:end]:
                raise InputError(source, "unterminated string", line)
            toks.append(_Tok("string", text[i + 1 : end], line))
            i = end + 1
        elif c in "{};":
            toks.append(_Tok(c, c, line))
            i += 1
        else:
            j = i
            while j < n and text[j] not in ' \t\r\n{};"#':
                j += 1
            toks.append(_Tok("word", text[i:j], line))
            i = j
    return toks


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.toks = _tokenize(text, source)
        self.pos = 0
        self.out = NftRuleset(source=source)

    def error(self, message: str, line: int) -> InputError:
        return InputError(self.source, message, line)

    def statement(self, block_heads: frozenset[str]) -> list[_Tok] | None:
        """Tokens up to the end of a statement (newline or ';' outside braces).

        In a statement that starts with one of ``block_heads``, a '{' at depth 0 ends the statement
        (kept as last token) so the caller can parse the block; elsewhere braces are part of the
        statement (anonymous sets, chain specs).
        """
        stmt: list[_Tok] = []
        depth = 0
        while self.pos < len(self.toks):
            tok = self.toks[self.pos]
            self.pos += 1
            if tok.kind == "{":
                if depth == 0 and stmt and stmt[0].text in block_heads:
                    stmt.append(tok)
                    return stmt
                depth += 1
            elif tok.kind == "}":
                if depth == 0:
                    self.pos -= 1
                    return stmt
                depth -= 1
            elif tok.kind in ("nl", ";") and depth == 0:
                if stmt:
                    return stmt
                continue
            stmt.append(tok)
        if depth:
            raise self.error("unbalanced '{'", stmt[0].line if stmt else 1)
        return stmt or None

    def expect_close(self, opened: _Tok) -> None:
        while self.pos < len(self.toks) and self.toks[self.pos].kind in ("nl", ";"):
            self.pos += 1
        if self.pos >= len(self.toks) or self.toks[self.pos].kind != "}":
            raise self.error("block is not closed with '}'", opened.line)
        self.pos += 1

    def parse(self) -> NftRuleset:
        while True:
            stmt = self.statement(_TOP_BLOCKS)
            if stmt is None:
                break
            if not stmt:  # statement() stopped at a '}' that closes nothing
                raise self.error("unexpected '}'", self.toks[self.pos].line)
            self.top(stmt)
        return self.out

    def top(self, stmt: list[_Tok]) -> None:
        head = stmt[0]
        words = [t.text for t in stmt]
        if head.text == "table" and stmt[-1].kind == "{":
            family, name = self.family_and_name(stmt[1:-1], head.line)
            self.out.tables.append((family, name, head.line))
            self.table_block(family, name, stmt[-1])
        elif head.text in ("define", "redefine", "undefine"):
            return
        elif head.text == "include":
            raise self.error("'include' is not followed; pass each file with --rules", head.line)
        elif head.text in COMMAND_VERBS:
            self.command(stmt)
        else:
            raise self.error(f"not an nft command: {' '.join(words)[:60]!r}", head.line)

    def rest_of_braces(self, opened: _Tok) -> list[_Tok]:
        depth = 1
        out: list[_Tok] = []
        while self.pos < len(self.toks):
            tok = self.toks[self.pos]
            self.pos += 1
            if tok.kind == "{":
                depth += 1
            elif tok.kind == "}":
                depth -= 1
                if depth == 0:
                    out.append(tok)
                    return out
            out.append(tok)
        raise self.error("unbalanced '{'", opened.line)

    def family_and_name(self, toks: list[_Tok], line: int) -> tuple[str, str]:
        words = [t.text for t in toks]
        if len(words) >= 2 and words[0] in FAMILY_NAMES:
            return words[0], words[1]
        if len(words) >= 1 and words[0] not in FAMILY_NAMES:
            return "ip", words[0]
        raise self.error("table needs a name", line)

    def table_block(self, family: str, table: str, opened: _Tok) -> None:
        while True:
            stmt = self.statement(_TABLE_BLOCKS)
            if stmt is None:
                raise self.error(f"table '{table}' is not closed with '}}'", opened.line)
            if not stmt:
                break
            head = stmt[0]
            if head.text == "chain" and stmt[-1].kind == "{":
                if len(stmt) < 3:
                    raise self.error("chain needs a name", head.line)
                self.chain_block(family, table, stmt[1].text, stmt[-1])
            elif stmt[-1].kind == "{":
                self.rest_of_braces(stmt[-1])  # sets, maps, flowtables, named objects
            elif head.text in ("flags", "comment"):
                continue
            else:
                raise self.error(f"unexpected {head.text!r} in table '{table}'", head.line)
        self.expect_close(opened)

    def chain_block(self, family: str, table: str, chain: str, opened: _Tok) -> None:
        chain_type: str | None = None
        rules: list[list[_Tok]] = []
        while True:
            stmt = self.statement(_NO_BLOCKS)
            if stmt is None:
                raise self.error(f"chain '{chain}' is not closed with '}}'", opened.line)
            if not stmt:
                break
            words = [t.text for t in stmt]
            if words[0] == "type":
                chain_type = self.chain_type(stmt)
            elif words[0] in ("policy", "comment", "devices", "device", "flags"):
                continue
            else:
                rules.append(stmt)
        self.expect_close(opened)
        self.out.chains.append(NftChain(family, table, chain, chain_type, opened.line))
        for stmt in rules:
            self.add_rule(family, table, chain, stmt)

    def chain_type(self, stmt: list[_Tok]) -> str:
        words = [t.text for t in stmt]
        if len(words) < 4 or words[2] != "hook":
            raise self.error("a base chain is 'type T hook H priority P'", stmt[0].line)
        return words[1]

    def command(self, stmt: list[_Tok]) -> None:
        verb = stmt[0].text
        rest = stmt[1:]
        if not rest:
            raise self.error(f"'{verb}' needs an object", stmt[0].line)
        obj = rest[0].text
        if obj not in OBJECT_KINDS:
            obj, rest = "rule", [stmt[0], *rest]  # "add inet t c ..." is a rule
        else:
            rest = rest[1:]
        if verb not in ("add", "create", "insert", "replace"):
            return  # delete/flush/list change no module needs
        if obj == "table":
            family, name = self.family_and_name(
                [t for t in rest if t.kind == "word"][:2], stmt[0].line
            )
            self.out.tables.append((family, name, stmt[0].line))
        elif obj == "chain":
            words = [t for t in rest if t.kind == "word"]
            family, table, name, skip = self.locate(words, stmt[0].line, 3)
            spec = [t for t in rest[skip:] if t.kind in ("word", ";")]
            chain_type = None
            if spec and spec[0].text == "type":
                chain_type = self.chain_type(spec)
            self.out.chains.append(NftChain(family, table, name, chain_type, stmt[0].line))
        elif obj == "rule":
            words = [t for t in rest if t.kind == "word"]
            family, table, chain, skip = self.locate(words, stmt[0].line, 3)
            body = rest[skip:]
            if body and body[0].text in _POSITION and len(body) > 1:
                body = body[2:]
            self.add_rule(family, table, chain, body)

    def locate(self, words: list[_Tok], line: int, need: int) -> tuple[str, str, str, int]:
        """``[family] table chain`` at the start of ``words``; returns them and tokens used."""
        if words and words[0].text in FAMILY_NAMES:
            if len(words) < need:
                raise self.error("expected 'family table chain'", line)
            return words[0].text, words[1].text, words[2].text, 3
        if len(words) < need - 1:
            raise self.error("expected 'table chain'", line)
        return "ip", words[0].text, words[1].text, 2

    def add_rule(self, family: str, table: str, chain: str, body: list[_Tok]) -> None:
        if not body:
            raise self.error("rule has no statements", 0)
        exprs: list[str] = []
        words = [t.text if t.kind == "word" else "" for t in body]
        for idx, word in enumerate(words):
            expr = KEYWORD_EXPRESSIONS.get(word)
            if expr is None:
                continue
            if word == "ct" and idx + 1 < len(words) and words[idx + 1] == "count":
                expr = "connlimit"
            if word == "flow" and (
                idx + 1 >= len(words) or words[idx + 1] not in ("add", "offload")
            ):
                continue
            if expr not in exprs:
                exprs.append(expr)
        text = " ".join(t.text for t in body)
        matches, redirect_port, tproxy_port, verdict, verdict_chain = _statements(body)
        self.out.rules.append(
            NftRule(
                family,
                table,
                chain,
                tuple(exprs),
                body[0].line,
                text,
                matches=matches,
                redirect_port=redirect_port,
                tproxy_port=tproxy_port,
                verdict=verdict,
                verdict_chain=verdict_chain,
            )
        )


def parse_nft(text: str, source: str) -> NftRuleset:
    return _Parser(text, source).parse()


# Relational operators of nft(8) ("RELATIONAL EXPRESSION"), as symbols and as words.
_OPERATORS = frozenset({"==", "!=", "<", ">", "<=", ">=", "eq", "ne", "lt", "gt", "le", "ge"})
# Protocols whose header has the "dport"/"sport" fields (nft(8) "PAYLOAD EXPRESSION"; th is the
# transport header of any of them).
_PORT_PROTOCOLS = frozenset({"tcp", "udp", "udplite", "sctp", "dccp", "th"})
# Selectors of the meta expression kept on a rule (nft(8) "META EXPRESSIONS"; ``meta`` may be left
# out for these).
_META_KEYS = frozenset({"skuid", "skgid", "mark"})
# "redirect to :15001" (nft(8) "REDIRECT"; also read without the colon, as the probe always did).
_REDIRECT_PORT = re.compile(r":?(\d+)")
# "tproxy ip to 127.0.0.1:15006", "tproxy to :15006", "tproxy ip6 to [::1]:15006"
_TPROXY_PORT = re.compile(r":(\d+)$")


def _statements(
    body: list[_Tok],
) -> tuple[tuple[NftMatch, ...], int | None, int | None, str | None, str | None]:
    """What a rule's statements carry: its port/owner/mark matches, the port it redirects to, the
    port it tproxies to, its (last) verdict and the chain of a jump or goto."""
    words = [t.text if t.kind == "word" else "" for t in body]
    matches: list[NftMatch] = []
    redirect_port: int | None = None
    tproxy_port: int | None = None
    verdict: str | None = None
    verdict_chain: str | None = None
    for idx, word in enumerate(words):
        prev = words[idx - 1] if idx else ""
        nxt = words[idx + 1] if idx + 1 < len(words) else ""
        if word in ("dport", "sport") and prev in _PORT_PROTOCOLS:
            matches.append(_match(f"{prev} {word}", body, idx + 1))
        elif word in _META_KEYS and nxt != "set" and prev != "set":
            if prev in ("meta", "ct"):
                before = words[idx - 2] if idx >= 2 else ""
                if before != "set":  # "meta mark set ct mark" sets, it does not match
                    matches.append(_match(f"{prev} {word}", body, idx + 1))
            else:
                matches.append(_match(word, body, idx + 1))
        elif word == "redirect" and nxt == "to" and idx + 2 < len(words):
            found = _REDIRECT_PORT.match(words[idx + 2])
            if found and redirect_port is None:
                redirect_port = _port(found.group(1))
        elif word == "tproxy":
            to = words.index("to", idx) if "to" in words[idx:] else -1
            found = _TPROXY_PORT.search(words[to + 1]) if 0 <= to < len(words) - 1 else None
            if found and tproxy_port is None:
                tproxy_port = _port(found.group(1))
        elif word in VERDICTS:
            verdict = word
            verdict_chain = nxt if word in ("jump", "goto") and nxt else None
    return tuple(matches), redirect_port, tproxy_port, verdict, verdict_chain


def _match(selector: str, body: list[_Tok], start: int) -> NftMatch:
    """The operator and value(s) after ``selector``: one word, or an anonymous set's elements."""
    operator: str | None = None
    mask: str | None = None
    i = start
    if i + 1 < len(body) and body[i].text == "&" and body[i + 1].kind == "word":
        mask = body[i + 1].text
        i += 2
    if i < len(body) and body[i].kind == "word" and body[i].text in _OPERATORS:
        operator = body[i].text
        i += 1
    values: list[str] = []
    if i < len(body) and body[i].kind == "{":
        for tok in body[i + 1 :]:
            if tok.kind == "}":
                break
            values += [part for part in tok.text.split(",") if part and tok.kind == "word"]
    elif i < len(body) and body[i].kind in ("word", "string"):
        values.append(body[i].text)
    return NftMatch(selector, operator, tuple(values), mask)


def _port(digits: str) -> int | None:
    port = int(digits)
    return port if 0 < port < 65536 else None
