"""Validation probes: istio-validation (tools/istio-iptables/pkg/validation), Linkerd's
linkerd-network-validator, Kuma's validator."""

from __future__ import annotations

import re

from meshready.diagnose.kinds import Kind, LineView, Signal

_FAILED = re.compile(
    r"iptables validation failed|validation failed|validation timeout|workload is not ready for "
    r"istio|failed to validate networking configuration|unable to connect to validator|"
    r"rules are not (?:applied|rewriting)|traffic (?:is|was) not redirected",
    re.IGNORECASE,
)
_PROBE = re.compile(
    r"error connecting to\s+\[?(?P<addr>127\.0\.0\.6|::6|[\d.:\[\]a-f]+)\]?:(?P<port>15002|\d+)\b"
    r"\s*:?\s*(?P<err>.*)",
    re.IGNORECASE,
)
_PASSED = re.compile(r"validation (?:passed|succeeded|complete)", re.IGNORECASE)

# In a line of ASCII text, every reading below needs one of these (signals.py skips lines with
# none of them; "ISTIO_REDIRECT" or "INVALID_DROP=" alone is no validation message).
TRIGGERS = (
    *("connecting to", "validation ", "workload is not ready", "failed to validate"),
    *("connect to validator", "rules are not ", "not redirected"),
)

PHRASES = (
    re.compile(r"validation(?= (?:failed|timeout))", re.IGNORECASE),
    re.compile(r"workload is not ready for istio", re.IGNORECASE),
    re.compile(r"validate networking configuration", re.IGNORECASE),
    re.compile(r"connect to validator", re.IGNORECASE),
    re.compile(r"connecting to\s+\S+", re.IGNORECASE),
)


def extract(view: LineView) -> list[Signal]:
    low = view.low
    if "valid" not in low and "connecting" not in low and "redirect" not in low:
        return []
    out: list[Signal] = []
    m = _PROBE.search(view.text)
    if m:
        out.append(
            view.signal(
                Kind.VALIDATION_PROBE, name=f"{m.group('addr')}:{m.group('port')}", detail=view.text
            )
        )
    if _PASSED.search(view.text):
        out.append(view.signal(Kind.VALIDATION_PASSED))
    elif _FAILED.search(view.text):
        out.append(view.signal(Kind.VALIDATION_FAILED, detail=view.text.strip()))
    return out
