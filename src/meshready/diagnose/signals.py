"""Meaning-based extraction: what each log line says about netfilter, modules and permissions.

One extractor per message family (``diagnose.families``): libiptc/legacy, iptables-nft, nft,
modprobe, validation, LSM/audit, and the runtime family (exit statuses, aborts, panics, missing
programs, generic failure words). Each looks for the *parts* of a message that carry meaning (a
table name after "initialize table", an extension name before "revision N not supported", an
errno as the tool printed it, a ``kmod=`` field), not one exact sentence.

This module walks the lines, keeps track of the command the log last traced (``+ iptables ...``,
``:; iptables ...``, ``Running command: ...``, ``cmd="[iptables ...]"``) so an extractor can tell a
failure during cleanup from a failed setup step, and runs every family on every line. Pure.
"""

from __future__ import annotations

import re
from functools import lru_cache

from meshready.diagnose.families import SPECIFIC, context, runtime
from meshready.diagnose.families.common import any_of, step_of
from meshready.diagnose.kinds import Errno, Kind, LineView, Signal, Step
from meshready.diagnose.readers import LogLine

__all__ = ["Errno", "Kind", "Signal", "Step", "extract", "recognised_phrases"]

# A command quoted inside a message: cmd="[iptables ...]", running [/usr/sbin/iptables ...],
# failed executing "iptables ...", Status 3 while: iptables ..., iptables failed: iptables ...
_INLINE_COMMAND = re.compile(
    r"(?:\[|\"|'|:\s|while:\s)(?P<cmd>(?:/\S*/)?(?:ip6?tables(?:-legacy|-nft)?(?:-restore|-save)?"
    r"|nft)\s+-[^\]\"',]*)|obj=\"\[(?P<obj>-[^\]]+)\]"
)


_CONTINUATION = re.compile(r"^\s*--?[a-zA-Z]")

# Speed: a line of ASCII text in which no family finds one of its TRIGGERS (most lines of a long
# log: rules, settings, info messages) yields no signal, so it skips the extractors. The triggers
# are lower case, as is the line they are looked for in; the extractors' patterns ignore case, and
# outside ASCII Unicode case folding ("ſ" is an "s" to them) would break that promise, so other
# lines go through all the extractors.
_TRIGGERS = any_of(tuple(t for family in (*SPECIFIC, context, runtime) for t in family.TRIGGERS))
_QUIET_LINES = 100_000  # lines that say nothing remembered at most (below 30 MB)


def extract(lines: list[LogLine]) -> list[Signal]:
    """Every signal in ``lines``, in log order."""
    out: list[Signal] = []
    command: str | None = None
    previous_trace = False
    # Lines found to say nothing, with their lower case. Whether the extractors read anything in a
    # line depends on its text, level and being a trace alone (the command before it and the lines
    # around it only shape what they read), and a long log is long because it repeats itself (the
    # same run again, the same rules): most of its lines are looked up here.
    quiet: dict[tuple[str, bool, str | None], str] = {}
    for i, line in enumerate(lines):
        text = line.text
        key = (text, line.trace, line.level)
        known = quiet.get(key)
        low = text.lower() if known is None else known
        if line.trace:
            command = text.strip()
        elif previous_trace and command and _CONTINUATION.match(text):
            # A traced command wrapped over several lines (kubectl's YAML folding).
            command = f"{command} {text.strip()}"
        elif "tables" in low or "nft" in low or "obj=" in low:
            inline = _INLINE_COMMAND.search(text)
            if inline:
                command = (inline.group("cmd") or inline.group("obj") or "").strip()
        if known is None:
            found = _read(lines, i, low, command) if _may_say(text, low) else []
            if found:
                out.extend(found)
            elif len(quiet) < _QUIET_LINES:
                quiet[key] = low
        previous_trace = line.trace or (previous_trace and bool(_CONTINUATION.match(text)))
    return out


def _may_say(text: str, low: str) -> bool:
    return not text.isascii() or _TRIGGERS.search(low) is not None


def _read(lines: list[LogLine], i: int, low: str, command: str | None) -> list[Signal]:
    """What every family reads in line ``i``."""
    view = LineView(lines, i, low, command, _step(command) if command else Step.UNKNOWN)
    specific: list[Signal] = []
    if not lines[i].trace:
        for family in SPECIFIC:
            specific.extend(family.extract(view))
    return [*context.extract(view), *specific, *runtime.extract(view, specific)]


@lru_cache(maxsize=256)
def _step(command: str) -> Step:
    return step_of(command)


def recognised_phrases() -> tuple[re.Pattern[str], ...]:
    """The distinctive phrases every family keys on (for tests: remove them and only the generic
    failure words remain)."""
    from meshready.diagnose import families

    return tuple(
        p
        for family in (*families.SPECIFIC, families.runtime)
        for p in getattr(family, "PHRASES", ())
    )
