"""Errno as the kernel really writes it: run the real iptables-legacy, iptables-nft and nft in a
user namespace that does not own the network namespace (the rootless / user-namespaced case) and
diagnose what they print. Read-only (-L / list ruleset); the network namespace the positive
control changes is one the test creates. Needs root, unshare and the iptables/nftables packages
(scripts/apt-packages.txt); without them the test fails, it does not skip."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from meshready.diagnose.engine import diagnose_text
from meshready.diagnose.kinds import Errno
from meshready.diagnose.readers import read_lines
from meshready.diagnose.signals import Kind, extract

pytestmark = pytest.mark.netns

TOOLS = {
    "iptables-legacy": ["iptables-legacy", "-L"],
    "iptables-nft": ["iptables-nft", "-L"],
    "nft": ["nft", "list", "ruleset"],
}


def _need() -> str:
    unshare = shutil.which("unshare")
    missing = [t for t in (*TOOLS, "unshare") if shutil.which(t) is None]
    if os.geteuid() != 0 or unshare is None or missing:
        pytest.fail(
            f"needs root, unshare and the iptables/nftables packages (missing: {missing}); "
            "install scripts/apt-packages.txt",
            pytrace=False,
        )
    return unshare


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_no_cap_net_admin_over_the_netns_reads_as_eperm(tool: str) -> None:
    unshare = _need()
    # A new user namespace, the host's network namespace: full capabilities, but in a user
    # namespace that does not own the network namespace -> the kernel answers EPERM.
    done = _run([unshare, "--user", *TOOLS[tool]])
    assert done.returncode != 0, done
    log = done.stderr + done.stdout
    errnos = [s.errno for s in extract(read_lines(log)) if s.kind is Kind.PERMISSION]
    assert errnos and set(errnos) == {Errno.EPERM}, log
    diagnosis = diagnose_text(log, tool)
    assert diagnosis.findings[0].cause == "permission-denied", (log, diagnosis.findings)


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_owning_the_netns_is_enough_and_the_output_is_clean(tool: str) -> None:
    unshare = _need()
    done = _run([unshare, "--user", "--map-root-user", "--net", *TOOLS[tool]])
    assert done.returncode == 0, done
    text = (done.stdout + done.stderr).strip() or "(no rules)"
    assert diagnose_text(text, tool).findings == []
