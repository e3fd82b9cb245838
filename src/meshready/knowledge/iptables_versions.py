"""What iptables-nft asks the kernel, per iptables userspace version (measured, not inferred).

iptables-nft asks the kernel, through nft_compat (``nfnetlink-subsys-11``), which revision of each
extension a rule uses it supports. The kernel answers from x_tables and requests ``ipt_<name>`` /
``ip6t_<name>`` when no module has registered it (net/netfilter/nft_compat.c,
``nfnl_compat_get_rcu`` -> ``xt_find_revision`` under ``try_then_request_module``). It does so even
for matches iptables then translates into native nf_tables expressions. What happens when that
request goes unanswered depends on the iptables version:

- 1.8.7: the extension is not registered at all; the rule fails to parse ("Couldn't load match
  `mark'", or "unknown option --dport" for an implicit ``-p tcp --dport``). Every request is fatal.
- 1.8.9 and 1.8.11: revision 0 is assumed with ``Warning: Extension NAME revision 0 not supported,
  missing kernel module?`` and the match still applies when iptables translates it natively
  (``tcp``/``udp`` with a port option, ``mark``); anything else goes through nft_compat and fails.

Measured in Debian's 5.10, 6.1 and 6.12 cloud kernels under qemu with Debian's iptables 1.8.7
(bullseye), 1.8.9 (bookworm) and 1.8.11 (trixie), by tests/vm/guest/measure_iptables.py: every
extension usage of the shared rules and the profiles, alone, with its module refused by a logging
kernel.modprobe shim. Results and commands: docs/knowledge.md ("iptables versions").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Versions measured in the guests (Debian bullseye, bookworm, trixie).
MEASURED_VERSIONS = ("1.8.7", "1.8.9", "1.8.11")
DEFAULT_VERSION = "1.8.9"  # Debian bookworm's: the iptables the test guests run natively

WARNING = "Warning: Extension {name} revision 0 not supported, missing kernel module?"

# measured version -> matches whose unanswered revision query only warns, when the match is used
# with at least one of its options (translated natively); bare matches go through nft_compat.
# Matches no shared rule or profile uses (limit, state, ...) were not measured: taken as required.
_WARN_ONLY: dict[str, frozenset[str]] = {
    "1.8.7": frozenset(),
    "1.8.9": frozenset({"tcp", "udp", "mark"}),
    "1.8.11": frozenset({"tcp", "udp", "mark"}),
}

_VERSION = re.compile(r"v?(\d{1,3})\.(\d{1,3})\.(\d{1,3})")


@dataclass(frozen=True, order=True)
class IptablesVersion:
    major: int
    minor: int
    patch: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


def parse_version(text: str) -> IptablesVersion:
    """``1.8.10`` or ``v1.8.10``; raises ValueError otherwise."""
    m = _VERSION.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not an iptables version like 1.8.10: {text!r}")
    return IptablesVersion(int(m.group(1)), int(m.group(2)), int(m.group(3)))


def measured_as(version: str) -> str:
    """The measured version whose behaviour ``version`` is taken to have: the newest measured one
    not newer than it (the oldest measured for anything older)."""
    v = parse_version(version)
    candidates = [m for m in MEASURED_VERSIONS if parse_version(m) <= v]
    return candidates[-1] if candidates else MEASURED_VERSIONS[0]


def warn_only(version: str, match: str, bare: bool) -> str | None:
    """The warning iptables-nft prints when the kernel cannot answer for ``match``, if that is all
    that happens (the rule still applies); None when the rule fails without it."""
    if bare or match not in _WARN_ONLY[measured_as(version)]:
        return None
    return WARNING.format(name=match)
