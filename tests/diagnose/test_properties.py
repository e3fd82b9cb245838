"""Property tests: junk never crashes or invents findings; re-wrapping a log keeps its causes."""

from __future__ import annotations

import json
from typing import Literal

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
    # the generic words of a failed step (diagnose/families/runtime.py)
    "can",
    "unable",
    "refused",
    "time",
    "exist",
    "problem",
    "who",
    "unknown",
    "incompatible",
    "free",
    "kill",
    "exception",
    "traceback",
    "that name",
    "holding",
    "invalid",
    "no such",
    "not ",
    "signal",
    "core",
    "goroutine",
)

_SURROGATES: list[Literal["Cs"]] = ["Cs"]
junk_text = st.text(
    alphabet=st.characters(blacklist_categories=_SURROGATES, blacklist_characters="\x00"),
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


# --- issue 11: never silent on failure, never noisy on success ------------------------------

FAILING = sorted(p.name for p in LOGS.glob("*.log") if not p.name.startswith("clean-"))
CLEAN_LOGS = sorted(p.name for p in LOGS.glob("clean-*.log"))


def _benign_snippets() -> list[str]:
    """Error-looking lines of the successful runs, each with the command it answered.

    A snippet is the physical line plus, when the run traced the command right before it, that
    command's line: what the line meant in its own run travels with it."""
    from meshready.diagnose.families.runtime import _WORDS
    from meshready.diagnose.readers import read_lines

    snippets: list[str] = []
    for name in CLEAN_LOGS:
        raw = read_log(name).splitlines()
        lines = read_lines(read_log(name))
        for i, line in enumerate(lines):
            if line.trace or not _WORDS.search(line.text):
                continue
            block = [raw[line.lineno - 1]]
            before = lines[i - 1] if i else None
            if before is not None and before.trace and before.lineno != line.lineno:
                block.insert(0, raw[before.lineno - 1])
            snippets.append("\n".join(block))
    return snippets


BENIGN = _benign_snippets()


def test_the_successful_runs_do_contain_error_looking_lines() -> None:
    # Otherwise the property below would prove nothing.
    assert len(BENIGN) >= 4
    assert any("No chain/target/match by that name" in s for s in BENIGN)
    assert any("Couldn't load target" in s for s in BENIGN)


def _insertion_points(lines: list[str], own_command: bool) -> list[int]:
    """Between lines, but never between a traced command and the line right after it (its
    output), and, for a snippet that does not carry the command it answered, never where the host
    log's last command was a setup step: there the line would become that step's error, which is
    not what it said in its own run."""
    from meshready.diagnose.families.common import step_of
    from meshready.diagnose.kinds import Step
    from meshready.diagnose.readers import read_lines

    logical = read_lines("\n".join(lines))
    traced = {ln.lineno for ln in logical if ln.trace}
    points = []
    for i in range(len(lines) + 1):
        if i in traced:
            continue
        if not own_command:
            before = [ln for ln in logical if ln.trace and ln.lineno <= i]
            if before and step_of(before[-1].text) is Step.SETUP:
                continue
        points.append(i)
    return points or [0]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(CLEAN_LOGS),
    st.lists(st.tuples(st.sampled_from(BENIGN), st.integers(min_value=0)), min_size=1, max_size=6),
)
def test_error_looking_lines_from_successful_runs_never_flip_a_clean_log(
    host: str, inserts: list[tuple[str, int]]
) -> None:
    from meshready.diagnose.readers import read_lines

    lines = read_log(host).splitlines()
    for snippet, where in inserts:
        own_command = any(ln.trace for ln in read_lines(snippet))
        points = _insertion_points(lines, own_command)
        at = points[where % len(points)]
        lines[at:at] = snippet.splitlines()
    diagnosis = diagnose_text("\n".join(lines) + "\n", host)
    assert diagnosis.findings == [], [(f.cause, f.evidence) for f in diagnosis.findings]


def _without_recognised_phrases(text: str) -> str:
    from meshready.diagnose.signals import recognised_phrases

    for phrase in recognised_phrases():
        text = phrase.sub(" ", text)
    return text


@settings(max_examples=len(FAILING), deadline=None)
@given(st.sampled_from(FAILING))
def test_a_failing_log_without_any_known_phrase_is_still_unknown(name: str) -> None:
    text = _without_recognised_phrases(read_log(name))
    causes = [f.cause for f in diagnose_text(text, name).findings]
    assert "unknown" in causes, (name, causes)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(FAILING), st.randoms(use_true_random=False))
def test_removing_some_known_phrases_never_makes_a_failing_log_clean(
    name: str, rnd: object
) -> None:
    import random

    from meshready.diagnose.signals import recognised_phrases

    assert isinstance(rnd, random.Random)
    text = read_log(name)
    for phrase in recognised_phrases():
        if rnd.random() < 0.5:
            text = phrase.sub(" ", text)
    assert diagnose_text(text, name).findings, name
