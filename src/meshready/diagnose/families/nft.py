"""Native nft (nftables) messages.

nftables reports a refused batch as "Error: Could not process rule: STRERROR" (src/mnl.c,
src/libnftables.c, src/cmd.c nft_cmd_error), usually followed by the command and a line of ^^^
under the part the kernel refused, and prefixed with FILE:LINE:C1-C2. EPERM ("Operation not
permitted") is nfnetlink refusing a caller without CAP_NET_ADMIN; EACCES is an LSM.
"""

from __future__ import annotations

import re

from meshready.diagnose.errnos import read_errno
from meshready.diagnose.families.common import permission_denied
from meshready.diagnose.kinds import Kind, LineView, Signal
from meshready.diagnose.readers import LogLine
from meshready.knowledge.requests import Backend

_PROCESS = re.compile(r"(?:Error:\s*)?Could not process rule:\s*(?P<errno>[^\n]+)", re.IGNORECASE)
# nft's location prefix, looked for only right before a match of _PROCESS (linear time).
_LOCATION = re.compile(r"(?P<l>\d+):(?P<c1>\d+)-(?P<c2>\d+):\s*$")
_CACHE = re.compile(r"cache initiali[sz]ation failed:\s*(?P<errno>.+)", re.IGNORECASE)
_NFT_COMMAND = re.compile(r"\bnft\s+(?:-\w+\s+)*['\"]?(?P<cmd>(?:add|insert|create)\s.+?)['\"]?$")

# In a line of ASCII text, every reading below needs one of these (signals.py skips lines with
# none of them).
TRIGGERS = ("could not process rule", "cache initiali")

PHRASES = (
    re.compile(r"process rule(?=:)", re.IGNORECASE),
    re.compile(r"cache initiali[sz]ation", re.IGNORECASE),
)


def extract(view: LineView) -> list[Signal]:
    low = view.low
    out: list[Signal] = []
    if "could not process rule" in low:
        m = _PROCESS.search(view.text)
        if m:
            out.append(_process(view, m))
    if "cache initiali" in low:
        m2 = _CACHE.search(view.text)
        if m2:
            errno, words = read_errno(m2.group("errno"))
            denied = permission_denied(view, errno, words, backend=Backend.NFTABLES)
            out.append(
                denied
                or view.signal(
                    Kind.NFT_UNAVAILABLE,
                    name="nf_tables",
                    errno=errno,
                    errno_text=words or m2.group("errno"),
                    backend=Backend.NFTABLES,
                )
            )
    return out


def _process(view: LineView, m: re.Match[str]) -> Signal:
    errno, words = read_errno(m.group("errno"))
    denied = permission_denied(view, errno, words, backend=Backend.NFTABLES, detail="nft rule")
    if denied:
        return denied
    rule, span = _quoted_rule(view.lines, view.index, m)
    if not rule:
        rule = _previous_command(view)
    return view.signal(
        Kind.NFT_RULE_ERROR,
        errno=errno,
        errno_text=words or m.group("errno").strip(),
        backend=Backend.NFTABLES,
        extra=(rule, span),
    )


def _previous_command(view: LineView) -> str:
    """Without a quoted rule, the nft command the log shows right before the error."""
    for ln in reversed(view.lines[max(0, view.index - 2) : view.index]):
        c = _NFT_COMMAND.search(ln.text.strip())
        if c:
            return c.group("cmd").strip()
    return ""


def _columns(text: str, m: re.Match[str]) -> tuple[int, int] | None:
    loc = _LOCATION.search(text[max(0, m.start() - 40) : m.start()])
    return (int(loc.group("c1")), int(loc.group("c2"))) if loc else None


def _quoted_rule(lines: list[LogLine], i: int, m: re.Match[str]) -> tuple[str, str]:
    """nft quotes the failing command on the next line and underlines the failing part with ^^^
    on the line after; it also gives the columns as FILE:LINE:C1-C2 (1-based, inclusive)."""
    following = [ln.text for ln in lines[i + 1 : i + 3]]
    if not following or _PROCESS.search(following[0]):
        return "", ""
    rule_text = following[0]
    if set(rule_text.strip()) <= {"^", "~"}:
        return "", ""
    carets = following[1] if len(following) > 1 else ""
    # A transport prefix the reader did not know ("dfw   | ") is on both lines: drop it.
    common = 0
    while common < min(len(rule_text), len(carets)) and rule_text[common] == carets[common]:
        common += 1
    if common and carets[common:].strip() and set(carets[common:].strip()) <= {"^", "~"}:
        cut = len(carets[:common].rstrip(" \t")) if carets[:common].strip() else 0
        rule_text, carets = rule_text[cut:], carets[cut:]
    span = ""
    cm = re.search(r"\^+", carets)
    if cm and set(carets.strip()) <= {"^", "~"}:
        # The caret line carries the same prefix as the rule line, so columns align.
        span = rule_text[cm.start() : cm.end()]
    elif (cols := _columns(lines[i].text, m)) is not None:
        span = rule_text.strip()[cols[0] - 1 : cols[1]]
    return rule_text.strip(), span.strip()
