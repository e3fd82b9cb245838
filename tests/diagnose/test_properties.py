"""Property tests: junk never crashes or invents findings; re-wrapping a log keeps its causes."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from meshready.diagnose.engine import diagnose_text
from meshready.errors import InputError

from .conftest import LOGS, read_log

# Words that carry meaning for the engine; junk made without them must stay finding-free.
_MEANINGFUL = (
    "table",
    "extension",
    "couldn",
    "match",
    "target",
    "generation",
    "fail",
    "could not",
    "error",
    "permission",
    "permitted",
    "root",
    "avc",
    "module",
    "modprobe",
    "valid",
    "connect",
    "exit",
    "abort",
    "panic",
    "crash",
    "init",
    "iptables",
    "nft",
    "/lib/modules",
    "linux",
    "returned",
    "line",
    "option",
    "nf_tables",
    "insmod",
    "denied",
    "must",
    "ERR",
    "err",
    "fatal",
    "FATAL",
    "rule",
    "insert",
    "load",
    "selinux",
    "code",
    "status",
)

junk_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(junk_text, min_size=1, max_size=30))
def test_random_text_never_crashes(lines: list[str]) -> None:
    text = "\n".join(lines)
    try:
        diagnosis = diagnose_text(text, "junk")
    except InputError:
        assert not text.strip()
        return
    for finding in diagnosis.findings:
        assert finding.cause
        assert finding.evidence


@settings(max_examples=300, deadline=None)
@given(st.lists(junk_text, min_size=1, max_size=30))
def test_junk_without_signal_words_has_no_finding(lines: list[str]) -> None:
    text = "\n".join(lines)
    low = text.lower()
    if not text.strip() or any(word.lower() in low for word in _MEANINGFUL):
        return
    assert diagnose_text(text, "junk").findings == []


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "info Running command: iptables-save",
                "Listening on 127.0.0.1:15001",
                "ENVOY_PORT=",
                "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN",
                "COMMIT",
                "2020/07/15 16:22:43 > iptables -t nat -vnL",
                "Chain PREROUTING (policy ACCEPT 0 packets, 0 bytes)",
            ]
        ),
        min_size=1,
        max_size=40,
    )
)
def test_benign_lines_in_any_order_are_clean(lines: list[str]) -> None:
    assert diagnose_text("\n".join(lines), "benign").findings == []


def _causes(text: str) -> list[str]:
    return sorted({f.cause for f in diagnose_text(text, "x").findings})


def _as_json(text: str) -> str:
    return "".join(
        json.dumps({"level": "error", "time": "2025-01-01T00:00:00Z", "msg": line}) + "\n"
        for line in text.splitlines()
        if line.strip()
    )


def _as_logrus(text: str) -> str:
    out = []
    for line in text.splitlines():
        if line.strip():
            escaped = line.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'time="2025-01-01T00:00:00Z" level=error msg="{escaped}"')
    return "\n".join(out) + "\n"


def _as_one_json_record(text: str) -> str:
    return json.dumps({"level": "error", "msg": text}) + "\n"


def _as_cri(text: str) -> str:
    return "".join(
        f"2025-01-01T00:00:00.000000001Z stderr F {line}\n" for line in text.splitlines()
    )


REWRAP_SAMPLES = sorted(
    p.name for p in LOGS.glob("*.log") if not p.name.startswith("clean-") and "avc" not in p.name
)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(REWRAP_SAMPLES),
    st.sampled_from([_as_json, _as_logrus, _as_one_json_record, _as_cri]),
)
def test_rewrapping_keeps_the_causes(name: str, wrap: object) -> None:
    assert callable(wrap)
    text = read_log(name)
    assert _causes(wrap(text)) == _causes(text), name


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(sorted(p.name for p in LOGS.glob("clean-*.log"))), st.booleans())
def test_clean_logs_stay_clean_when_rewrapped(name: str, as_json: bool) -> None:
    text = read_log(name)
    lines = [line for line in text.splitlines() if line.strip()]
    if as_json:
        wrapped = "".join(json.dumps({"level": "info", "msg": line}) + "\n" for line in lines)
    else:
        wrapped = "".join(
            'level=info msg="' + line.replace("\\", "\\\\").replace('"', '\\"') + '"\n'
            for line in lines
        )
    assert diagnose_text(wrapped, name).findings == []
