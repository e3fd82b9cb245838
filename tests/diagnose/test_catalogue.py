from __future__ import annotations

from pathlib import Path

from meshready.knowledge import log_causes as lc

DOC = Path(__file__).resolve().parents[2] / "docs" / "diagnose.md"


def test_every_cause_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    for code in lc.CAUSES:
        assert f"### `{code}`" in text, code


def test_catalogue_is_complete_and_sourced() -> None:
    assert set(lc.CAUSES) == {
        "legacy-table-missing",
        "extension-missing",
        "nftables-unavailable",
        "module-request-denied",
        "permission-denied",
        "module-not-in-kernel",
        "redirect-not-applied",
        "rule-rejected",
        "unknown",
        "lsm-denied",
        "ipv6-disabled",
        "tool-missing",
        "foreign-rules",
        "leftover-rules",
        "xtables-lock",
        "container-modprobe-failed",
    }
    for cause in lc.CAUSES.values():
        assert cause.sources and cause.meaning and cause.title
    for message in lc.MESSAGES:
        assert message.cause in lc.CAUSES
        assert message.source
    assert len({c.rank for c in lc.CAUSES.values()}) == len(lc.CAUSES)
