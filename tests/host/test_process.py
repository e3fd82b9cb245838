"""This process's capabilities as host/process reads them from a status text."""

from __future__ import annotations

from pathlib import Path

from meshready.host.process import (
    CAP_SETUID,
    effective_capabilities,
    parse_effective_capabilities,
)

# A /proc/self/status, shortened: root in a container whose effective set lacks CAP_SETUID.
_STATUS = """Name:\tcat
Umask:\t0022
State:\tR (running)
Uid:\t0\t0\t0\t0
Gid:\t0\t0\t0\t0
CapInh:\t0000000000000000
CapPrm:\t00000000a80425bf
CapEff:\t00000000a804253f
CapBnd:\t00000000a80425fb
CapAmb:\t0000000000000000
NoNewPrivs:\t0
"""


def test_the_effective_set_is_read_in_hex() -> None:
    caps = parse_effective_capabilities(_STATUS)
    assert caps == 0xA804253F
    assert not caps & (1 << CAP_SETUID)
    assert parse_effective_capabilities(_STATUS.replace("a804253f", "a80425ff")) & (1 << CAP_SETUID)


def test_a_status_without_the_line_names_no_capability() -> None:
    assert parse_effective_capabilities("Name:\tcat\nCapPrm:\t00000000000000ff\n") == 0


def test_the_file_is_read_and_an_absent_one_is_unknown(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text(_STATUS)
    assert effective_capabilities(str(status)) == 0xA804253F
    assert effective_capabilities(str(tmp_path / "missing")) is None


def test_this_process_has_a_readable_status() -> None:
    assert isinstance(effective_capabilities(), int)
