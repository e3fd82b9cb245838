"""Run commands inside a real Debian kernel under qemu, for the `vm` tests.

    run_in_guest("6.1-amd64", "uname -r", autoload=False) -> GuestResult(exit_code, output, console)

The machinery (cached kernels, guest pieces, qemu) is scripts/vm/vmlib.py; scripts/vm/run is the
same thing for a shell. Guest scripts report checks as `PASS id` / `FAIL id: reason` lines and a
closing `N passed, N failed`; parse_checks() reads them back.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts" / "vm"))
import vmlib  # noqa: E402

ALIASES = ("6.1-amd64", "6.12-amd64", "6.1-arm64")
FULL_KERNEL = "6.1-amd64"  # every rule file runs here; the others run a sample
HINT = "run scripts/build-test-artifacts"
GUEST_DIR = "/meshready-vm/guest"


class GuestError(Exception):
    """The guest could not be run: a missing prerequisite, a timeout, or no exit code."""


@dataclass(frozen=True)
class GuestResult:
    exit_code: int
    output: str
    console: str
    seconds: float = 0.0


def check_prerequisites(kernel: str) -> None:
    """Raise GuestError (saying how to get them) unless qemu and the cached kernel are there."""
    try:
        k = vmlib.find_kernel(kernel)
    except vmlib.VmError as exc:
        raise GuestError(f"VM prerequisite missing: {exc}\n-> {HINT}") from exc
    qemu = vmlib.QEMU[k.arch]
    if shutil.which(qemu) is None:
        raise GuestError(f"VM prerequisite missing: {qemu} is not installed\n-> {HINT}")


def run_in_guest(
    kernel: str,
    script_or_argv: str | Sequence[str],
    autoload: bool | str = True,
    timeout: float = 600.0,
    *,
    with_meshready: bool = True,
    payload: Path | None = None,
    extra_pieces: Sequence[Path] = (),
) -> GuestResult:
    """Boot KERNEL (alias like 6.1-amd64, or a release) and run a shell script (str) or an argv in
    it as root. autoload: True/"on" (kernel.modprobe works), False/"off" (points nowhere), "log".
    extra_pieces: more uncompressed cpio pieces appended to the initramfs."""
    check_prerequisites(kernel)
    argv = ["sh", "-c", script_or_argv] if isinstance(script_or_argv, str) else script_or_argv
    mode = ("on" if autoload else "off") if isinstance(autoload, bool) else autoload
    try:
        res = vmlib.run_guest(
            kernel,
            list(argv),
            autoload=mode,
            timeout=timeout,
            payload=payload,
            with_meshready=with_meshready,
            extra_pieces=extra_pieces,
        )
    except vmlib.VmError as exc:
        raise GuestError(str(exc)) from exc
    return GuestResult(res.exit_code, res.output, res.console, res.seconds)


# --------------------------------------------------------------------------- check lines

CHECK_LINE = re.compile(r"^(PASS|FAIL) (\S+?)(?::\s(.*))?$")
SUMMARY_LINE = re.compile(r"^(\d+) passed, (\d+) failed$")


@dataclass
class Check:
    ok: bool
    id: str
    reason: str = ""
    detail: list[str] = field(default_factory=list)

    def describe(self) -> str:
        head = f"{'PASS' if self.ok else 'FAIL'} {self.id}" + (
            f": {self.reason}" if self.reason else ""
        )
        return "\n".join([head, *self.detail])


@dataclass
class Checks:
    checks: list[Check]
    passed: int | None  # from the closing line; None if the guest never printed it
    failed: int | None

    def select(self, prefix: str) -> list[Check]:
        """Checks under PREFIX: `complete/x.v4` selects that id and `complete/x.v4/...`;
        a prefix ending in "/" selects every id below it."""
        if prefix.endswith("/"):
            return [c for c in self.checks if c.id.startswith(prefix)]
        return [c for c in self.checks if c.id == prefix or c.id.startswith(prefix + "/")]


def parse_checks(output: str) -> Checks:
    checks: list[Check] = []
    passed = failed = None
    for line in output.splitlines():
        m = CHECK_LINE.match(line)
        if m:
            checks.append(Check(m.group(1) == "PASS", m.group(2), m.group(3) or ""))
            continue
        s = SUMMARY_LINE.match(line.strip())
        if s:
            passed, failed = int(s.group(1)), int(s.group(2))
            continue
        if line.startswith("    ") and checks:
            checks[-1].detail.append(line)
    return Checks(checks, passed, failed)


# --------------------------------------------------------------------------- boots shared by tests


@dataclass(frozen=True)
class Boot:
    """One guest boot; many tests can read the checks of one boot."""

    kernel: str
    argv: tuple[str, ...]
    autoload: str = "on"
    timeout: float = 900.0
    with_meshready: bool = True
    payload: Path | None = None  # directory copied to the guest's working directory

    def __str__(self) -> str:
        return f"{self.kernel} autoload={self.autoload}: {' '.join(self.argv)}"


class BootPool:
    """Runs the boots the selected tests need, MESHREADY_VM_JOBS (default 2) at a time, in test
    order, starting all of them at the first request so later tests find theirs finished."""

    def __init__(self, jobs: int | None = None) -> None:
        env = os.environ.get("MESHREADY_VM_JOBS", "")
        self.jobs = jobs or (int(env) if env.isdigit() and int(env) > 0 else 2)
        self.planned: list[Boot] = []
        self.futures: dict[Boot, Future[GuestResult]] = {}
        self.executor: ThreadPoolExecutor | None = None
        self.lock = threading.Lock()
        self.timings: list[tuple[Boot, float, int | None]] = []

    def plan(self, boots: Sequence[Boot]) -> None:
        for b in boots:
            if b not in self.planned:
                self.planned.append(b)

    def _run(self, b: Boot) -> GuestResult:
        t0 = time.monotonic()
        try:
            res = run_in_guest(
                b.kernel,
                b.argv,
                b.autoload,
                b.timeout,
                with_meshready=b.with_meshready,
                payload=b.payload,
            )
        except GuestError:
            self.timings.append((b, time.monotonic() - t0, None))
            raise
        self.timings.append((b, time.monotonic() - t0, res.exit_code))
        return res

    def summary(self) -> list[str]:
        """One line per boot that ran: wall seconds and the guest script's exit code."""
        lines = []
        for b, secs, code in self.timings:
            status = "error" if code is None else f"exit {code}"
            lines.append(f"{secs:6.1f}s  {status:<7} {b}")
        if self.timings:
            total = sum(s for _, s, _ in self.timings)
            lines.append(
                f"{len(self.timings)} boots, {total:.0f}s of guest time, {self.jobs} at a time"
            )
        return lines

    def result(self, boot: Boot) -> GuestResult:
        with self.lock:
            if self.executor is None:
                self.executor = ThreadPoolExecutor(self.jobs, thread_name_prefix="vm")
                for b in self.planned:
                    self.futures[b] = self.executor.submit(self._run, b)
            if boot not in self.futures:
                self.futures[boot] = self.executor.submit(self._run, boot)
            fut = self.futures[boot]
        return fut.result()

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)


def assert_checks(pool: BootPool, boot: Boot, prefix: str = "", min_checks: int = 1) -> Checks:
    """Fail the test unless the boot ran and its checks (those whose id starts with PREFIX, or all)
    passed; shows the failing checks and the guest output."""
    try:
        res = pool.result(boot)
    except GuestError as exc:
        pytest.fail(f"{boot}\n{exc}", pytrace=False)
    parsed = parse_checks(res.output)
    chosen = parsed.select(prefix) if prefix else parsed.checks
    problems: list[str] = []
    if len(chosen) < min_checks:
        what = f" {prefix}*" if prefix else ""
        problems.append(
            f"expected at least {min_checks} check(s){what}, the guest reported {len(chosen)}"
        )
    failing = [c for c in chosen if not c.ok]
    if failing:
        problems.append(f"{len(failing)} of {len(chosen)} check(s) failed")
    if not prefix:
        if parsed.passed is None:
            problems.append("the guest script did not print its closing 'N passed, N failed' line")
        elif res.exit_code != 0 and not failing:
            problems.append(f"the guest script exited {res.exit_code}")
    if problems:
        lines = [f"{boot} ({res.seconds:.0f}s)", *problems, ""]
        lines += [c.describe() for c in failing]
        lines += ["", "--- guest output (tail) ---", *res.output.splitlines()[-80:]]
        if parsed.passed is None:
            lines += ["--- console (tail) ---", *res.console.splitlines()[-30:]]
        pytest.fail("\n".join(lines), pytrace=False)
    return parsed
