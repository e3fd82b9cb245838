"""Module names that changed across kernel versions.

Istio's documented module list and many hand-written DaemonSets still name modules that no longer
exist on current kernels; modprobe then answers "not found" and people assume the node is broken.

- nf_conntrack_ipv4/ipv6 merged into nf_conntrack in 4.19 (kernel commit a0ae2562c6c4).
- nf_nat_ipv4/ipv6 merged into nf_nat in 5.1 (kernel commit 3bf195ae6037).
- nft_chain_nat_ipv4/ipv6 merged into nft_chain_nat in 5.1 (kernel commit db8ab38880e0).
- nf_nat_redirect, nf_nat_masquerade_*: linked into nf_nat on current kernels (release not confirmed;
  a real module index decides).
"""

from __future__ import annotations

from dataclasses import dataclass

KernelVersion = tuple[int, int]


@dataclass(frozen=True)
class Rename:
    old: str
    new: str
    since: KernelVersion | None  # None: the release is not confirmed, only a module index can tell
    source: str


RENAMES: tuple[Rename, ...] = (
    Rename("nf_conntrack_ipv4", "nf_conntrack", (4, 19), "kernel commit a0ae2562c6c4"),
    Rename("nf_conntrack_ipv6", "nf_conntrack", (4, 19), "kernel commit a0ae2562c6c4"),
    Rename("nf_nat_ipv4", "nf_nat", (5, 1), "kernel commit 3bf195ae6037"),
    Rename("nf_nat_ipv6", "nf_nat", (5, 1), "kernel commit 3bf195ae6037"),
    Rename("nft_chain_nat_ipv4", "nft_chain_nat", (5, 1), "kernel commit db8ab38880e0"),
    Rename("nft_chain_nat_ipv6", "nft_chain_nat", (5, 1), "kernel commit db8ab38880e0"),
    Rename("nf_nat_redirect", "nf_nat", None, "linked into nf_nat (net/netfilter/Makefile)"),
    Rename("nf_nat_masquerade_ipv4", "nf_nat", None, "linked into nf_nat (net/netfilter/Makefile)"),
    Rename("nf_nat_masquerade_ipv6", "nf_nat", None, "linked into nf_nat (net/netfilter/Makefile)"),
)

_BY_OLD = {r.old: r for r in RENAMES}


def parse_kernel_version(release: str) -> KernelVersion | None:
    """``5.15.0-100.96.32.el8uek.aarch64`` -> (5, 15); None if the release does not start with X.Y."""
    head = release.split("-", 1)[0].split(".")
    try:
        return int(head[0]), int(head[1])
    except (IndexError, ValueError):
        return None


def rename_for(name: str) -> Rename | None:
    return _BY_OLD.get(name)


def gone_on(name: str, version: KernelVersion | None) -> Rename | None:
    """The rename that makes ``name`` not exist on a kernel of ``version``, if known to apply."""
    rename = _BY_OLD.get(name)
    if rename is None or rename.since is None or version is None:
        return None
    return rename if version >= rename.since else None
