"""Each real kernel boots under qemu, and the founding failure happens for real in a pod.

With kernel.modprobe pointing nowhere and ip_tables not loaded, iptables-legacy-restore of Istio's
DNS-capture sidecar rules in a pod fails with `unable to initialize table 'nat'`; after modprobe of
the modules those rules need (in the guest's init namespaces) it succeeds. No meshready involved.
"""

from __future__ import annotations

import pytest
from harness import ALIASES, GUEST_DIR, Boot, BootPool, assert_checks

pytestmark = pytest.mark.vm

SMOKE = {
    k: Boot(k, ("sh", f"{GUEST_DIR}/smoke.sh"), "off", 300, with_meshready=False) for k in ALIASES
}


@pytest.mark.parametrize("boot", SMOKE.values(), ids=SMOKE.keys())
def test_kernel_boots_and_reproduces_founding_failure(boot: Boot, vm_boots: BootPool) -> None:
    parsed = assert_checks(vm_boots, boot, min_checks=7)
    assert "smoke/founding-failure" in {c.id for c in parsed.checks if c.ok}
