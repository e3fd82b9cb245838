from __future__ import annotations

from pathlib import Path

import pytest

from tests.actions.fakehost import FakeHost


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    return FakeHost(tmp_path)
