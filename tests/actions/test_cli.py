"""The fix, unfix and probe commands as a user runs them (this machine: netfilter built in)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshready.actions.persist import PERSIST_PATH, render_persist
from meshready.cli.main import main
from meshready.knowledge.requests import Backend


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_fix_dry_run_changes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["fix", "--dry-run"], capsys)
    assert code == 0
    assert out.startswith("plan (dry run: nothing changed)")
    code, out, _ = run(["fix", "--dry-run", "-o", "json", "--profile", "linkerd"], capsys)
    data = json.loads(out)
    assert code == 0 and data["dry_run"] is True
    assert data["plan"]["load"] == [] and data["plan"]["blockers"] == []
    assert not Path(PERSIST_PATH).exists()


def test_fix_on_a_built_in_kernel_is_ready(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["fix", "-o", "json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["ready"] is True and data["result"] is None
    assert not Path(PERSIST_PATH).exists()  # built-in modules are never persisted


@pytest.mark.parametrize(
    "args",
    [
        ["fix", "--loader", "insmod"],
        ["fix", "--host-root", "/nonexistent/root"],
        ["fix", "--profile", "nope"],
        ["fix", "--allow", "../../bin/sh"],
        ["probe", "--mode", "sideways"],
        ["probe", "--profile", "istio-sidecar-nftables", "--backend", "legacy"],
    ],
)
def test_bad_input_exits_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(args, capsys)
    assert code == 2
    assert "Traceback" not in err


def test_unfix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["unfix", "--host-root", str(tmp_path)], capsys)
    assert code == 0 and "nothing to remove" in out
    conf = tmp_path / PERSIST_PATH.lstrip("/")
    conf.parent.mkdir(parents=True)
    conf.write_text(render_persist(["ip_tables"], profile="istio-sidecar", backend=Backend.LEGACY))
    code, out, _ = run(["unfix", "--host-root", str(tmp_path), "-o", "json"], capsys)
    assert code == 0 and json.loads(out) == {
        "schema": "meshready.io/unfix/v1",
        "removed": True,
        "path": PERSIST_PATH,
    }
    assert not conf.exists()
    conf.write_text("ip_tables\n")  # not ours
    code, _, err = run(["unfix", "--host-root", str(tmp_path)], capsys)
    assert code == 1 and err.startswith("meshready: error: ") and "not written by meshready" in err
    assert conf.exists()
