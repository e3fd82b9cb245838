"""Every command's output on every shared rules file, every profile, the founding case and every
real log, byte for byte as recorded in tests/data/golden (see tests/golden/cases.py).

A refactoring must leave these untouched. A deliberate change of output is recorded with
`scripts/golden-update`, and the diff of tests/data/golden is then reviewed like code.
"""

from __future__ import annotations

import json
import os

import pytest

from meshready.cli.main import main
from tests.golden.cases import GOLDEN, Case, cases, normalise

UPDATE = os.environ.get("MESHREADY_GOLDEN_UPDATE") == "1"
CASES = list(cases())


def _record(case: Case, code: int, out: str) -> str:
    """The golden file's text: the exit code and the command line, then the output itself."""
    head = json.dumps({"argv": [normalise(a) for a in case.argv], "exit": code})
    return head + "\n" + normalise(out)


def test_case_names_are_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) > 500  # every rules file, profile and log, not a sample


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_output_is_byte_identical(case: Case, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(list(case.argv))
    captured = capsys.readouterr()
    got = _record(case, code, captured.out)
    if UPDATE:
        case.path.parent.mkdir(parents=True, exist_ok=True)
        case.path.write_text(got, encoding="utf-8")
    assert code in (0, 1), captured.err
    assert case.path.is_file(), f"no golden file {case.path} (record it: scripts/golden-update)"
    assert got == case.path.read_text(encoding="utf-8")


def test_no_golden_file_is_orphaned() -> None:
    expected = {c.path for c in CASES}
    found = {p for p in GOLDEN.rglob("*") if p.is_file() and p.parent != GOLDEN / "inputs"}
    assert found <= expected, sorted(str(p) for p in found - expected)[:5]
