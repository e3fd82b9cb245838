"""Issue scenario 3: the founding node's lsmod state, checked live in the guest and offline.

Loads the modules the seed's node had loaded (shared/cases/oke-ol8-istio-1.17/lsmod.txt, those that
exist on the guest kernel) and shows that `meshready check` live (module autoload on and off)
agrees with `meshready check --lsmod` of the same state, and with the seed's own lsmod.txt on the
modules that node lacked; after loading what `needs` derives both say ready.
"""

from __future__ import annotations

import pytest
from harness import ALIASES, FULL_KERNEL, GUEST_DIR, Boot, BootPool, assert_checks

pytestmark = pytest.mark.vm

SCRIPT = ("python3", f"{GUEST_DIR}/scenario_lsmod.py")
# Every rule set on the fully tested kernel, the first one elsewhere.
BOOTS = {
    k: Boot(k, SCRIPT if k == FULL_KERNEL else (*SCRIPT, "--quick"), "on", 600) for k in ALIASES
}


@pytest.mark.parametrize("boot", BOOTS.values(), ids=BOOTS.keys())
def test_live_check_agrees_with_offline_check(boot: Boot, vm_boots: BootPool) -> None:
    assert_checks(vm_boots, boot, min_checks=12 if boot.kernel == FULL_KERNEL else 7)
