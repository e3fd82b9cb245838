from __future__ import annotations

from pathlib import Path

import pytest

LOGS = Path(__file__).resolve().parent.parent / "data" / "logs"
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
FOUNDING = SHARED / "cases" / "oke-ol8-istio-1.17" / "istio-init.log"


def read_log(name: str) -> str:
    return (LOGS / name).read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def founding_log() -> str:
    # CI has shared/ beside the project; a missing case is a broken checkout, never a skip.
    assert FOUNDING.is_file(), f"the founding case is missing: {FOUNDING}"
    return FOUNDING.read_text(encoding="utf-8")
