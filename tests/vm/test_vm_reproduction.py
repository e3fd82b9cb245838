"""Issue scenario 1: the reproduction, with meshready's diagnosis, on every kernel.

With ip_tables not loaded, Istio's sidecar rules applied with iptables-legacy-restore in a pod fail
with `unable to initialize table 'nat'`; `meshready check` in the guest reports the node not ready
and names the missing modules; loading what `meshready needs` derives makes the pod's rules apply
and check report ready. Once with module autoload switched off, then (everything unloaded again)
with it working: one boot per kernel, one test per kernel and mode.
"""

from __future__ import annotations

import pytest
from harness import ALIASES, GUEST_DIR, Boot, BootPool, assert_checks

pytestmark = pytest.mark.vm

BOOTS = {
    k: Boot(k, ("python3", f"{GUEST_DIR}/scenario_repro.py", "--modes", "off,on"), "off", 600)
    for k in ALIASES
}
CASES = [
    pytest.param(BOOTS[k], mode, id=f"{k}-autoload-{mode}")
    for k in ALIASES
    for mode in ("off", "on")
]


@pytest.mark.parametrize(("boot", "mode"), CASES)
def test_reproduction_and_diagnosis(boot: Boot, mode: str, vm_boots: BootPool) -> None:
    prefix = f"repro/autoload-{mode}"
    parsed = assert_checks(vm_boots, boot, prefix=prefix, min_checks=10)
    ok = {c.id.removeprefix(prefix + "/") for c in parsed.select(prefix) if c.ok}
    assert {"pod-apply-fails", "check-not-ready", "check-ready-after-fix"} <= ok


@pytest.mark.parametrize("boot", BOOTS.values(), ids=BOOTS.keys())
def test_reproduction_run_completed(boot: Boot, vm_boots: BootPool) -> None:
    assert_checks(vm_boots, boot, min_checks=20)
