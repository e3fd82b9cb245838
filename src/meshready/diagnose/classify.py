"""Signals -> findings, ranked: the most likely cause first.

Rules of thumb that keep clean logs clean: names of missing tables, extensions, modules and SELinux
denials are findings on their own; weak messages (an errno, "No chain/target/match by that name",
a failed line number, an error-level line) only count when the log also shows the run failed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from meshready.assess.resolve import knowledge_index, resolve_request
from meshready.diagnose import fixes
from meshready.diagnose.logrules import LogRules, modules_for_needs, modules_for_rules
from meshready.diagnose.model import DiagnoseContext, Evidence, Finding, Fix
from meshready.diagnose.readers import LogLine
from meshready.diagnose.signals import Kind, Signal
from meshready.errors import InputError
from meshready.knowledge import log_causes as lc
from meshready.knowledge.iptables import CORE_EXTENSIONS
from meshready.knowledge.nftables import KEYWORD_EXPRESSIONS
from meshready.knowledge.renames import gone_on, parse_kernel_version, rename_for
from meshready.knowledge.requests import (
    NFNL_SUBSYS_NFT_COMPAT,
    Backend,
    Family,
    Request,
    iptables_core_module,
    nft_chain_request,
    nft_expr_candidates,
    table_request,
    xt_extension_request,
)
from meshready.rules.derive import needs_for
from meshready.rules.load import get_profile, profile_rulesets
from meshready.rules.nft_parser import parse_nft

_MAX_EVIDENCE = 8
_POSITION_WORDS = ("index", "position", "handle")


@dataclass
class _State:
    signals: list[Signal]
    lines: list[LogLine]
    rules: LogRules
    context: DiagnoseContext
    backend: Backend
    kernel_release: str | None
    failed: bool
    profile: str | None
    profile_used: bool = False

    def of(self, *kinds: Kind) -> list[Signal]:
        return [s for s in self.signals if s.kind in kinds]


def classify(
    signals: list[Signal], lines: list[LogLine], rules: LogRules, context: DiagnoseContext
) -> tuple[list[Finding], Backend, str | None, bool]:
    kernel = context.kernel_release or next(
        (s.name for s in signals if s.kind is Kind.KERNEL and s.name), None
    )
    state = _State(
        signals=signals,
        lines=lines,
        rules=rules,
        context=context,
        backend=context.backend or _backend(signals, rules),
        kernel_release=kernel,
        failed=_failed(signals),
        profile=_profile(lines, context),
    )
    findings: list[Finding] = []
    for build in (
        _module_request_denied,
        _module_not_in_kernel,
        _legacy_table_missing,
        _extension_missing,
        _nftables_unavailable,
        _permission_denied,
        _redirect_not_applied,
        _rule_rejected,
    ):
        findings.extend(build(state))
    if not findings and state.failed:
        findings.append(_unknown(state))
    _promote_root_causes(findings)
    findings.sort(key=lambda f: (-f.confidence, lc.CAUSES[f.cause].rank))
    return findings, state.backend, kernel, state.failed


# --- context -------------------------------------------------------------------------------------


def _backend(signals: list[Signal], rules: LogRules) -> Backend:
    votes = {"legacy": 0, "nft": 0, "nftables": 0}
    for s in signals:
        if s.kind in (Kind.NFT_RULE_ERROR,):
            votes["nftables"] += 3
        elif s.kind in (Kind.TABLE_MISSING, Kind.CORE_MISSING):
            votes["legacy"] += 3
        elif s.kind is Kind.EXTENSION_MISSING and s.revision is not None:
            votes["nft"] += 3
        elif s.kind is Kind.NFT_UNAVAILABLE:
            votes[s.backend or "nft"] += 2
        if s.backend and s.kind in (Kind.BACKEND,):
            votes[s.backend] += 1
    if rules.nft and not rules.xt:
        votes["nftables"] += 2
    best = max(votes, key=lambda k: (votes[k], k == "legacy"))
    return Backend(best) if votes[best] else Backend.LEGACY


def _failed(signals: list[Signal]) -> bool:
    strong = {
        Kind.TABLE_MISSING,
        Kind.CORE_MISSING,
        Kind.EXTENSION_MISSING,
        Kind.NFT_UNAVAILABLE,
        Kind.NFT_RULE_ERROR,
        Kind.VALIDATION_FAILED,
        Kind.AVC_MODULE,
    }
    return any(s.kind is Kind.FAILURE or s.kind in strong for s in signals)


def _profile(lines: list[LogLine], context: DiagnoseContext) -> str | None:
    name = (_container_in(lines, context) or "").lower()
    sample = " ".join(ln.text for ln in lines[:400])
    if "linkerd" in name or "proxy-init" in name or "PROXY_INIT_" in sample:
        return "linkerd"
    if "istio" in name or "ISTIO_" in sample or "istio" in sample.lower():
        if "TPROXY" in sample and "ISTIO_" in sample:
            return "istio-sidecar-tproxy"
        if "ztunnel" in name or "ambient" in sample.lower():
            return "istio-ambient"
        return "istio-sidecar"
    return None


def _evidence(signals: Iterable[Signal], extra: Iterable[LogLine] = ()) -> tuple[Evidence, ...]:
    seen: dict[int, Evidence] = {}
    for line in [*(s.line for s in signals), *extra]:
        if line.lineno not in seen:
            seen[line.lineno] = Evidence(line.lineno, _clip(line.raw))
    ordered = sorted(seen.values(), key=lambda e: e.line)
    return tuple(ordered[:_MAX_EVIDENCE])


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= 400 else text[:397] + "..."


def _finding(
    state: _State,
    cause: str,
    modules: tuple[str, ...],
    signals: list[Signal],
    explanation: str,
    fix: Fix,
    confidence: float,
    rule_modules: tuple[str, ...] = (),
    selinux: bool = False,
    extra_evidence: Iterable[LogLine] = (),
) -> Finding:
    ev = _evidence(signals, extra_evidence)
    confirmed = [m for m in modules if m in state.context.missing_modules]
    if confirmed:
        node = f" of {state.context.node}" if state.context.node else ""
        explanation += f" The node{node}'s own assessment confirms missing: {', '.join(confirmed)}."
        confidence = min(0.99, confidence + 0.05)
    return Finding(
        cause=cause,
        title=lc.CAUSES[cause].title,
        modules=modules,
        evidence=tuple(e.text for e in ev),
        explanation=explanation,
        fix=fix,
        confidence=confidence,
        rule_modules=rule_modules,
        evidence_lines=ev,
        selinux=selinux,
        backend=state.backend.value,
    )


def _dedupe(items: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for item in items:
        if item and item not in out:
            out.append(item)
    return tuple(out)


def _module_for_request(request: str, state: _State) -> str:
    """The real module that answers a request, by the kernel's own naming."""
    index = knowledge_index(parse_kernel_version(state.kernel_release or ""))
    found = resolve_request(Request((request,)), index).modules
    if found:
        return found[0]
    name = request.replace("-", "_")
    m = re.match(r"^ip6?t_(\w+)$", name)
    if m:
        return f"xt_{m.group(1)}"
    m = re.match(r"^nft_expr_(?:\d+_)?(\w+)$", name)
    if m:
        return f"nft_{m.group(1)}"
    return name


def _family(signal: Signal) -> Family:
    return Family.IPV6 if signal.family == "ipv6" else Family.IPV4


def _rule_modules(state: _State, backend: Backend) -> tuple[str, ...]:
    if state.rules.empty:
        return _profile_modules(state, backend)
    try:
        modules, _needs = modules_for_rules(state.rules, backend, state.kernel_release)
    except InputError:
        return ()
    return modules


# Lines only a given mesh init container writes: istio-iptables keeps its rules in
# /tmp/iptables-rules-<time>.txt (tools/istio-iptables, github.com/istio/istio); Linkerd's
# proxy-init names its chains PROXY_INIT_*.
_CONTAINER_MARKS = (("/tmp/iptables-rules-", "istio-init"), ("PROXY_INIT_", "linkerd-init"))


def _container_in(lines: list[LogLine], context: DiagnoseContext) -> str | None:
    if context.container is not None:
        return context.container
    for line in lines[:400]:
        for mark, container in _CONTAINER_MARKS:
            if mark in line.text:
                return container
    return None


def _container(state: _State) -> str | None:
    return _container_in(state.lines, state.context)


def _profile_modules(state: _State, backend: Backend) -> tuple[str, ...]:
    """Without rules in the log, a known container stands for its mesh's usual rules."""
    if _container(state) is None or state.profile is None:
        return ()
    try:
        profile = get_profile(state.profile)
        if backend not in profile.backends:
            return ()
        needs = needs_for(profile_rulesets(profile), backend)
    except InputError:
        return ()
    state.profile_used = True
    return modules_for_needs(needs, state.kernel_release)


def _rules_phrase(state: _State) -> str:
    if state.profile_used:
        return (
            f" The log does not print its rules; meshready's {state.profile} profile (the rules "
            f"{_container(state)} usually applies) needs, in all: "
        )
    return " The rules in this log need, in all: "


def _selinux_in_log(state: _State) -> bool:
    return bool(state.of(Kind.AVC_MODULE, Kind.AVC_OTHER)) or any(
        "selinux" in ln.text.lower() for ln in state.lines
    )


# --- causes --------------------------------------------------------------------------------------


def _module_request_denied(state: _State) -> list[Finding]:
    avc = state.of(Kind.AVC_MODULE)
    refused = [
        s
        for s in state.of(Kind.MODULE_LOAD_REFUSED)
        if s.errno and not s.errno.lower().startswith("permission")
    ]
    if not avc and not refused:
        return []
    requests = _dedupe(s.name or "" for s in avc)
    modules = _dedupe(
        [
            *(_module_for_request(r, state) for r in requests),
            *(_module_for_request(s.name, state) for s in refused if s.name),
        ]
    )
    enforcing = any(s.extra[1:] == ("enforcing",) for s in avc) or bool(refused)
    parts = []
    if avc:
        contexts = _dedupe(
            s.detail.split(":")[2] if s.detail.count(":") >= 2 else s.detail for s in avc
        )
        comms = _dedupe(s.extra[0] for s in avc if s.extra)
        parts.append(
            f"SELinux denied module_request for {', '.join(requests)} "
            f"(process {', '.join(comms) or '?'}, domain {', '.join(contexts) or '?'}): the kernel "
            f"needed {', '.join(modules)} for the rules and was not allowed to load "
            f"{'them' if len(modules) > 1 else 'it'} on the container's behalf, so iptables saw "
            "the table, match or target as missing."
        )
        if not enforcing:
            parts.append(
                "The denials are marked permissive=1 (logged, not enforced), so they are probably "
                "not what failed."
            )
    if refused:
        errnos = _dedupe(s.errno or "" for s in refused)
        parts.append(
            f"Loading {', '.join(m for m in modules) or 'a module'} was refused "
            f"({', '.join(errnos)}): module signing, kernel lockdown, "
            "kernel.modules_disabled=1 or a missing CAP_SYS_MODULE stops loads from here."
        )
    rule_mods = _rule_modules(state, state.backend)
    all_mods = _dedupe([*modules, *rule_mods])
    return [
        _finding(
            state,
            lc.MODULE_REQUEST_DENIED,
            all_mods,
            [*avc, *refused],
            " ".join(parts),
            fixes.load_modules(all_mods, state.backend.value, state.profile, selinux=bool(avc)),
            0.97 if enforcing else 0.45,
            rule_modules=rule_mods,
            selinux=bool(avc),
        )
    ]


def _module_not_in_kernel(state: _State) -> list[Finding]:
    found = state.of(Kind.MODPROBE_NOT_FOUND)
    if not found:
        return []
    names = _dedupe((s.name or "").replace("-", "_") for s in found)
    release = state.kernel_release or next((s.detail for s in found if s.detail), None)
    version = parse_kernel_version(release or "")
    renamed = tuple(
        f"{n} (now {r.new})"
        for n in names
        if (r := gone_on(n, version) or rename_for(n)) is not None
    )
    real = tuple(n for n in names if rename_for(n) is None)
    modules = real or names
    where = f" for kernel {release}" if release else ""
    text = (
        f"modprobe found no {', '.join(modules)} module{'s' if len(modules) > 1 else ''}{where}. "
        "Either the kernel was built without it, it is built in (then modprobe usually says so "
        "and nothing needs loading), or modprobe looked in a module tree that is not the "
        "node's (a container image's own /lib/modules)."
    )
    if renamed:
        text += " Old names that no longer exist on this kernel: " + ", ".join(renamed) + "."
    only_renamed = not real
    return [
        _finding(
            state,
            lc.MODULE_NOT_IN_KERNEL,
            modules,
            found,
            text,
            fixes.not_in_kernel(modules, release, renamed),
            0.3 if only_renamed else 0.85,
        )
    ]


def _legacy_table_missing(state: _State) -> list[Finding]:
    sigs = [
        s for s in state.of(Kind.TABLE_MISSING, Kind.CORE_MISSING) if s.backend in (None, "legacy")
    ]
    if not sigs:
        return []
    implicated: list[str] = []
    tables: list[str] = []
    for s in sigs:
        fam = _family(s)
        implicated.append(iptables_core_module(fam))
        if s.table:
            implicated.append(_module_for_request(table_request(fam, s.table), state))
            tables.append(f"{'ip6tables' if fam is Family.IPV6 else 'iptables'} {s.table}")
    implicated_t = _dedupe(implicated)
    rule_mods = _rule_modules(state, Backend.LEGACY)
    modules = _dedupe([*implicated_t, *rule_mods])
    no_tree = state.of(Kind.MODPROBE_NO_TREE)
    what = ", ".join(_dedupe(tables)) or "the legacy tables"
    text = (
        f"iptables-legacy could not open {what}: {' or '.join(implicated_t)} is not loaded on the "
        "node. Only the iptables binary itself loads the core module (ip_tables / ip6_tables), "
        "and from inside a pod it cannot (there is no /lib/modules there); once the core is "
        "loaded the kernel loads iptable_<table> on demand. Load them on the node."
    )
    if no_tree:
        text += " The log confirms it: modprobe had no module tree inside the container."
    if rule_mods:
        text += (
            _rules_phrase(state) + ", ".join(rule_mods) + " (derived with meshready's "
            "assessment, not only the first that failed)."
        )
    return [
        _finding(
            state,
            lc.LEGACY_TABLE_MISSING,
            modules,
            [*sigs, *no_tree],
            text,
            fixes.load_modules(modules, "legacy", state.profile, _selinux_in_log(state)),
            0.9,
            rule_modules=rule_mods,
            selinux=_selinux_in_log(state),
        )
    ]


def _extension_missing(state: _State) -> list[Finding]:
    sigs = state.of(Kind.EXTENSION_MISSING)
    if not sigs:
        return []
    backend = Backend.NFT if any(s.backend == "nft" for s in sigs) else state.backend
    if backend is Backend.NFTABLES:
        backend = Backend.NFT
    implicated: list[str] = []
    described: list[str] = []
    for s in sigs:
        fam = _family(s)
        name = s.name or ""
        if name in CORE_EXTENSIONS[fam.value]:
            implicated.append(iptables_core_module(fam))
            continue
        module = _module_for_request(xt_extension_request(fam, name), state)
        implicated.append(module)
        rev = f" revision {s.revision}" if s.revision else ""
        described.append(f"{s.ext_kind or 'extension'} '{name}'{rev} ({module})")
    if backend is Backend.NFT:
        implicated.append(_module_for_request(NFNL_SUBSYS_NFT_COMPAT, state))
    implicated_t = _dedupe(implicated)
    rule_mods = _rule_modules(state, backend)
    modules = _dedupe([*implicated_t, *rule_mods])
    failed_rules = [
        s for s in state.of(Kind.RULE_FAILED) if (s.errno or "").lower().startswith("no such file")
    ]
    text = (
        f"The kernel could not provide {', '.join(_dedupe(described)) or 'an extension'}. "
        "iptables asks the kernel for ipt_<name> / ip6t_<name>; the module that answers is "
        "xt_<name>. "
    )
    if backend is Backend.NFT:
        text += (
            "With iptables-nft the extension runs through nft_compat, which must be there too; "
            "the failed rule was then refused (No such file or directory). "
        )
    if state.context.kernel_release is None and any(
        "gvisor" in ln.text.lower() or "runsc" in ln.text.lower() for ln in state.lines
    ):
        text += "This looks like a gVisor sandbox, whose netstack has no such extension at all. "
    if rule_mods:
        text += _rules_phrase(state).lstrip() + ", ".join(rule_mods) + "."
    selinux = _selinux_in_log(state)
    return [
        _finding(
            state,
            lc.EXTENSION_MISSING,
            modules,
            [*sigs, *failed_rules],
            text.strip(),
            fixes.load_modules(modules, backend.value, state.profile, selinux),
            0.9,
            rule_modules=rule_mods,
            selinux=selinux,
        )
    ]


def _nft_span_modules(state: _State, rule: str, span: str) -> tuple[str | None, tuple[str, ...]]:
    """From nft's underlined part (or the whole rule) to the expression modules it needs.
    Returns (verdict, modules): verdict "position" / "chain" when no module is involved, "guess"
    when the underlined part names no expression and the modules come from the whole rule."""
    words = span.split()
    if words and words[0] in _POSITION_WORDS:
        return "position", ()
    if words and words[0] in ("jump", "goto"):
        return "chain", ()
    for word in words:
        expr = KEYWORD_EXPRESSIONS.get(word)
        if expr is not None:
            mod = _expr_module(expr, state)
            return None, (mod,) if mod else ()
    if "type nat" in rule or "type nat" in span:
        return None, (_module_for_request(nft_chain_request(1, "nat"), state),)
    if rule:
        return "guess", _nft_rule_modules(state, rule)
    return None, ()


def _nft_rule_modules(state: _State, rule: str) -> tuple[str, ...]:
    """Every modular expression of one nft command (nf_tables itself left out)."""
    try:
        parsed = parse_nft(rule, "log")
    except InputError:
        return ()
    mods = modules_for_needs(needs_for([parsed], Backend.NFTABLES), state.kernel_release)
    return tuple(m for m in mods if m not in ("nf_tables", "nfnetlink"))


def _expr_module(expr: str, state: _State) -> str | None:
    index = knowledge_index(parse_kernel_version(state.kernel_release or ""))
    res = resolve_request(Request(nft_expr_candidates(1, expr)), index)
    if res.modules:
        return res.modules[0]
    return f"nft_{expr}"


def _nftables_unavailable(state: _State) -> list[Finding]:
    out: list[Finding] = []
    unavailable = state.of(Kind.NFT_UNAVAILABLE)
    rule_errors = state.of(Kind.NFT_RULE_ERROR)
    implicated: list[str] = []
    sigs: list[Signal] = []
    described: list[str] = []
    guess = False
    for s in unavailable:
        sigs.append(s)
        if s.name and s.name.startswith("chain:"):
            ctype = s.name.split(":", 1)[1]
            implicated.append(_module_for_request(nft_chain_request(2, ctype), state))
            described.append(f"the {ctype} chain type (table {s.table or ctype})")
        else:
            implicated.extend(("nf_tables", "nfnetlink"))
            described.append(f"nf_tables itself ({s.errno or s.detail or 'unavailable'})")
    for s in rule_errors:
        errno = (s.errno or "").lower()
        rule, span = s.extra if len(s.extra) == 2 else ("", "")
        if "no such file" in errno:
            verdict, mods = _nft_span_modules(state, rule, span)
            if verdict in ("position", "chain") or not mods:
                continue  # a rule-level problem: see rule-rejected
            if verdict == "guess":
                guess = True
            implicated.extend(mods)
            sigs.append(s)
            described.append(f"the expression in '{span or rule}' ({', '.join(mods)})")
        elif re.search(r"not supported|protocol|family", errno):
            sigs.append(s)
            implicated.append("nf_tables")
            if "type nat" in rule:
                implicated.append(_module_for_request(nft_chain_request(1, "nat"), state))
            described.append(f"nf_tables for '{rule or '?'}' ({s.errno})")
    if not sigs:
        return out
    backend = Backend.NFTABLES if rule_errors else Backend.NFT
    if state.backend in (Backend.NFT, Backend.NFTABLES):
        backend = state.backend
    implicated_t = _dedupe(implicated)
    rule_mods = _rule_modules(state, backend)
    modules = _dedupe([*implicated_t, *rule_mods])
    text = (
        "The nf_tables backend could not use the kernel: "
        + "; ".join(_dedupe(described))
        + ". "
        + (
            "'Could not fetch rule set generation id' means iptables-nft got no answer from "
            "nf_tables at all (nf_tables or nfnetlink missing, or a kernel too old). "
            if any(s.name == "nf_tables" and s.kind is Kind.NFT_UNAVAILABLE for s in sigs)
            else ""
        )
        + (
            "nft's underline names no expression (the whole rule, or a set), so the modules named "
            "come from the whole rule: a best guess. "
            if guess
            else ""
        )
    )
    if rule_mods:
        text += _rules_phrase(state).lstrip() + ", ".join(rule_mods) + "."
    out.append(
        _finding(
            state,
            lc.NFTABLES_UNAVAILABLE,
            modules,
            sigs,
            text.strip(),
            fixes.nftables(modules, backend.value, state.profile),
            0.6 if guess else 0.85,
            rule_modules=rule_mods,
        )
    )
    return out


def _permission_denied(state: _State) -> list[Finding]:
    perms = state.of(Kind.PERMISSION)
    avc = state.of(Kind.AVC_OTHER)
    refused_perm = [
        s
        for s in state.of(Kind.MODULE_LOAD_REFUSED)
        if (s.errno or "").lower().startswith("permission")
    ]
    if not perms and not avc and not refused_perm:
        return []
    if perms and not avc and not state.failed and all(s.detail == "generic" for s in perms):
        # A stray "permission denied" with no failure: a probe that was allowed to fail.
        return []
    selinux = bool(avc) or _selinux_in_log(state)
    must_be_root = any("must be root" in (s.errno or "").lower() for s in perms)
    nft = any(s.backend in ("nft", "nftables") for s in perms)
    tables = _dedupe(s.table or "" for s in perms)
    text = (
        "The kernel refused the netfilter change itself (EPERM/EACCES), not for a missing "
        "module: the container "
        + (f"could not open table {', '.join(tables)} " if tables else "")
        + "lacks CAP_NET_ADMIN/CAP_NET_RAW, does not run as root, or is confined by its "
        "security label."
    )
    if avc:
        denied = _dedupe(f"{s.name or '?'} {s.detail}" for s in avc)
        text += " SELinux denied: " + "; ".join(denied) + "."
    elif selinux:
        text += " The log mentions SELinux: check the node's audit log for AVC denials."
    return [
        _finding(
            state,
            lc.PERMISSION_DENIED,
            (),
            [*perms, *avc, *refused_perm],
            text,
            fixes.permission(selinux, must_be_root, nft),
            0.85 if perms else 0.6,
            selinux=selinux,
        )
    ]


def _redirect_not_applied(state: _State) -> list[Finding]:
    if state.of(Kind.VALIDATION_PASSED):
        return []
    failed = state.of(Kind.VALIDATION_FAILED)
    probes = state.of(Kind.VALIDATION_PROBE)
    if not failed and len(probes) < 3:
        return []
    addr = probes[0].name if probes else None
    text = (
        "The validation probe "
        + (f"connected to {addr} and " if addr else "")
        + "was not redirected to the proxy: no interception rules were in place in this pod. "
        "The rules are written by the mesh's CNI plugin on the node; it did not run for this pod "
        "(pod scheduled before the plugin was ready on the node) or it failed there."
    )
    confidence = 0.85 if failed else 0.55
    return [
        _finding(
            state,
            lc.REDIRECT_NOT_APPLIED,
            (),
            [*failed, *probes[:3]],
            text,
            fixes.redirect(state.context.container),
            confidence,
        )
    ]


def _rule_rejected(state: _State) -> list[Finding]:
    # A named extension explains the rule failures that follow it.
    failed_rules = [] if state.of(Kind.EXTENSION_MISSING) else state.of(Kind.RULE_FAILED)
    chains = state.of(Kind.CHAIN_MISSING)
    enoent = state.of(Kind.XT_ENOENT) if state.failed else []
    positional: list[Signal] = []
    for s in state.of(Kind.NFT_RULE_ERROR):
        if "no such file" not in (s.errno or "").lower():
            continue
        rule, span = s.extra if len(s.extra) == 2 else ("", "")
        verdict, mods = _nft_span_modules(state, rule, span)
        if verdict in ("position", "chain") or not mods:
            positional.append(s)
    module_findings = state.of(
        Kind.TABLE_MISSING, Kind.CORE_MISSING, Kind.AVC_MODULE, Kind.NFT_UNAVAILABLE
    )
    if not state.failed:
        failed_rules = [s for s in failed_rules if s.detail.startswith("RULE_")]
    if module_findings:
        # A named cause already explains the failed lines.
        failed_rules, enoent = [], []
    sigs = [*failed_rules, *chains, *enoent, *positional]
    if not sigs:
        return []
    line_no = next(
        (s.number for s in [*failed_rules, *state.of(Kind.RESTORE_LINE)] if s.number), None
    )
    failing_rule = state.rules.rule_at(line_no) if line_no else None
    candidates: tuple[str, ...] = ()
    if failing_rule:
        candidates = _candidates_for_rule(state, failing_rule)
    parts: list[str] = []
    errnos = _dedupe(s.errno or "" for s in failed_rules)
    if failed_rules:
        parts.append(
            "The kernel refused a rule"
            + (f" ({', '.join(errnos)})" if errnos else "")
            + (f" at line {line_no}" if line_no else "")
            + " without naming what was missing."
        )
        if any("not supported" in e.lower() for e in errnos):
            parts.append(
                "'Operation not supported' from iptables-nft usually means a match or target "
                "the kernel's nft_compat cannot provide in this revision, or a kernel older than "
                "the iptables in the image."
            )
    if chains:
        parts.append(
            "A rule jumps to chain "
            + ", ".join(_dedupe(s.name or "" for s in chains))
            + ", which does not exist: an ordering or idempotency problem, not a kernel module."
        )
    if enoent:
        parts.append(
            "'No chain/target/match by that name' means either a missing chain or a match or "
            "target whose module could not be loaded."
        )
    for s in positional:
        rule_text, span = s.extra if len(s.extra) == 2 else ("", "")
        parts.append(
            f"nft refused '{rule_text}' at '{span}': the rule refers to a rule position or chain "
            "that does not exist (No such file or directory), not to a missing module."
        )
    if failing_rule:
        parts.append(f"The failing line is: {failing_rule}")
    confidence = 0.5 if (failed_rules or enoent) else 0.6
    return [
        _finding(
            state,
            lc.RULE_REJECTED,
            candidates,
            sigs,
            " ".join(parts),
            fixes.rule_rejected(failing_rule, candidates),
            confidence,
        )
    ]


def _candidates_for_rule(state: _State, rule: str) -> tuple[str, ...]:
    for (family, table), rules in state.rules.xt.items():
        if any(text == rule for _n, text in rules):
            single = LogRules(
                xt={(family, table): [(0, rule)]},
                chains={(family, table): state.rules.chains.get((family, table), set())},
            )
            try:
                mods, _ = modules_for_rules(single, state.backend, state.kernel_release)
            except InputError:
                return ()
            return tuple(m for m in mods if m not in ("ip_tables", "ip6_tables", "x_tables"))
    return ()


def _unknown(state: _State) -> Finding:
    failures = [s for s in state.of(Kind.FAILURE) if s.detail != "error-level line"]
    errors = [s for s in state.of(Kind.FAILURE) if s.detail == "error-level line"]
    tools = state.of(Kind.TOOL_MISSING)
    sigs = [*tools, *errors[:4], *failures[:4]]
    text = (
        "The run failed, but not with a message meshready recognises. The evidence shows the "
        "error lines and how the run ended."
    )
    if tools:
        text += (
            " The program it ran is missing where it ran: "
            + ", ".join(_dedupe(s.name or "" for s in tools))
            + " (install it on the node or in the image, or choose the other iptables mode)."
        )
    return _finding(
        state,
        lc.UNKNOWN,
        (),
        sigs,
        text,
        fixes.unknown(),
        0.2,
    )


def _promote_root_causes(findings: list[Finding]) -> None:
    """A module that does not exist explains every finding that needs it: rank it first."""
    absent = next((f for f in findings if f.cause == lc.MODULE_NOT_IN_KERNEL), None)
    if absent is None or absent.confidence < 0.5:
        return
    others = {m for f in findings if f is not absent for m in f.modules}
    if others & set(absent.modules):
        i = findings.index(absent)
        findings[i] = Finding(
            **{**absent.__dict__, "confidence": 0.93},
        )
