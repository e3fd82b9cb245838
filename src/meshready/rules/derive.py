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
from meshready.knowledge.iptables_versions import DEFAULT_VERSION, warn_only
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
        # request -> warnings when nothing answers it; absent: required (one required use wins)
        self.warnings: dict[Request, list[str]] = {}
        self.required: set[Request] = set()
        # membership sets beside the ordered lists: 200k rules must stay linear
        self._seen: dict[Request, set[str]] = {}
        self._warned: dict[Request, set[str]] = {}

    def add(self, request: Request, reason: str, warning: str | None = None) -> None:
        if request not in self.reasons:
            self.order.append(request)
            self.reasons[request] = []
            self._seen[request] = set()
        if reason not in self._seen[request]:
            self._seen[request].add(reason)
            self.reasons[request].append(reason)
        if warning is None:
            self.required.add(request)
        elif warning not in self._warned.setdefault(request, set()):
            self._warned[request].add(warning)
            self.warnings.setdefault(request, []).append(warning)

    def needs(self) -> list[Need]:
        return [
            Need(
                r,
                tuple(self.reasons[r]),
                None if r in self.required else "; ".join(self.warnings[r]),
            )
            for r in self.order
        ]


def needs_for(
    rulesets: Iterable[Ruleset], backend: Backend, iptables_version: str = DEFAULT_VERSION
) -> list[Need]:
    """Every request the rules make under ``backend``, each with the rules that make it.

    ``iptables_version``: the iptables userspace that applies them (the mesh image's own); it
    decides which of iptables-nft's requests are required and which only warn.
    """
    out = _Collector()
    for ruleset in rulesets:
        if isinstance(ruleset, NftRuleset):
            _native_nft(ruleset, out)
        elif backend is Backend.LEGACY:
            _legacy(ruleset, out)
        elif backend is Backend.NFT:
            _iptables_nft(ruleset, out, iptables_version)
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


def _iptables_nft(rs: XtRuleset, out: _Collector, version: str) -> None:
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
                name = NFT_MATCH_ALIASES.get(match, match)
                # Every match is first looked up through nft_compat (the revision query), even
                # one iptables then translates natively; whether an unanswered query is fatal
                # depends on the iptables version (knowledge/iptables_versions.py).
                warning = warn_only(version, name, match in rule.bare_matches)
                native = match in NFT_NATIVE_MATCHES and match not in rule.bare_matches
                how = "revision query via nft_compat" if native else "xt match via nft_compat"
                out.add(Request((NFNL_SUBSYS_NFT_COMPAT,)), f"{where} -m {match} ({how})", warning)
                out.add(
                    Request((xt_extension_request(fam, name),)),
                    f"{where} -m {match} ({how})",
                    warning,
                )
                if native:
                    for expr in NFT_NATIVE_MATCHES[match]:
                        out.add(Request(nft_expr_candidates(nfproto, expr)), f"{where} -m {match}")
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
