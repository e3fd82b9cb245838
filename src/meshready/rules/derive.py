"""From parsed rules to the module requests the kernel (or iptables) makes for them, per backend."""

from __future__ import annotations

from collections.abc import Iterable

from meshready.errors import InputError
from meshready.knowledge.iptables import (
    CORE_EXTENSIONS,
    NFT_MATCH_ALIASES,
    NFT_NATIVE_MATCHES,
    NFT_RULE_EXPRESSIONS,
    nft_chain_type,
)
from meshready.knowledge.requests import (
    NFNETLINK,
    NFNL_SUBSYS_NFT_COMPAT,
    NFNL_SUBSYS_NFTABLES,
    NFPROTO,
    Backend,
    Family,
    Need,
    Request,
    iptables_core_module,
    nft_chain_request,
    nft_expr_candidates,
    table_request,
    xt_extension_request,
)
from meshready.rules.model import NftRuleset, Ruleset, XtRuleset


class _Collector:
    def __init__(self) -> None:
        self.order: list[Request] = []
        self.reasons: dict[Request, list[str]] = {}

    def add(self, request: Request, reason: str) -> None:
        if request not in self.reasons:
            self.order.append(request)
            self.reasons[request] = []
        if reason not in self.reasons[request]:
            self.reasons[request].append(reason)

    def needs(self) -> list[Need]:
        return [Need(r, tuple(self.reasons[r])) for r in self.order]


def needs_for(rulesets: Iterable[Ruleset], backend: Backend) -> list[Need]:
    """Every request the rules make under ``backend``, each with the rules that make it."""
    out = _Collector()
    for ruleset in rulesets:
        if isinstance(ruleset, NftRuleset):
            _native_nft(ruleset, out)
        elif backend is Backend.LEGACY:
            _legacy(ruleset, out)
        elif backend is Backend.NFT:
            _iptables_nft(ruleset, out)
        else:
            raise InputError(
                ruleset.source,
                "iptables rules cannot be applied by the native nftables backend; use --backend "
                "legacy or nft, or give nft rules",
            )
    return out.needs()


def _legacy(rs: XtRuleset, out: _Collector) -> None:
    fam = rs.family
    core = iptables_core_module(fam)
    binary = "ip6tables" if fam is Family.IPV6 else "iptables"
    for table in rs.tables:
        out.add(
            Request((core,), by_binary=True),
            f"{rs.source}:{table.line} {binary}-legacy itself (x_tables sockopt interface)",
        )
        out.add(
            Request((table_request(fam, table.name),)), f"{rs.source}:{table.line} *{table.name}"
        )
        for rule in table.rules:
            where = f"{rs.source}:{rule.line}"
            for match in rule.matches:
                if match in CORE_EXTENSIONS[fam.value]:
                    continue
                out.add(Request((xt_extension_request(fam, match),)), f"{where} -m {match}")
            if rule.target:
                if rule.target in CORE_EXTENSIONS[fam.value]:
                    continue
                out.add(
                    Request((xt_extension_request(fam, rule.target),)), f"{where} -j {rule.target}"
                )


def _nf_tables_base(source: str, out: _Collector, line: int) -> None:
    out.add(Request((NFNETLINK,)), f"{source}:{line} netlink socket to netfilter (nfnetlink)")
    out.add(Request((NFNL_SUBSYS_NFTABLES,)), f"{source}:{line} nf_tables subsystem")


def _iptables_nft(rs: XtRuleset, out: _Collector) -> None:
    fam = rs.family
    nfproto = NFPROTO["ip6" if fam is Family.IPV6 else "ip"]
    for table in rs.tables:
        _nf_tables_base(rs.source, out, table.line)
        chains = set(table.builtin_chains_used)
        for chain in sorted(chains):
            ctype = nft_chain_type(table.name, chain)
            if ctype == "filter":
                continue
            out.add(
                Request((nft_chain_request(nfproto, ctype),)),
                f"{rs.source}:{table.line} {table.name} {chain} ({ctype} chain)",
            )
        for rule in table.rules:
            where = f"{rs.source}:{rule.line}"
            for expr in NFT_RULE_EXPRESSIONS:
                out.add(Request(nft_expr_candidates(nfproto, expr)), f"{where} {expr} (every rule)")
            for match in rule.matches:
                if match in NFT_NATIVE_MATCHES:
                    for expr in NFT_NATIVE_MATCHES[match]:
                        out.add(Request(nft_expr_candidates(nfproto, expr)), f"{where} -m {match}")
                    continue
                name = NFT_MATCH_ALIASES.get(match, match)
                out.add(
                    Request((NFNL_SUBSYS_NFT_COMPAT,)),
                    f"{where} -m {match} (xt match via nft_compat)",
                )
                out.add(Request((xt_extension_request(fam, name),)), f"{where} -m {match}")
            if rule.target:
                out.add(
                    Request((NFNL_SUBSYS_NFT_COMPAT,)),
                    f"{where} -j {rule.target} (xt target via nft_compat)",
                )
                out.add(
                    Request((xt_extension_request(fam, rule.target),)), f"{where} -j {rule.target}"
                )


def _native_nft(rs: NftRuleset, out: _Collector) -> None:
    first_line = min(
        [t[2] for t in rs.tables] + [c.line for c in rs.chains] + [r.line for r in rs.rules] + [1]
    )
    if rs.tables or rs.chains or rs.rules:
        _nf_tables_base(rs.source, out, first_line)
    for chain in rs.chains:
        if chain.chain_type is None or chain.chain_type == "filter":
            continue
        nfproto = _nfproto(rs.source, chain.family, chain.line)
        out.add(
            Request((nft_chain_request(nfproto, chain.chain_type),)),
            f"{rs.source}:{chain.line} chain {chain.table} {chain.name} (type {chain.chain_type})",
        )
    for rule in rs.rules:
        nfproto = _nfproto(rs.source, rule.family, rule.line)
        for expr in rule.expressions:
            out.add(Request(nft_expr_candidates(nfproto, expr)), f"{rs.source}:{rule.line} {expr}")


def _nfproto(source: str, family: str, line: int) -> int:
    if family not in NFPROTO:
        raise InputError(source, f"unknown nft family {family!r}", line)
    return NFPROTO[family]
