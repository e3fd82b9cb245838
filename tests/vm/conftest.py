"""Fixtures for the `vm` tests: one pool of guest boots for the session (see harness.BootPool)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Boot, BootPool

_POOL = pytest.StashKey[BootPool]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_POOL] = BootPool()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Plan the boots of the tests that will run (after -k/-m deselection)."""
    boots = []
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        boot = callspec.params.get("boot") if callspec is not None else None
        if isinstance(boot, Boot):
            boots.append(boot)
    session.config.stash[_POOL].plan(boots)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    pool = config.stash.get(_POOL, None)
    lines = pool.summary() if pool is not None else []
    if lines:
        terminalreporter.section("vm boots")
        for line in lines:
            terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    pool = config.stash.get(_POOL, None)
    if pool is not None:
        pool.close()


@pytest.fixture(scope="session")
def vm_boots(request: pytest.FixtureRequest) -> Iterator[BootPool]:
    yield request.config.stash[_POOL]
