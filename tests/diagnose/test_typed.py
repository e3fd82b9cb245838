"""Signals and findings carry enum members end to end; the JSON carries their values."""

from __future__ import annotations

import json

from meshready.diagnose.engine import diagnose_text
from meshready.diagnose.model import DiagnoseContext
from meshready.diagnose.readers import read_lines
from meshready.diagnose.signals import extract
from meshready.knowledge.log_causes import CAUSES, CauseCode
from meshready.knowledge.requests import Backend, Family
from tests.conftest import CASE

from .conftest import LOGS, read_log

NO_RULES = (CASE / "istio-init.log").read_text(encoding="utf-8")  # istio-init, its rules unprinted
PROFILE_PHRASE = "The log does not print its rules; meshready's istio-sidecar profile"
LOG_RULES_PHRASE = "The rules in this log need, in all:"


def test_members_inside_values_outside() -> None:
    diagnosis = diagnose_text(read_log("dockur-windows-250-nat-table.log"), "x")
    assert diagnosis.backend is Backend.LEGACY
    finding = diagnosis.findings[0]
    assert finding.cause is CauseCode.LEGACY_TABLE_MISSING and finding.backend is Backend.LEGACY
    data = diagnosis.to_dict()
    assert type(data["backend"]) is str and data["backend"] == "legacy"
    first = data["findings"][0]
    assert (type(first["cause"]), first["cause"]) == (str, "legacy-table-missing")
    assert (type(first["backend"]), first["backend"]) == (str, "legacy")
    assert json.loads(json.dumps(data)) == data


def test_signals_name_backend_and_family_as_members() -> None:
    text = (
        "ip6tables-restore v1.8.7 (nf_tables): x\n"
        "ip6tables v1.8.4 (legacy): can't initialize ip6tables table `nat': Table does not "
        "exist (do you need to insmod?)\n"
    )
    signals = extract(read_lines(text))
    assert {s.backend for s in signals if s.backend} <= set(Backend)
    assert {s.family for s in signals if s.family} == {Family.IPV6}
    assert all(type(s.backend) is Backend for s in signals if s.backend)


def test_every_cause_code_has_its_cause() -> None:
    assert set(CAUSES) == set(CauseCode)
    assert all(code is cause.code for code, cause in CAUSES.items())


def test_the_rules_phrase_says_where_the_modules_come_from() -> None:
    from_profile = diagnose_text(NO_RULES, "x", DiagnoseContext(container="istio-init"))
    text = from_profile.findings[0].explanation
    assert PROFILE_PHRASE in text and LOG_RULES_PHRASE not in text
    # the same log from a container no profile stands for: no rule modules, no phrase
    alone = diagnose_text(NO_RULES, "x", DiagnoseContext(container="unknown-init"))
    assert PROFILE_PHRASE not in alone.findings[0].explanation
    from_log = diagnose_text(read_log("dockur-windows-250-nat-table.log"), "x")
    text = from_log.findings[0].explanation
    assert LOG_RULES_PHRASE in text and PROFILE_PHRASE not in text


def test_every_signal_of_every_sample_log_carries_members() -> None:
    for path in sorted(LOGS.glob("*.log")):
        for s in extract(read_lines(read_log(path.name))):
            assert s.backend is None or type(s.backend) is Backend, (path.name, s)
            assert s.family is None or type(s.family) is Family, (path.name, s)
