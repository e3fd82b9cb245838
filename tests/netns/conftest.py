from __future__ import annotations

import pytest

from tests.netns.nsutil import require_root_and_binaries


@pytest.fixture(autouse=True)
def _prerequisites() -> None:
    require_root_and_binaries()
