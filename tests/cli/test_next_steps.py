"""Next steps depend on where a check looked (cli/machine.py ``Where``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshready.assess.assess import assess
from meshready.assess.plan import needs_from_options
from meshready.assess.report import Report
from meshready.cli.machine import Where, describe_machine
from meshready.cli.next_steps import next_steps
from meshready.host.facts import gather_offline
from tests.conftest import CASE


@pytest.fixture(scope="module")
def missing() -> Report:
    """The founding case: modules loadable but not loaded."""
    spec = needs_from_options(None, (), None)
    facts = gather_offline(CASE / "lsmod.txt", "5.15.0-100.96.32.el8uek.aarch64", None, None)
    report = assess(spec.needs, facts, spec.backend, spec.profile, spec.rules)
    assert not report.ready
    return report


def test_json_says_how_as_a_plain_string(tmp_path: Path) -> None:
    offline = describe_machine(None, "lsmod.txt")
    assert offline.how is Where.OFFLINE
    assert offline.to_dict()["how"] == "offline" and type(offline.to_dict()["how"]) is str
    assert describe_machine(tmp_path, None).how is Where.HOST_ROOT
    assert describe_machine(None, None).how is Where.LIVE


def test_a_node_gets_kubectl_and_this_machine_gets_fix(missing: Report) -> None:
    node = next_steps(missing, Where.NODE, "worker-1")
    assert node[0].commands == ("kubectl meshready fix node/worker-1",)
    for where in (Where.LIVE, Where.HOST_ROOT):
        steps = next_steps(missing, where)
        assert steps[0].text.endswith("on this machine:")
        assert steps[1].commands == ("sudo meshready fix --dry-run", "sudo meshready fix")
    offline = next_steps(missing, Where.OFFLINE)
    assert offline[0].text.endswith("on the node:")
    assert "kubectl meshready check node/NAME" in offline[1].text
