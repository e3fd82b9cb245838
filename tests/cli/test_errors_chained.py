"""An error is one line for users; MESHREADY_DEBUG=1 adds where it came from (its chained cause)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import CliResult

BAD_VERSION = ("needs", "--profile", "linkerd", "--iptables-version", "x.y")
ONE_LINE = "meshready: error: --iptables-version: not an iptables version like 1.8.10: 'x.y'\n"


def test_a_user_sees_one_line(run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHREADY_DEBUG", raising=False)
    result: CliResult = run_cli(*BAD_VERSION)
    assert (result.code, result.out, result.err) == (2, "", ONE_LINE)


def test_debug_shows_the_origin_then_the_same_line(
    run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MESHREADY_DEBUG", "1")
    result: CliResult = run_cli(*BAD_VERSION)
    assert result.code == 2
    assert result.err.endswith(ONE_LINE)
    traceback = result.err[: -len(ONE_LINE)]
    # the ValueError the version parser raised, then the InputError raised from it
    assert traceback.startswith("Traceback (most recent call last):")
    assert "ValueError: not an iptables version like 1.8.10: 'x.y'" in traceback
    assert "The above exception was the direct cause of the following exception:" in traceback
    assert "meshready.errors.InputError: --iptables-version:" in traceback


def test_debug_shows_the_cause_of_a_failed_log_read(
    run_cli: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("MESHREADY_DEBUG", "1")
    missing = tmp_path / "missing.log"
    result: CliResult = run_cli("diagnose", str(missing))
    assert result.code == 2
    assert result.err.endswith(
        f"meshready: error: {missing}: cannot read (No such file or directory)\n"
    )
    assert "FileNotFoundError" in result.err
    assert "direct cause" in result.err
