"""The names the kernel (or the iptables binary) hands to modprobe, and the Request type.

A *request* is what `request_module()` asks for; modprobe resolves it against modules.alias,
modules.builtin and modules.dep. Formats, from the kernel source:
- x_tables tables: ``"%stable_%s"`` with prefix ``ip``/``ip6`` (net/netfilter/x_tables.c,
  ``xt_find_table_lock``), e.g. ``iptable_nat``.
- x_tables matches and targets: ``"%st_%s"`` (``xt_request_find_match``/``_target``), e.g.
  ``ipt_owner``, ``ip6t_REDIRECT``; the ``xt_*`` modules carry these names as aliases.
- nf_tables: ``net-pf-16-proto-12`` opens nfnetlink (PF_NETLINK, NETLINK_NETFILTER);
  ``nfnetlink-subsys-10`` is nf_tables and ``-11`` nft_compat (include/uapi/linux/netfilter/nfnetlink.h);
  chain types ``"nft-chain-%u-%s"`` and expressions ``"nft-expr-%u-%s"`` then ``"nft-expr-%s"``
  (net/netfilter/nf_tables_api.c, ``nf_tables_chain_type_lookup``, ``nft_expr_type_request_module``).
- ``ip_tables``/``ip6_tables`` themselves are never requested by the kernel: only the iptables-legacy
  binary runs modprobe for them (libxtables ``xtables_load_ko``), which fails inside a pod.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Backend(StrEnum):
    """How the mesh programs the kernel."""

    LEGACY = "legacy"  # iptables-legacy: the x_tables sockopt interface
    NFT = "nft"  # iptables-nft: nf_tables, with nft_compat for xt matches and targets
    NFTABLES = "nftables"  # native nft rules


class Family(StrEnum):
    IPV4 = "ipv4"
    IPV6 = "ipv6"


# NFPROTO_* numbers as they appear in nf_tables module requests (include/uapi/linux/netfilter.h).
NFPROTO = {"inet": 1, "ip": 2, "arp": 3, "netdev": 5, "bridge": 7, "ip6": 10}

XT_PREFIX = {Family.IPV4: "ip", Family.IPV6: "ip6"}

NFNETLINK = "net-pf-16-proto-12"
NFNL_SUBSYS_NFTABLES = "nfnetlink-subsys-10"
NFNL_SUBSYS_NFT_COMPAT = "nfnetlink-subsys-11"


@dataclass(frozen=True, order=True)
class Request:
    """One module request.

    ``candidates`` are tried in order, as the kernel does for nf_tables expressions (family-specific
    name first). ``by_binary`` marks requests only the iptables binary makes: the kernel never
    autoloads them, so a pod cannot get them by any means.
    """

    candidates: tuple[str, ...]
    by_binary: bool = field(compare=False, default=False)

    @property
    def name(self) -> str:
        return self.candidates[-1]


@dataclass(frozen=True)
class Need:
    """A request and the rules (``file:line what``) that make it.

    ``warning`` is None when the rules fail to apply if nothing answers the request (required);
    otherwise the request is only recommended: the rules still apply and the tool prints this
    warning (measured per iptables version, see knowledge/iptables_versions.py).
    """

    request: Request
    reasons: tuple[str, ...]
    warning: str | None = None

    @property
    def required(self) -> bool:
        return self.warning is None


def table_request(family: Family, table: str) -> str:
    return f"{XT_PREFIX[family]}table_{table}"


def xt_extension_request(family: Family, name: str) -> str:
    return f"{XT_PREFIX[family]}t_{name}"


def iptables_core_module(family: Family) -> str:
    return "ip_tables" if family is Family.IPV4 else "ip6_tables"


def nft_chain_request(nfproto: int, chain_type: str) -> str:
    return f"nft-chain-{nfproto}-{chain_type}"


def nft_expr_candidates(nfproto: int, expr: str) -> tuple[str, ...]:
    return (f"nft-expr-{nfproto}-{expr}", f"nft-expr-{expr}")
