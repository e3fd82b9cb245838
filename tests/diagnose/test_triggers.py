"""The TRIGGERS shortcut in signals.py skips the extractors for a line holding none of the families'
trigger words. It is only a speed-up: on every real log it must change nothing, so a new pattern
whose word is missing from its family's TRIGGERS fails here, not silently in the field."""

from __future__ import annotations

import pytest

from meshready.diagnose import signals
from meshready.diagnose.readers import read_lines

from .conftest import LOGS, read_log


@pytest.mark.parametrize("name", sorted(p.stem for p in LOGS.glob("*.log")))
def test_the_trigger_shortcut_changes_no_signal(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    lines = read_lines(read_log(f"{name}.log"))
    fast = signals.extract(lines)
    monkeypatch.setattr(signals, "_may_say", lambda text, low: True)
    assert signals.extract(lines) == fast
