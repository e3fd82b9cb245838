"""The report carries enum members; its JSON carries their values, as before."""

from __future__ import annotations

import dataclasses
import json

import pytest

from meshready.assess.assess import assess
from meshready.assess.plan import needs_from_options
from meshready.assess.report import backend_name
from meshready.host.facts import gather_offline
from meshready.knowledge.requests import Backend
from tests.conftest import DEBIAN_61_AMD64


def test_the_report_carries_the_backend_member() -> None:
    spec = needs_from_options("linkerd", (), Backend.NFT)
    assert spec.backend is Backend.NFT
    report = assess(spec.needs, gather_offline(None, None, DEBIAN_61_AMD64), spec.backend)
    assert report.backend is Backend.NFT


def test_json_has_the_values_in_place() -> None:
    spec = needs_from_options("istio-sidecar-nftables", (), None)
    report = assess(spec.needs, gather_offline(None, None, DEBIAN_61_AMD64), spec.backend)
    data = report.to_dict()
    assert list(data)[:4] == ["schema", "ready", "summary", "backend"]
    assert data["backend"] == "nftables" and type(data["backend"]) is str
    states = [m["state"] for m in data["modules"]]
    assert states and all(type(s) is str for s in states)
    assert states == [m.state.value for m in report.modules]
    assert json.loads(json.dumps(data))["backend"] == "nftables"


def test_an_unknown_backend_prints_as_a_question_mark() -> None:
    spec = needs_from_options(None, (), None)
    report = assess(spec.needs, gather_offline(None, None, DEBIAN_61_AMD64), spec.backend)
    unknown = dataclasses.replace(report, backend=None)
    assert unknown.to_dict()["backend"] == "?"
    assert backend_name(None) == "?" and backend_name(Backend.LEGACY) == "legacy"


def test_the_table_names_the_backend_or_a_question_mark(capsys: pytest.CaptureFixture[str]) -> None:
    from meshready.cli.output import render_report

    spec = needs_from_options(None, (), Backend.NFT)
    facts = gather_offline(None, None, DEBIAN_61_AMD64)
    report = assess(spec.needs, facts, spec.backend, spec.profile)
    render_report(report)
    assert "backend nft, rules istio-sidecar" in capsys.readouterr().out
    render_report(dataclasses.replace(report, backend=None))
    assert "backend ?, rules istio-sidecar" in capsys.readouterr().out
