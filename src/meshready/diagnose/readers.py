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
from dataclasses import dataclass

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


@dataclass(frozen=True)
class LogLine:
    """One logical line: the message text, the physical line it came from, and its level if known."""

    text: str
    lineno: int
    raw: str
    level: str | None = None


def read_lines(text: str) -> list[LogLine]:
    """Normalise ``text`` into logical lines (empty lines dropped)."""
    out: list[LogLine] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        for message, level in _normalise(raw):
            for part in message.split("\n"):
                part = part.rstrip()
                if part.strip():
                    out.append(LogLine(part, lineno, raw.rstrip(), level))
    return out


def _normalise(raw: str) -> list[tuple[str, str | None]]:
    line = raw.rstrip("\r\n")
    if _AVC.search(line):
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
        before = line
        line = _CRI.sub("", line)
        line = _KUBECTL_PREFIX.sub("", line)
        line = _NAME_BEFORE_TS.sub("", line)
        line = _SYSLOG.sub("", line)
        line = _DMESG.sub("", line)
        line = _DESCRIBE.sub("", line)
        line = _KUMA.sub("", line)
        m = _LEADING_TS.match(line) or _SLASH_TS.match(line)
        if m:
            line = line[m.end() :]
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


def _norm_level(word: str) -> str:
    w = word.lower()
    return {"warning": "warn", "err": "error", "crit": "error", "fatal": "error"}.get(w, w)


def _from_json(text: str) -> list[tuple[str, str | None]] | None:
    try:
        obj = json.loads(text)
    except ValueError:
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
