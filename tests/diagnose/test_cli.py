from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshready.cli.main import main
from meshready.diagnose.engine import diagnose_text

from .conftest import FOUNDING, LOGS


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["diagnose", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_founding_log_human(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(FOUNDING))
    assert code == 1
    assert "legacy-table-missing" in out
    assert "modprobe -a ip_tables iptable_nat" in out


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-o", "json", str(LOGS / "istio-24101-avc-module-request.log"))
    assert code == 1
    data = json.loads(out)
    first = data["findings"][0]
    assert first["cause"] == "module-request-denied"
    assert first["modules"] == ["xt_owner", "xt_REDIRECT"]
    assert first["evidence"] and isinstance(first["evidence"][0], str)
    assert set(first["fix"]) == {
        "commands",
        "steps",
        "modules_load_conf",
        "meshready",
        "meshready_steps",
        "notes",
    }
    assert [step["run"] for step in first["fix"]["steps"]] == first["fix"]["commands"]
    assert all(set(step) == {"run", "where", "purpose", "needs"} for step in first["fix"]["steps"])
    assert first["selinux"] is True


def test_clean_log_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(LOGS / "clean-istio-1.17-success.log"))
    assert code == 0
    assert "NOTHING WRONG" in out
    code, out, _ = run(capsys, "-o", "json", str(LOGS / "clean-linkerd-4758-legacy.log"))
    assert code == 0
    assert json.loads(out)["findings"] == []


def test_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    data = FOUNDING.read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    code, out, _ = run(capsys, "-o", "json", "-")
    assert code == 1
    assert json.loads(out)["source"] == "<stdin>"


def test_container_option(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-o", "json", "--container", "istio-init", str(FOUNDING))
    assert code == 1
    assert "xt_owner" in json.loads(out)["findings"][0]["modules"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x7fELF\x02\x01\x01\x00\x00\x00", "binary data"),
        (b"", "empty input"),
        (b"   \n\n  \n", "empty input"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "log"
    path.write_bytes(content)
    code, out, err = run(capsys, str(path))
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("meshready: error: ")
    assert message in err
    assert "Traceback" not in err


def test_missing_and_unreadable_paths(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, str(tmp_path / "nope.log"))
    assert code == 2 and "no such file" in err.lower()
    code, _, err = run(capsys, str(tmp_path))
    assert code == 2 and "directory" in err
    locked = tmp_path / "locked.log"
    locked.write_text("x")
    locked.chmod(0)
    code, _, err = run(capsys, str(locked))
    # root can read anything; everyone else gets a one-line error
    assert code in (0, 2)
    assert "Traceback" not in err


def test_engine_reads_a_long_log() -> None:
    # Speed is measured by benchmarks/diagnose_long_log.py (figures, not a timed test).
    noisy = (LOGS / "clean-istio-1.17-success.log").read_text()
    failing = FOUNDING.read_text()
    text = (noisy * (10_000 // noisy.count("\n") + 1)) + failing
    assert text.count("\n") >= 10_000
    diagnosis = diagnose_text(text, "big")
    assert diagnosis.findings[0].cause == "legacy-table-missing"
