"""How the run went: exit statuses, aborts, panics and stacks, missing programs, and the generic
words of a failed step ("failed", "error", "can't", "denied", "not found", ...).

The generic reading is what keeps a failing log from ever looking clean: a line that says a step
failed counts even when no known message explains it. It does not count when the line is a traced
command, a rule or dump line, a warning, a line that says the run carries on, or a message the
specific families recognised as expected cleanup noise.
"""

from __future__ import annotations

import re

from meshready.diagnose.families.common import any_of
from meshready.diagnose.kinds import Kind, LineView, Signal, Step

_EXIT = re.compile(
    r"\bexit(?:ed)?(?:\s+with)?\s+(?:status|code)\s*[:=]?\s*(?P<c1>-?\d+)|\bExit Code:\s*(?P<c2>-?\d+)"
    r"|\bexitCode:\s*(?P<c3>-?\d+)|\breturned\s+(?P<c4>\d+)\b|code=exited,\s*status=(?P<c5>\d+)"
    r"|\bstatus\s+(?P<c6>\d+)\s+while\b|\bfailed with status\s+(?P<c7>\d+)",
    re.IGNORECASE,
)
_OUTCOME = re.compile(
    r"aborting firewall configuration|failed to execute|^panic:|^goroutine \d+ \[running\]|"
    r"restoring failed|could not configure firewall|crashloopbackoff|init:error|nftables run "
    r"failed|command error|iptables-restore failed|failed to (?:apply|configure|program)\b|"
    r"^error:|\bfatal error\b|back-off restarting failed container|signal: (?:aborted|killed|"
    r"segmentation fault)|core dumped|level=fatal",
    re.IGNORECASE,
)
# A crash is a failure whatever level the caller logged it at.
_CRASH = re.compile(
    r"^panic:|^goroutine \d+ \[running\]|signal: (?:aborted|killed|segmentation fault)|"
    r"core dumped|double free|segmentation fault",
    re.IGNORECASE,
)
_WORDS = re.compile(
    r"\b(?:errors?|failed|failure|fails?|can'?t|cannot|could ?n[o']t|unable to|denied|not found|"
    r"no such file|not permitted|not supported|invalid (?:argument|option|value|parameter)|"
    r"panic|fatal|refused|timed out|timeout|does not exist|doesn't exist|already exists|"
    r"aborting|aborted|problem|who\?|unknown (?:option|argument)|incompatible|double free|"
    r"killed|exception|traceback|by that name|currently holding the)\b",
    re.IGNORECASE,
)
_CARRIES_ON = re.compile(
    r"attempting to continue|continu(?:e|ing) any ?ways?|will (?:try|retry) again|retrying|"
    r"\bignor(?:e|ing)\b|falling back|\bskipp(?:ing|ed)\b|you can ignore|not an error|"
    r"\bno errors?\b|\b0 errors?\b|without errors?",
    re.IGNORECASE,
)
# Rules and dumps (iptables-save, nft list) quote words like INVALID or REJECT; they are data.
_DATA_LINE = re.compile(
    r"^\s*(?:-[AINRPX]\s|--(?:append|insert)\s|:[\w-]+\s|\*\w+\s*$|COMMIT\s*$|#|"
    r"(?:table|chain|set|map)\s+[\w-]+(?:\s+[\w-]+)?\s*\{|\}\s*$|[A-Z][A-Z0-9_]*=)"
)
_TOOL_MISSING = re.compile(
    r"(?:exec:|failed to (?:exec(?:ute)?|run)|could not find|exec)\s*[\\\"']*(?P<bin>[\w./-]+)"
    r"[\\\"']*"
    r"(?: binary)?\s*:?\s*(?:no such file or directory|executable file not found|not found)|"
    r"(?P<bin2>[\w./-]+):\s*(?:command )?not found\s*$|"
    r"error while loading shared libraries:\s*(?P<lib>[\w.+-]+)",
    re.IGNORECASE,
)
_NETFILTER_TOOL = re.compile(
    r"ip6?tables|nft|xtables|ebtables|arptables|libip[46]tc|libnftnl|libmnl"
)

PHRASES = (
    re.compile(r"(?<=aborting )firewall configuration", re.IGNORECASE),
    re.compile(r"executable file(?= not found)", re.IGNORECASE),
    re.compile(r"\bexec:", re.IGNORECASE),
    re.compile(r"loading shared libraries", re.IGNORECASE),
    re.compile(r"(?<=status )127\b", re.IGNORECASE),
    re.compile(r"(?<=failed to execute )\S+(?=: no such file)", re.IGNORECASE),
)

# Specific signals that, on their own, say the step was expected to fail (cleanup before the
# first setup, a probe for a chain, the lock being waited for).
_EXPECTED = {Kind.XT_ENOENT, Kind.CHAIN_MISSING, Kind.LOCK_HELD}


# Words one of which every pattern above needs: lines without any skip the regexes (speed).
_KEYS = (
    "err",
    "fail",
    "exit",
    "status",
    "code",
    "return",
    "can",
    "could",
    "unable",
    "denied",
    "not ",
    "no such",
    "invalid",
    "panic",
    "fatal",
    "refused",
    "time",
    "exist",
    "abort",
    "problem",
    "who?",
    "unknown",
    "incompatible",
    "free",
    "kill",
    "except",
    "traceback",
    "signal",
    "core",
    "goroutine",
    "crash",
    "init:",
    "shared librar",
    "segmentation",
    "back-off",
    "holding",
    "that name",
)


_KEYS_RE = any_of(_KEYS)

# Speed on long logs. In a line of ASCII text the case-insensitive patterns above match only where
# these lower-case words are in the lower-cased line (in other text Unicode case folding, "ſ" for
# an "s", makes no such promise: those lines skip none of the patterns). Each tuple holds, for one
# pattern, words one of which every match of it contains.
_CRASH_WORDS = ("panic:", "goroutine", "signal: ", "core dumped", "double free", "segmentation")
_OUTCOME_WORDS = (
    *("abort", "fail", "panic:", "goroutine", "could not", "crashloopbackoff", "error"),
    *("signal: ", "core dumped", "fatal"),
)
_WORDS_WORDS = (
    *("error", "fail", "can't", "cant", "cannot", "could", "unable to", "denied", "not found"),
    *("no such file", "not permitted", "not supported", "invalid ", "panic", "fatal", "refused"),
    *("timed out", "timeout", "does not exist", "doesn't exist", "already exists", "abort"),
    *("problem", "who?", "unknown", "incompatible", "double free", "killed", "exception"),
    *("traceback", "by that name", "currently holding the"),
)
_EXIT_WORDS = ("exit", "returned", "status")
_TOOL_WORDS = ("not found", "no such file", "shared librar")
_MAY_CRASH = any_of(_CRASH_WORDS)
_MAY_OUTCOME = any_of(_OUTCOME_WORDS)
_MAY_WORDS = any_of(_WORDS_WORDS)
# Any reading at all, in an ASCII line (signals.py skips lines with none of them).
TRIGGERS = (*_EXIT_WORDS, *_TOOL_WORDS, *_CRASH_WORDS, *_OUTCOME_WORDS, *_WORDS_WORDS)


def extract(view: LineView, specific: list[Signal]) -> list[Signal]:
    low = view.low
    if not specific and not _KEYS_RE.search(low):
        return []
    line = view.line
    text = view.text
    out: list[Signal] = []
    m = (
        _EXIT.search(text)
        if ("exit" in low or "status" in low or "code" in low or "return" in low)
        else None
    )
    if m:
        code = next(int(g) for g in m.groups() if g is not None)
        if code != 0:
            out.append(view.signal(Kind.FAILURE, number=code, detail="exit status"))
            if code == 127:
                out.append(view.signal(Kind.TOOL_MISSING, detail="exit status 127"))
    tm = (
        _TOOL_MISSING.search(text)
        if ("not found" in low or "no such file" in low or "shared librar" in low)
        else None
    )
    if tm and not line.trace:
        name = tm.group("bin") or tm.group("bin2") or tm.group("lib") or ""
        if _NETFILTER_TOOL.search(name) or tm.group("lib"):
            out.append(view.signal(Kind.TOOL_MISSING, name=name, detail=tm.group(0)))
    if line.trace or line.level in ("debug", "trace"):
        return out
    stripped = text.strip()
    ascii_text = text.isascii()
    if (not ascii_text or _MAY_CRASH.search(low)) and _CRASH.search(stripped):
        out.append(view.signal(Kind.FAILURE, detail="crash"))
        return out
    if any(_expected(s) for s in specific) and not any(
        s.kind not in _EXPECTED and not s.warning for s in specific
    ):
        return out  # expected cleanup noise, whatever wraps it ("Command error output: ...")
    if (
        (not ascii_text or _MAY_OUTCOME.search(low))
        and _OUTCOME.search(stripped)
        and not _CARRIES_ON.search(text)
    ):
        out.append(
            view.signal(Kind.FAILURE, detail="failure message", warning=line.level == "warn")
        )
        return out
    if any(s.kind not in _EXPECTED and not s.warning for s in specific):
        return out  # a known message already says what failed on this line
    if ascii_text and not _MAY_WORDS.search(low):
        return out  # _WORDS cannot match: what follows would add nothing
    if _DATA_LINE.match(stripped) or _CARRIES_ON.search(text):
        return out
    wm = _WORDS.search(text)
    if wm:
        warning = line.level == "warn" or stripped.lower().startswith("warning")
        out.append(view.signal(Kind.FAILURE, detail=f"error words: {wm.group(0)}", warning=warning))
    return out


def _expected(signal: Signal) -> bool:
    if signal.kind is Kind.LOCK_HELD:
        return signal.detail == "waiting"
    if signal.kind in (Kind.XT_ENOENT, Kind.CHAIN_MISSING):
        return signal.step is not Step.SETUP
    return False
