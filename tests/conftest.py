"""Shared test helpers: where the real data is, and running the CLI in-process."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshready.cli.main import main

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
KERNELS = DATA / "kernels"
# CI puts shared/ beside the clone; MESHREADY_SHARED overrides.
SHARED = Path(os.environ.get("MESHREADY_SHARED", REPO.parent / "shared"))
CASE = SHARED / "cases" / "oke-ol8-istio-1.17"

DEBIAN_61_AMD64 = KERNELS / "6.1.0-56-cloud-amd64"
DEBIAN_61_ARM64 = KERNELS / "6.1.0-56-cloud-arm64"
DEBIAN_612_AMD64 = KERNELS / "6.12.117+deb12-cloud-amd64"
REAL_KERNELS = (DEBIAN_61_AMD64, DEBIAN_61_ARM64, DEBIAN_612_AMD64)


def shared_dir() -> Path:
    if not (SHARED / "rules").is_dir():
        pytest.fail(f"shared data not found at {SHARED} (set MESHREADY_SHARED)")
    return SHARED


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    def run(*args: str) -> CliResult:
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
