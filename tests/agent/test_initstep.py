"""The init container's step and the record the agent reads (agent.initstep)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshready.agent.initstep import FixRecord, RecordedFixer, parse_record, write_record
from meshready.errors import InputError
from tests.agent.fakes import make_node
from tests.agent.process import AgentProcess

from .process import run_cli


def test_init_step_exits_zero_when_it_cannot_fix(tmp_path: Path) -> None:
    """A node that cannot be fixed must still get its agent, which says why: exit 0, and the
    record carries the failure for the agent to publish as LoadFailed."""
    node = make_node(tmp_path / "node")
    record = tmp_path / "fix.json"
    args = ["--init", "--no-cluster", *node.agent_args(), "--loader", "python", "--persist",
            "--probe-mode", "off", "--metrics-addr", "off", "--fix-record", str(record)]  # fmt: skip
    with AgentProcess(args, tmp_path / "init.log", loader="fake:fail=xt_owner") as proc:
        assert proc.wait_exit(60) == 0, proc.output()
    data = json.loads(record.read_text())
    assert data["schema"] == "meshready.io/fix-record/v1"
    assert any("xt_owner" in v for v in data["failed"].values())
    assert node.loaded() == set()  # all or nothing


def test_init_step_refuses_loader_none(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    proc = run_cli("agent", "--init", "--no-cluster", *node.agent_args(), "--loader", "none",
                   "--metrics-addr", "off")  # fmt: skip
    assert proc.returncode == 2 and "meshready: error: --init" in proc.stderr


def _record(boot: str | None, **kw: object) -> FixRecord:
    base: dict[str, object] = dict(
        boot_id=boot, loaded=("xt_owner",), failed={}, persisted=("xt_owner",),
        persist_changed=True, skipped=None,
    )  # fmt: skip
    base.update(kw)
    return FixRecord(**base)  # type: ignore[arg-type]


def test_a_record_of_another_boot_says_nothing(tmp_path: Path) -> None:
    path = tmp_path / "fix.json"
    write_record(path, _record("boot-1"))
    boot = ["boot-1"]
    fixer = RecordedFixer(path, lambda: boot[0])
    assert fixer.record() is not None
    assert [e.reason for e in fixer.startup_events()] == ["ModulesLoaded"]
    assert fixer.startup_events() == []  # once
    boot[0] = "boot-2"
    assert fixer.record() is None
    outcome = fixer.observed()
    assert outcome.persisted is None


@pytest.mark.parametrize(
    "text",
    ["", "[]", "{", '{"schema": "other"}', '{"schema": "meshready.io/fix-record/v1", "loaded": [1]}',
     '{"schema": "meshready.io/fix-record/v1", "failed": {"a": 1}}', "[" * 100_000],
)  # fmt: skip
def test_bad_records_are_input_errors(text: str) -> None:
    with pytest.raises(InputError):
        parse_record(text, "fix.json")


def test_a_bad_record_is_ignored_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "fix.json"
    path.write_text("not json")
    fixer = RecordedFixer(path, lambda: None)
    assert fixer.record() is None
    assert "no record of the init container" in (fixer.fix(None, None).skipped or "")  # type: ignore[arg-type]
