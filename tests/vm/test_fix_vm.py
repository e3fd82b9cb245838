"""Issue 4 in real kernels: `meshready fix` and `probe` from the founding failure, across a reboot,
and every refusal made real (tests/vm/guest/fix_scenarios.py runs inside the guest).

- fix: with autoload off, from the reproduced founding failure, `meshready fix` with each loader
  (kmod's modprobe, the Python syscalls) makes the pod's iptables-legacy restore succeed and the
  probe pass (netns and, inside a pod, inplace), on 6.1 (.ko), 6.12 (.ko.xz) and 6.1 arm64; the
  Python loader also loads .ko.xz on 6.1, whose kernel cannot decompress.
- reboot: a fresh boot of the same kernel that only applies the file the first boot persisted
  (as systemd-modules-load does): the pod's restore works with nothing else run.
- errors: module absent on disk, read-only /etc, signature rejected, lockdown, LSM denial (IMA),
  kernel.modules_disabled=1: one-line message, exit 1, no file, modules as before.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import vmlib
from harness import GUEST_DIR, GuestError, GuestResult, parse_checks, run_in_guest

pytestmark = pytest.mark.vm

SCRIPT = f"{GUEST_DIR}/fix_scenarios.py"
FIX_KERNELS = ("6.1-amd64", "6.12-amd64", "6.1-arm64")
ERROR_KERNELS = ("6.1-amd64", "6.12-amd64")


def veth_payload(kernel: str, dest: Path) -> Path:
    """A payload directory with the kernel's own veth module (the netns probe makes a veth pair)."""
    k = vmlib.find_kernel(kernel)
    for line in (k.moddir / "modules.dep").read_text().splitlines():
        rel = line.split(":", 1)[0]
        if rel.rsplit("/", 1)[-1].startswith("veth.ko"):
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(k.moddir / rel, dest / Path(rel).name)
            return dest
    raise GuestError(f"{kernel}: no veth module in {k.moddir}/modules.dep")


class Runs:
    """Guest runs for this module, MESHREADY_VM_JOBS (default 2) at a time, all started at once."""

    def __init__(self, base: Path) -> None:
        env = os.environ.get("MESHREADY_VM_JOBS", "")
        jobs = int(env) if env.isdigit() and int(env) > 0 else 2
        self.base = base
        self.pool = ThreadPoolExecutor(jobs, thread_name_prefix="vm-fix")
        self.futures: dict[str, Future[GuestResult]] = {}
        self.lock = threading.Lock()

    def submit(self, key: str, kernel: str, argv: list[str], conf: str | None = None) -> None:
        with self.lock:
            if key in self.futures:
                return
            payload = veth_payload(kernel, self.base / key)
            if conf is not None:
                (payload / "meshready.conf").write_text(conf)
            self.futures[key] = self.pool.submit(
                run_in_guest, kernel, ["python3", SCRIPT, *argv], False, 900.0, payload=payload
            )

    def start(self, wanted: list[tuple[str, str]]) -> None:
        """Start the boots the selected tests need: (test name, kernel) pairs."""
        for name, kernel in wanted:
            if name.startswith("test_each_refusal"):
                self.submit(f"errors-{kernel}", kernel, ["errors", "modprobe", "python"])
            else:  # the fix boot, which the reboot test needs first
                self.fix(kernel)

    def fix(self, kernel: str) -> None:
        self.submit(f"fix-{kernel}", kernel, ["fix", "modprobe", "python"])

    def result(self, key: str) -> GuestResult:
        try:
            return self.futures[key].result()
        except GuestError as exc:
            pytest.fail(f"{key}: {exc}", pytrace=False)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Runs]:
    r = Runs(tmp_path_factory.mktemp("vm-fix"))
    wanted = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if item.module is request.module and callspec is not None:
            wanted.append((item.originalname, str(callspec.params["kernel"])))  # type: ignore[attr-defined]
    r.start(wanted)
    yield r
    r.close()


def passed(res: GuestResult, what: str, must: set[str], min_checks: int) -> set[str]:
    """Fail unless every check passed, the closing line came, and the checks MUST all passed."""
    parsed = parse_checks(res.output)
    ok = {c.id for c in parsed.checks if c.ok}
    failing = [c for c in parsed.checks if not c.ok]
    problems = []
    if failing:
        problems.append(f"{len(failing)} of {len(parsed.checks)} checks failed")
    if parsed.passed is None:
        problems.append("the guest script did not finish (no closing line)")
    if len(parsed.checks) < min_checks:
        problems.append(f"only {len(parsed.checks)} checks (want at least {min_checks})")
    if must - ok:
        problems.append(f"missing passes: {sorted(must - ok)}")
    if problems:
        lines = [f"{what} ({res.seconds:.0f}s): " + "; ".join(problems)]
        lines += [c.describe() for c in failing]
        lines += ["--- guest output (tail) ---", *res.output.splitlines()[-60:]]
        if parsed.passed is None:
            lines += ["--- console (tail) ---", *res.console.splitlines()[-30:]]
        pytest.fail("\n".join(lines), pytrace=False)
    return ok


def persisted_file(res: GuestResult) -> str:
    lines = [ln[len("CONF| ") :] for ln in res.output.splitlines() if ln.startswith("CONF| ")]
    return "".join(line + "\n" for line in lines)


@pytest.mark.parametrize("kernel", FIX_KERNELS)
def test_fix_from_the_founding_failure(kernel: str, runs: Runs) -> None:
    runs.fix(kernel)
    res = runs.result(f"fix-{kernel}")
    must = set()
    for loader in ("modprobe", "python"):
        must |= {
            f"fix/{loader}/founding-failure",
            f"fix/{loader}/fix-ready",
            f"fix/{loader}/persisted",
            "fix/" + loader + "/pod-restore-istio-sidecar.v4.rules",
            "fix/" + loader + "/pod-restore-istio-sidecar.v6.rules",
            f"fix/{loader}/probe-netns",
            f"fix/{loader}/probe-inplace-in-pod",
            f"fix/{loader}/idempotent",
            f"fix/{loader}/unfix",
        }
    must |= {"fix/nftables/fix-ready", "fix/nftables/probe"}
    if kernel != "6.12-amd64":
        must |= {"fix/python-xz/fix-ready", "fix/python-xz/pod-restore"}
    passed(res, f"fix on {kernel}", must, min_checks=40)
    conf = persisted_file(res)
    assert conf.startswith("# Written by meshready") and "\nip_tables\n" in conf


@pytest.mark.parametrize("kernel", FIX_KERNELS)
def test_persisted_file_works_after_reboot(kernel: str, runs: Runs) -> None:
    runs.fix(kernel)
    conf = persisted_file(runs.result(f"fix-{kernel}"))
    assert conf, "the fix boot printed no persisted file"
    runs.submit(f"reboot-{kernel}", kernel, ["reboot"], conf=conf)
    res = runs.result(f"reboot-{kernel}")
    must = {
        "reboot/modules-load-applied",
        "reboot/pod-restore-istio-sidecar.v4.rules",
        "reboot/pod-restore-istio-sidecar.v6.rules",
        "reboot/check-ready",
        "reboot/fix-nothing-to-do",
    }
    passed(res, f"reboot on {kernel}", must, min_checks=8)


@pytest.mark.parametrize("kernel", ERROR_KERNELS)
def test_each_refusal_is_clear_and_harmless(kernel: str, runs: Runs) -> None:
    runs.submit(f"errors-{kernel}", kernel, ["errors", "modprobe", "python"])
    res = runs.result(f"errors-{kernel}")
    must = set()
    for case in (
        "absent/modprobe", "absent/python", "read-only-etc", "signature/modprobe",
        "signature/python", "lockdown/modprobe", "lockdown/python", "lsm/modprobe", "lsm/python",
        "modules-disabled",
    ):  # fmt: skip
        must |= {f"errors/{case}/message", f"errors/{case}/no-file", f"errors/{case}/no-worse"}
    must |= {"errors/lockdown/kernel-modprobe", "errors/lockdown/kernel-python"}
    passed(res, f"errors on {kernel}", must, min_checks=len(must))
