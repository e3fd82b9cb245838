"""Turn a log in any of the forms it comes in into logical lines of plain message text.

Forms handled (one input may mix them):
- plain text, Istio's ``TIMESTAMP LEVEL [SCOPE] message`` lines, Linkerd's old ``YYYY/MM/DD hh:mm:ss``
  lines, containerd/CRI-O files (``TIMESTAMP stdout F ...``), ``kubectl logs --prefix``;
- JSON lines (zap, logrus JSON): the ``msg``/``message``/``error``/``err`` fields, whose ``\\n`` become
  lines;
- logrus ``key=value`` (``time="..." level=error msg="...\\n..."``) with Go-quoted values;
- ``kubectl describe`` ``Message:``/``Reason:`` blocks and ``kubectl get -o yaml`` ``message: |`` blocks;
- journald/syslog and dmesg prefixes; SELinux audit (AVC) records are kept whole.

Pure: no I/O. Every logical line remembers the physical line it came from, for evidence.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

_ISO_TS = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
_CRI = re.compile(rf"^{_ISO_TS}\s+(?:stdout|stderr)\s+[FP]\s?")
_KUBECTL_PREFIX = re.compile(r"^\[pod/[^\]\s]+\]\s")
_NAME_BEFORE_TS = re.compile(rf"^[A-Za-z0-9][\w.-]*\s+(?={_ISO_TS})")
_LEADING_TS = re.compile(rf"^{_ISO_TS}\s*")
_SLASH_TS = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d(?:\.\d+)?\s?")
_SYSLOG = re.compile(
    r"^[A-Z][a-z]{2}\s+\d{1,2} \d\d:\d\d:\d\d \S+ (?:[\w.-]+\.\w+ )?[\w./@-]+(?:\[\d+\])?: "
)
_DMESG = re.compile(r"^\[\s*\d+\.\d+\]\s")
_LEVEL = re.compile(
    r"^(?P<level>info|error|warn|warning|debug|fatal|panic|trace|err|crit)\b[ \t:]*", re.IGNORECASE
)
_RUST_LEVEL = re.compile(r"^\s*(?P<level>INFO|ERROR|WARN|DEBUG|TRACE)\s+[\w:]+:\s")
_DESCRIBE = re.compile(
    r"^\s*(?:Message|Reason|message|reason|Error|error):\s+(?:[|>][+-]?\s*$)?", re.ASCII
)
_KUMA = re.compile(r"^#\s*\[(?:iptables|ip6tables|nftables)\]\s*(?:\[\d+/\d+\]\s*)?")
_LOGRUS_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')
_LOGRUS_START = re.compile(r"^(?:time|level|msg)=")
_AVC = re.compile(r"\bavc:\s+denied\b")
# NAS/log-viewer tables ("2020-08-27 06:42:11 | stderr | ..."), viewer gutters ("│ ", "| ").
_TABLE_ROW = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s*\|\s*(?:stdout|stderr)\s*\|\s?")
_GUTTER = re.compile(r"^[│|┃] ?")
# klog (Kubernetes components): "E0407 07:08:13.007655       1 file.go:253] ", or the tail alone.
_KLOG = re.compile(r"^(?P<level>[IWEF])\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+\s+[\w./-]+:\d+\]\s")
_KLOG_TAIL = re.compile(r"^[\w./-]+\.go:\d+\]\s")
# Calico felix "[WARNING][637] felix/table.go 1324: ", logrus text "ERRO[0000] ".
_FELIX = re.compile(
    r"^\[(?P<level>INFO|WARNING|ERROR|FATAL|PANIC|DEBUG)\]\[\d+\]\s+[\w./-]+\s+\d+:\s"
)
_LOGRUS_SHORT = re.compile(r"^(?P<level>ERRO|WARN|INFO|DEBU|FATA|PANI)\[\d+\]\s+")
# Traces of the command about to run: "+ cmd" (sh -x), ":; cmd" (proxy-init), "[#] cmd" (wg-quick),
# "> cmd" (old proxy-init), shell prompts. They never hide the line: the marker goes, the command
# stays, and the line is marked as a command rather than a message.
_TRACE = re.compile(
    r"^(?:\+{1,3} |:; |\[#\] |> |\$ |>> |"
    r"(?:\([^)]*\))?\$?[\w.-]+@[\w.-]+(?::[^\s#$]*)?[#$] ?|\[[\w.-]+@[\w.-]+[^\]]*\][#$] ?)"
)
_OUTPUT_MARK = re.compile(r"^< ?")  # old proxy-init: "< output of the command"
_RUNNING = re.compile(r"^Running (?:command|iptables\S*)[^:]*:\s*(?=\S)", re.IGNORECASE)
_COMMAND_WORD = re.compile(
    r"^(?:sudo\s+)?(?:/\S*/)?(?:ip6?tables(?:-legacy|-nft)?(?:-restore|-save)?|nft|ebtables|"
    r"arptables|modprobe|insmod|ip)\s+(?:-|'|\"|add\b|insert\b|delete\b|flush\b|list\b|create\b)"
)
_ESCAPED_NEWLINE = "\\n"


def _anchored(*patterns: re.Pattern[str]) -> str:
    """One alternation of ``^``-anchored patterns, their group names dropped."""
    if not all(p.pattern.startswith("^") for p in patterns):
        raise ValueError("only patterns anchored with ^")
    return "|".join("(?:" + re.sub(r"\(\?P<\w+>", "(?:", p.pattern[1:]) + ")" for p in patterns)


# Speed (a 50 MB log is a million lines, most of them bare): every prefix above is anchored at the
# line's start, so a line none of them matches there keeps its text and has no level. This union
# of all of them is a cheap test for that; it may say "maybe" too often, never "no" wrongly
# (_DESCRIBE's re.ASCII is dropped: Unicode \s matches more).
_ANY_PREFIX = re.compile(
    rf"\s*(?:{_anchored(_LEADING_TS, _SLASH_TS)})|"  # first: the most common
    + _anchored(
        _CRI, _TABLE_ROW, _KUBECTL_PREFIX, _DMESG, _GUTTER, _NAME_BEFORE_TS, _SYSLOG, _KLOG_TAIL,
        _DESCRIBE, _KUMA, _KLOG, _FELIX, _LOGRUS_SHORT,
    )
)  # fmt: skip
_DESCRIBE_FIRST = frozenset(" \t\n\r\f\vMRmrEe")  # what _DESCRIBE (re.ASCII) can start with
# The first characters a trace marker, an output mark, "Running ..." or a bare command word can
# start with; any other line is a trace only in the user@host prompt forms, which need an "@".
_MARK_FIRST = frozenset("+:[>$(<rRs/ienam")


class LogLine(NamedTuple):
    """One logical line: the message text, the physical line it came from, and its level if known.

    A named tuple, not a dataclass: a 50 MB log makes a million of them, and a tuple is built
    five times faster and takes half the memory (immutable and hashable all the same)."""

    text: str
    lineno: int
    raw: str
    level: str | None = None
    trace: bool = False  # a command the log echoes before running it, not a message


def read_lines(text: str) -> list[LogLine]:
    """Normalise ``text`` into logical lines (empty lines dropped)."""
    out: list[LogLine] = []
    append = out.append
    for lineno, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped:
            continue
        kept = raw.rstrip()
        if _plain(raw, stripped):
            # What _normalise and _split_escaped give for it: the line itself, without a level.
            if stripped[0] in _MARK_FIRST or "@" in stripped:
                part, trace = _trace(kept)
                if part.strip():
                    append(LogLine(part, lineno, kept, None, trace))
            else:
                append(LogLine(kept, lineno, kept, None, False))
            continue
        for message, level in _normalise(raw):
            one = "\n" not in message and "\\n" not in message  # as most are
            for part in [message] if one else _split_escaped(message).split("\n"):
                part = part.rstrip()
                if part.strip():
                    part, trace = _trace(part)
                    if part.strip():
                        append(LogLine(part, lineno, kept, level, trace))
    return out


def _plain(raw: str, stripped: str) -> bool:
    """A physical line (from splitlines: no line breaks in it) with no prefix, no AVC record,
    no JSON or logrus structure and no \\n escapes: most lines of a long log."""
    if stripped[0] == "{" and stripped[-1] == "}":
        return False
    if "avc:" in raw or "\\n" in raw or _ANY_PREFIX.match(raw):
        return False
    return "=" not in stripped or not (
        _LOGRUS_START.match(stripped) or ("msg=" in stripped and "level=" in stripped)
    )


def _split_escaped(message: str) -> str:
    """A plain line carrying a whole log as one string with literal \\n escapes (a JSON value
    copied without its quotes) holds several lines."""
    if message.count(_ESCAPED_NEWLINE) >= 2 and not message.lstrip().startswith(("{", "[")):
        return message.replace(_ESCAPED_NEWLINE, "\n")
    return message


def _trace(part: str) -> tuple[str, bool]:
    """Drop a trace marker or output mark, and tell whether the line is a traced command."""
    stripped = part.lstrip()
    if stripped[:1] not in _MARK_FIRST and "@" not in stripped:
        return part, False
    m = _TRACE.match(stripped)
    if m:
        return stripped[m.end() :], True
    m = _RUNNING.match(stripped)
    if m:
        return stripped[m.end() :], True
    out = _OUTPUT_MARK.match(stripped)
    if out and not stripped.startswith("<<"):
        return stripped[out.end() :], False
    return part, bool(_COMMAND_WORD.match(stripped))


def _normalise(raw: str) -> list[tuple[str, str | None]]:
    line = raw.rstrip("\r\n")
    if "avc:" in line and _AVC.search(line):
        return [(_strip_prefixes(line)[0], None)]
    line, level = _strip_prefixes(line)
    stripped = line.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        parsed = _from_json(stripped)
        if parsed is not None:
            return parsed
    if _LOGRUS_START.match(stripped) or ("msg=" in stripped and "level=" in stripped):
        parsed_kv = _from_logrus(stripped)
        if parsed_kv is not None:
            return [parsed_kv]
    return [(line, level)]


def _strip_prefixes(line: str) -> tuple[str, str | None]:
    """Remove transport prefixes (CRI, kubectl, syslog, timestamps, levels, labels)."""
    level: str | None = None
    for _ in range(4):  # prefixes nest (kubectl --prefix + CRI + timestamp + level)
        if not _ANY_PREFIX.match(line):
            break  # none left: this round would change nothing
        before = line
        first = line[:1]
        if first.isdigit() and "std" in line:  # both need "stdout" or "stderr"
            line = _CRI.sub("", line)
            line = _TABLE_ROW.sub("", line)
        elif first == "[":
            line = _KUBECTL_PREFIX.sub("", line)
            line = _DMESG.sub("", line)
        elif first in "│|┃":
            line = _GUTTER.sub("", line)
        if line[:1].isalpha():
            line = _NAME_BEFORE_TS.sub("", line)
            line = _SYSLOG.sub("", line)
            line = _KLOG_TAIL.sub("", line)
        if line[:1] in _DESCRIBE_FIRST:
            line = _DESCRIBE.sub("", line)
        if line[:1] == "#":
            line = _KUMA.sub("", line)
        if line[:1].isalpha() or line[:1] == "[":
            for marked in (_KLOG, _FELIX, _LOGRUS_SHORT):
                km = marked.match(line)
                if km:
                    level = _norm_level(km.group("level"))
                    line = line[km.end() :]
        probe = line.lstrip()  # YAML/describe blocks indent the whole log
        m = (_LEADING_TS.match(probe) or _SLASH_TS.match(probe)) if probe[:1].isdigit() else None
        if m:
            line = probe[m.end() :]
            lm = _LEVEL.match(line)
            if lm:
                level = _norm_level(lm.group("level"))
                line = line[lm.end() :]
            rm = _RUST_LEVEL.match(line)
            if rm:
                level = _norm_level(rm.group("level"))
        if line == before:
            break
    return line, level


_LEVELS = {
    "warning": "warn",
    "err": "error",
    "crit": "error",
    "fatal": "error",
    "e": "error",
    "f": "error",
    "w": "warn",
    "i": "info",
    "erro": "error",
    "fata": "error",
    "pani": "error",
    "panic": "error",
    "debu": "debug",
}


def _norm_level(word: str) -> str:
    w = word.lower()
    return _LEVELS.get(w, w)


def _from_json(text: str) -> list[tuple[str, str | None]] | None:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):  # too deeply nested: not a structured log line
        return None
    if not isinstance(obj, dict):
        return None
    level_value = obj.get("level") or obj.get("severity") or obj.get("lvl")
    level = _norm_level(level_value) if isinstance(level_value, str) else None
    parts: list[str] = []
    for key in ("msg", "message", "log", "error", "err", "stderr", "output"):
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            # A log shipper may wrap a whole line ("log": "2023-... error ..."); unwrap it again.
            if key == "log":
                inner = [msg for chunk in value.split("\n") for msg, _ in _normalise(chunk)]
                parts.extend(inner)
            else:
                parts.append(value)
    if not parts:
        return None
    return [("\n".join(parts), level)]


def _from_logrus(text: str) -> tuple[str, str | None] | None:
    fields: dict[str, str] = {}
    for key, value in _LOGRUS_PAIR.findall(text):
        fields[key] = _unquote(value)
    if "msg" not in fields:
        return None
    level = fields.get("level")
    parts = [fields["msg"]]
    for key in ("error", "err"):
        if key in fields:
            parts.append(fields[key])
    for key in ("cmd", "obj"):
        # The command a failure is about (cilium): kept so the engine knows what was running.
        if key in fields:
            parts.append(f'{key}="{fields[key]}"')
    return "\n".join(parts), _norm_level(level) if level else None


_GO_ESCAPES = {"n": "\n", "t": "\t", "r": "", '"': '"', "\\": "\\", "'": "'"}


def _unquote(value: str) -> str:
    if len(value) < 2 or not (value.startswith('"') and value.endswith('"')):
        return value
    body = value[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(_GO_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)
