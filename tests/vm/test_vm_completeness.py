"""Issue scenario 2: the modules `meshready needs` derives are complete and minimal, for real.

For every rule file in shared/rules/sidecar-iptables (iptables-legacy-restore) and
shared/rules/sidecar-nft (nft -f): with autoload off, exactly the derived set loaded lets the file
apply in a pod, and leaving out any module the rules need directly makes it fail; with autoload on,
the kernel itself loads exactly the derived set while the file applies. Every file on 6.1 amd64
(one boot per backend and mode, one test per file and mode); one file per distinct derived set on
6.12 amd64 and 6.1 arm64 (one boot each).
See tests/vm/guest/scenario_minimal.py for how the states are set up.
"""

from __future__ import annotations

import pytest
import vmlib
from harness import ALIASES, FULL_KERNEL, GUEST_DIR, Boot, BootPool, assert_checks

pytestmark = pytest.mark.vm

BACKENDS = {"legacy": ("sidecar-iptables", ".rules"), "nftables": ("sidecar-nft", ".nft")}
MODES = ("off", "on")


def rule_ids(backend: str) -> list[str]:
    sub, suffix = BACKENDS[backend]
    files = sorted((vmlib.shared_dir() / "rules" / sub).glob(f"*{suffix}"))
    # A missing shared/ must fail the tests, not leave them without parameters (a skip).
    return [f.name.removesuffix(".rules") for f in files] or [f"MISSING:{sub}"]


def scenario(kernel: str, backend: str, mode: str, sample: bool) -> Boot:
    argv = ["python3", f"{GUEST_DIR}/scenario_minimal.py", "--backend", backend]
    return Boot(kernel, (*argv, *(["--sample"] if sample else [])), mode, 1200)


FULL = [
    pytest.param(
        scenario(FULL_KERNEL, b, m, False), rid, id=f"{FULL_KERNEL}-{b}-autoload-{m}-{rid}"
    )
    for b in BACKENDS
    for m in MODES
    for rid in rule_ids(b)
]
# The sampled kernels: both backends and both modes in one boot each.
SAMPLED = {
    k: Boot(
        k,
        (
            "python3",
            f"{GUEST_DIR}/scenario_minimal.py",
            *("--backend", "legacy", "--backend", "nftables"),
            *("--sample", "--modes", "off,on"),
        ),
        "off",
        1200,
    )
    for k in ALIASES
    if k != FULL_KERNEL
}


@pytest.mark.parametrize(("boot", "rule_id"), FULL)
def test_every_rule_file(boot: Boot, rule_id: str, vm_boots: BootPool) -> None:
    if rule_id.startswith("MISSING:"):
        pytest.fail(f"no rule files in {vmlib.shared_dir() / 'rules' / rule_id[8:]}", pytrace=False)
    assert_checks(vm_boots, boot, prefix=f"needs/{rule_id}")
    if boot.autoload == "off":
        assert_checks(vm_boots, boot, prefix=f"complete/{rule_id}")
        assert_checks(vm_boots, boot, prefix=f"minimal/{rule_id}/")
    else:
        assert_checks(vm_boots, boot, prefix=f"autoload/{rule_id}")


FULL_BOOTS = {
    f"{FULL_KERNEL}-{b}-autoload-{m}": scenario(FULL_KERNEL, b, m, False)
    for b in BACKENDS
    for m in MODES
}


@pytest.mark.parametrize("boot", FULL_BOOTS.values(), ids=FULL_BOOTS.keys())
def test_full_run_completed(boot: Boot, vm_boots: BootPool) -> None:
    """The guest went through every file and printed its closing line (per-file results above)."""
    parsed = assert_checks(vm_boots, boot, prefix="setup/")
    assert parsed.passed is not None, "the guest script did not finish"


@pytest.mark.parametrize("boot", SAMPLED.values(), ids=SAMPLED.keys())
def test_sampled_rule_files(boot: Boot, vm_boots: BootPool) -> None:
    parsed = assert_checks(vm_boots, boot, min_checks=10)
    for kind in ("complete/", "minimal/", "autoload/"):
        for suffix in (".v4", ".v6", ".nft"):
            assert any(c.id.split("/")[1].endswith(suffix) for c in parsed.select(kind)), (
                f"no {kind}*{suffix} checks ran"
            )
