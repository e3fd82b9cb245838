"""Signals -> findings, ranked: the most likely cause first.

Rules of thumb:
- never silent on failure: a log that shows a failed step gets at least one finding (``unknown``
  with the evidence quoted when no known cause fits);
- clean logs stay clean: names of missing tables, extensions and SELinux denials are findings on
  their own; weak messages ("No chain/target/match by that name" after a cleanup command, a chain
  of the tool's own that is not there yet) only count when the log also shows the run failed;
- the fatal line decides: when a warning ("Extension X revision 0 not supported") and a fatal
  error with a cause of its own both appear, the fatal error's cause is the finding and the
  warning is supporting evidence;
- a modprobe message from a container says nothing about the node: ``module-not-in-kernel`` needs
  the node's own assessment (``DiagnoseContext.absent_modules``).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from operator import attrgetter

from meshready.assess.resolve import knowledge_index, resolve_request
from meshready.diagnose import fixes
from meshready.diagnose.logrules import LogRules, modules_for_needs, modules_for_rules
from meshready.diagnose.model import DiagnoseContext, Evidence, Finding, Fix
from meshready.diagnose.readers import LogLine
from meshready.diagnose.signals import Errno, Kind, Signal, Step
from meshready.errors import InputError
from meshready.knowledge import log_causes as lc
from meshready.knowledge.iptables import COMMANDS, CORE_EXTENSIONS, JUMP_OPTIONS, TABLE_OPTIONS
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
    _mentioned: dict[str, bool] = field(default_factory=dict)

    def of(self, *kinds: Kind) -> list[Signal]:
        return [s for s in self.signals if s.kind in kinds]

    def mentions(self, word: str) -> bool:
        """Whether any line has ``word`` (lower case) in it, in any case. Asked once per word:
        a long log has a million lines, joined and lower-cased here in blocks (the same text as
        the lines lower-cased one by one: the only context str.lower reads, for a final sigma,
        stops at a newline)."""
        if word not in self._mentioned:
            text = attrgetter("text")
            self._mentioned[word] = any(
                word in "\n".join(map(text, self.lines[i : i + 10_000])).lower()
                for i in range(0, len(self.lines), 10_000)
            )
        return self._mentioned[word]


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
        _legacy_table_missing,
        _extension_missing,
        _nftables_unavailable,
        _ipv6_disabled,
        _permission_denied,
        _lsm_denied,
        _tool_missing,
        _foreign_rules,
        _leftover_rules,
        _xtables_lock,
        _container_modprobe_failed,
        _redirect_not_applied,
        _rule_rejected,
    ):
        findings.extend(build(state))
    findings = _fatal_decides(state, findings)
    findings.extend(_module_not_in_kernel(state, findings))
    if not findings and state.failed:
        findings.append(_unknown(state))
    findings = _promote_root_causes(findings)
    findings.sort(key=lambda f: (-f.confidence, lc.CAUSES[f.cause].rank))
    return findings, state.backend, kernel, state.failed


# --- context -------------------------------------------------------------------------------------


def _backend(signals: list[Signal], rules: LogRules) -> Backend:
    votes = dict.fromkeys(Backend, 0)
    for s in signals:
        if s.kind in (Kind.NFT_RULE_ERROR,):
            votes[Backend.NFTABLES] += 3
        elif s.kind in (Kind.TABLE_MISSING, Kind.CORE_MISSING):
            votes[Backend.LEGACY] += 3
        elif s.kind is Kind.EXTENSION_MISSING and s.revision is not None:
            votes[Backend.NFT] += 3
        elif s.kind is Kind.NFT_UNAVAILABLE:
            votes[s.backend or Backend.NFT] += 2
        if s.backend and s.kind in (Kind.BACKEND,):
            votes[s.backend] += 1
    if rules.nft and not rules.xt:
        votes[Backend.NFTABLES] += 2
    best = max(votes, key=lambda k: (votes[k], k is Backend.LEGACY))
    return best if votes[best] else Backend.LEGACY


_STRONG = {
    Kind.TABLE_MISSING,
    Kind.CORE_MISSING,
    Kind.EXTENSION_MISSING,
    Kind.NFT_UNAVAILABLE,
    Kind.NFT_RULE_ERROR,
    Kind.VALIDATION_FAILED,
    Kind.AVC_MODULE,
    Kind.AVC_OTHER,
    Kind.MODPROBE_NOT_FOUND,
    Kind.MODULE_LOAD_REFUSED,
    Kind.PERMISSION,
    Kind.CHAIN_EXISTS,
    Kind.IPV6_DISABLED,
    Kind.FOREIGN_RULES,
    Kind.TOOL_MISSING,
    Kind.RULE_FAILED,
    Kind.RESTORE_LINE,
    Kind.FAILURE,
}


def _is_failure(s: Signal) -> bool:
    """Does this signal, on its own, show a failed step?"""
    if s.warning:
        return False
    if s.kind in _STRONG:
        return True
    if s.kind in (Kind.XT_ENOENT, Kind.CHAIN_MISSING):
        return s.step is Step.SETUP
    if s.kind is Kind.LOCK_HELD:
        return s.detail == "gave up"
    if s.kind is Kind.VALIDATION_PROBE:
        return bool(re.search(r"refused|timed? ?out|i/o timeout|reset", s.detail, re.IGNORECASE))
    return False


def _failed(signals: list[Signal]) -> bool:
    if any(s.kind is Kind.VALIDATION_PASSED for s in signals):
        # A passing validator: its earlier refused probes were retries.
        return any(_is_failure(s) for s in signals if s.kind is not Kind.VALIDATION_PROBE)
    return any(_is_failure(s) for s in signals)


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
    cause: lc.CauseCode,
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
        backend=state.backend,
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
    return signal.family or Family.IPV4


@dataclass(frozen=True)
class _RuleModules:
    """Every module the rules behind the failure need: the rules the log prints or, when it
    prints none, the usual rules of the mesh whose container wrote it (``from_profile``)."""

    modules: tuple[str, ...] = ()
    from_profile: bool = False


def _rule_modules(state: _State, backend: Backend) -> _RuleModules:
    if state.rules.empty:
        return _RuleModules(_profile_modules(state, backend), from_profile=True)
    try:
        modules, _needs = modules_for_rules(state.rules, backend, state.kernel_release)
    except InputError:
        return _RuleModules()
    return _RuleModules(modules)


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
    return modules_for_needs(needs, state.kernel_release)


def _rules_phrase(state: _State, found: _RuleModules) -> str:
    if found.from_profile:
        return (
            f" The log does not print its rules; meshready's {state.profile} profile (the rules "
            f"{_container(state)} usually applies) needs, in all: "
        )
    return " The rules in this log need, in all: "


def _selinux_in_log(state: _State) -> bool:
    return bool(state.of(Kind.AVC_MODULE, Kind.AVC_OTHER)) or state.mentions("selinux")


# --- causes --------------------------------------------------------------------------------------


def _module_request_denied(state: _State) -> list[Finding]:
    avc = state.of(Kind.AVC_MODULE)
    refused = [
        s
        for s in state.of(Kind.MODULE_LOAD_REFUSED)
        if s.errno in (Errno.EPERM, Errno.EKEYREJECTED, Errno.ENOKEY)
    ]
    autoload = _eacces_on_setup(state)
    if not avc and not refused and not autoload:
        return []
    requests = _dedupe(s.name or "" for s in avc)
    modules = _dedupe(
        [
            *(_module_for_request(r, state) for r in requests),
            *(_module_for_request(s.name, state) for s in refused if s.name),
            *(m for s in autoload for m in _setup_modules(state, s)),
        ]
    )
    enforcing = any(s.extra[1:] == ("enforcing",) for s in avc) or bool(refused) or bool(autoload)
    parts = []
    if autoload and not avc:
        what = _dedupe(
            (f"table {s.table}" if s.table else f"{s.ext_kind or 'extension'} {s.name}")
            for s in autoload
        )
        parts.append(
            f"Setting up {', '.join(what)} failed with a bare 'Permission denied': EACCES, which "
            "a missing capability never gives (that is EPERM, '(you must be root)'). A security "
            "module (SELinux, AppArmor) refused, and on table or extension setup what it refuses "
            "is the kernel loading the module on the container's behalf (the table lookup "
            "returns request_module()'s error)."
        )
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
    rule_mods = _rule_modules(state, state.backend).modules
    all_mods = _dedupe([*modules, *rule_mods])
    selinux = bool(avc) or (bool(autoload) and _selinux_in_log(state))
    confidence = 0.97 if (avc or refused) and enforcing else 0.8 if autoload else 0.45
    return [
        _finding(
            state,
            lc.CauseCode.MODULE_REQUEST_DENIED,
            all_mods,
            [*avc, *refused, *autoload],
            " ".join(parts),
            fixes.load_modules(
                all_mods,
                state.backend,
                state.profile,
                selinux=bool(avc) or bool(autoload),
            ),
            confidence,
            rule_modules=rule_mods,
            selinux=selinux,
        )
    ]


def _eacces_on_setup(state: _State) -> list[Signal]:
    return [
        s
        for s in state.of(Kind.PERMISSION)
        if s.errno is Errno.EACCES and s.detail in ("table setup", "extension setup")
    ]


def _setup_modules(state: _State, s: Signal) -> tuple[str, ...]:
    """The modules a table or extension setup asks the kernel for."""
    fam = _family(s)
    if s.table:
        return (
            iptables_core_module(fam),
            _module_for_request(table_request(fam, s.table), state),
        )
    if s.name:
        return (_module_for_request(xt_extension_request(fam, s.name), state),)
    return (iptables_core_module(fam),)


def _module_not_in_kernel(state: _State, findings: list[Finding]) -> list[Finding]:
    """Only the node's own assessment says a module is absent from its kernel."""
    absent = set(state.context.absent_modules)
    if not absent:
        return []
    found = state.of(Kind.MODPROBE_NOT_FOUND)
    named = [(s.name or "").replace("-", "_") for s in found]
    implicated = [m for f in findings for m in f.modules]
    modules = _dedupe(m for m in [*named, *implicated] if m in absent)
    if not modules:
        return []
    release = state.kernel_release or next((s.detail for s in found if s.detail), None)
    version = parse_kernel_version(release or "")
    renamed = tuple(
        f"{n} (now {r.new})" for n in modules if (r := gone_on(n, version) or rename_for(n))
    )
    node = f"node {state.context.node}" if state.context.node else "the node"
    text = (
        f"{node}'s own assessment finds {', '.join(modules)} absent from its kernel (not built, "
        "not in its module tree): nothing can load "
        f"{'them' if len(modules) > 1 else 'it'}, so the failure in this log follows from it."
    )
    if renamed:
        text += " Old names that no longer exist on this kernel: " + ", ".join(renamed) + "."
    evidence = [s for s in found if (s.name or "").replace("-", "_") in modules]
    extra = [e for f in findings if set(f.modules) & set(modules) for e in f.evidence_lines]
    extra_lines = {e.line for e in extra}
    lines = [ln for ln in state.lines if ln.lineno in extra_lines]
    return [
        _finding(
            state,
            lc.CauseCode.MODULE_NOT_IN_KERNEL,
            modules,
            evidence,
            text,
            fixes.not_in_kernel(modules, renamed),
            0.93,
            extra_evidence=lines,
        )
    ]


def _container_modprobe_failed(state: _State) -> list[Finding]:
    """modprobe failed where it ran (a container): nothing else explains the failure."""
    found = state.of(Kind.MODPROBE_NOT_FOUND)
    no_tree = state.of(Kind.MODPROBE_NO_TREE)
    refused = [
        s
        for s in state.of(Kind.MODULE_LOAD_REFUSED)
        if s.errno not in (Errno.EPERM, Errno.EKEYREJECTED, Errno.ENOKEY, Errno.EACCES)
    ]
    if not found and not refused:
        return []
    if state.of(
        Kind.TABLE_MISSING, Kind.CORE_MISSING, Kind.EXTENSION_MISSING, Kind.NFT_UNAVAILABLE
    ):
        return []  # the table/extension finding carries these lines as supporting evidence
    names = _dedupe((s.name or "").replace("-", "_") for s in [*found, *refused])
    real = tuple(n for n in names if rename_for(n) is None)
    release = state.kernel_release or next((s.detail for s in found if s.detail), None)
    version = parse_kernel_version(release or "")
    renamed = tuple(
        f"{n} (now {r.new})" for n in names if (r := gone_on(n, version) or rename_for(n))
    )
    modules = real or names
    where = f" in /lib/modules/{release}" if release else ""
    text = (
        f"A modprobe inside the container could not load {', '.join(modules)}{where}. It looked "
        "in the container's own module tree (or had none), which says nothing about the node's "
        "kernel: load the modules on the node, and check there whether they exist."
    )
    if renamed:
        text += " Old names that no longer exist on this kernel: " + ", ".join(renamed) + "."
    rule_mods = _rule_modules(state, state.backend).modules
    all_mods = _dedupe([*modules, *rule_mods])
    return [
        _finding(
            state,
            lc.CauseCode.CONTAINER_MODPROBE_FAILED,
            all_mods,
            [*found, *refused, *no_tree],
            text,
            fixes.container_modprobe(all_mods, state.backend, state.profile),
            0.3 if not real else 0.75,
            rule_modules=rule_mods,
        )
    ]


def _legacy_table_missing(state: _State) -> list[Finding]:
    sigs = [
        s
        for s in state.of(Kind.TABLE_MISSING, Kind.CORE_MISSING)
        if s.backend in (None, Backend.LEGACY)
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
    found = _rule_modules(state, Backend.LEGACY)
    rule_mods = found.modules
    modules = _dedupe([*implicated_t, *rule_mods])
    no_tree = state.of(Kind.MODPROBE_NO_TREE)
    not_found = state.of(Kind.MODPROBE_NOT_FOUND)
    what = ", ".join(_dedupe(tables)) or "the legacy tables"
    text = (
        f"iptables-legacy could not open {what}: {' or '.join(implicated_t)} is not loaded on the "
        "node. Only the iptables binary itself loads the core module (ip_tables / ip6_tables), "
        "and from inside a pod it cannot (there is no /lib/modules there); once the core is "
        "loaded the kernel loads iptable_<table> on demand. Load them on the node."
    )
    if no_tree:
        text += " The log confirms it: modprobe had no module tree inside the container."
    if not_found:
        missing = ", ".join(_dedupe(s.name or "" for s in not_found))
        text += (
            f" modprobe reported {missing} not found in the module tree it saw; when that "
            "modprobe ran in a container, that is the container's tree, not the node's. If the "
            "commands below fail on the node itself, the kernel lacks the module (some kernels, "
            "e.g. Talos or 6.18 builds without IP_NF_IPTABLES_LEGACY, no longer ship ip_tables): "
            "then move the mesh to iptables-nft."
        )
    if rule_mods:
        text += (
            _rules_phrase(state, found) + ", ".join(rule_mods) + " (derived with meshready's "
            "assessment, not only the first that failed)."
        )
    return [
        _finding(
            state,
            lc.CauseCode.LEGACY_TABLE_MISSING,
            modules,
            [*sigs, *no_tree, *not_found],
            text,
            fixes.load_modules(modules, Backend.LEGACY, state.profile, _selinux_in_log(state)),
            0.9,
            rule_modules=rule_mods,
            selinux=_selinux_in_log(state),
        )
    ]


def _extension_missing(state: _State) -> list[Finding]:
    sigs = state.of(Kind.EXTENSION_MISSING)
    if not sigs:
        return []
    backend = Backend.NFT if any(s.backend is Backend.NFT for s in sigs) else state.backend
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
    found = _rule_modules(state, backend)
    rule_mods = found.modules
    modules = _dedupe([*implicated_t, *rule_mods])
    failed_rules = [
        s for s in state.of(Kind.RULE_FAILED) if s.errno in (Errno.ENOENT, Errno.EOPNOTSUPP)
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
    if state.context.kernel_release is None and (
        state.mentions("gvisor") or state.mentions("runsc")
    ):
        text += "This looks like a gVisor sandbox, whose netstack has no such extension at all. "
    if rule_mods:
        text += _rules_phrase(state, found).lstrip() + ", ".join(rule_mods) + "."
    selinux = _selinux_in_log(state)
    return [
        _finding(
            state,
            lc.CauseCode.EXTENSION_MISSING,
            modules,
            [*sigs, *failed_rules],
            text.strip(),
            fixes.load_modules(modules, backend, state.profile, selinux),
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
            described.append(
                f"nf_tables itself ({s.errno_text or s.detail or 'unavailable'}"
                + (f", {s.errno.value}" if s.errno else "")
                + ")"
            )
    for s in rule_errors:
        errno = s.errno
        rule, span = s.extra if len(s.extra) == 2 else ("", "")
        if errno is Errno.ENOENT:
            verdict, mods = _nft_span_modules(state, rule, span)
            if verdict in ("position", "chain") or not mods:
                continue  # a rule-level problem: see rule-rejected
            if verdict == "guess":
                guess = True
            implicated.extend(mods)
            sigs.append(s)
            described.append(f"the expression in '{span or rule}' ({', '.join(mods)})")
        elif errno in (Errno.EOPNOTSUPP, Errno.EPROTONOSUPPORT, Errno.EAFNOSUPPORT):
            sigs.append(s)
            implicated.append("nf_tables")
            if "type nat" in rule:
                implicated.append(_module_for_request(nft_chain_request(1, "nat"), state))
            described.append(f"nf_tables for '{rule or '?'}' ({s.errno_text})")
    if not sigs:
        return out
    backend = Backend.NFTABLES if rule_errors else Backend.NFT
    if state.backend in (Backend.NFT, Backend.NFTABLES):
        backend = state.backend
    implicated_t = _dedupe(implicated)
    found = _rule_modules(state, backend)
    rule_mods = found.modules
    modules = _dedupe([*implicated_t, *rule_mods])
    text = (
        "The nf_tables backend could not use the kernel: "
        + "; ".join(_dedupe(described))
        + ". "
        + (
            "'Could not fetch rule set generation id' means iptables-nft got no answer from "
            "nf_tables at all: the kernel answers EINVAL ('Invalid argument') when the nf_tables "
            "netlink subsystem is not there, EPROTONOSUPPORT ('Protocol not supported') when "
            "nfnetlink itself is missing (kernel without nf_tables, very old or minimal kernels, "
            "NAS kernels). "
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
        text += _rules_phrase(state, found).lstrip() + ", ".join(rule_mods) + "."
    out.append(
        _finding(
            state,
            lc.CauseCode.NFTABLES_UNAVAILABLE,
            modules,
            sigs,
            text.strip(),
            fixes.nftables(modules, backend, state.profile),
            0.6 if guess else 0.85,
            rule_modules=rule_mods,
        )
    )
    return out


def _permission_denied(state: _State) -> list[Finding]:
    """EPERM: no CAP_NET_ADMIN (CAP_NET_RAW) in the network namespace's owning user namespace."""
    perms = [s for s in state.of(Kind.PERMISSION) if s.errno is Errno.EPERM]
    if not perms:
        return []
    if not state.failed and all(s.detail == "generic" for s in perms):
        # A stray "not permitted" with no failure: a probe that was allowed to fail.
        return []
    selinux = _selinux_in_log(state)
    must_be_root = any("must be root" in s.errno_text.lower() for s in perms)
    tables = _dedupe(s.table or "" for s in perms)
    userns = any(
        re.search(
            r"rootless|user ?namespace|unshare|nsenter -U|--userns|slirp4netns", ln.text, re.I
        )
        for ln in state.lines[:400]
    )
    text = (
        "The kernel answered EPERM"
        + (" ('Permission denied (you must be root)')" if must_be_root else "")
        + ": the process "
        + (f"that opened table {', '.join(tables)} " if tables else "")
        + "has no CAP_NET_ADMIN (CAP_NET_RAW for iptables-legacy's raw socket) in the user "
        "namespace that owns the pod's network namespace. Not a module problem: the container "
        "lacks the capabilities, does not run as root, or runs in a user namespace (rootless, "
        "user-namespaced pods) that does not own the network namespace it changes."
    )
    if userns:
        text += " The log shows a user namespace / rootless setup."
    if selinux:
        text += " The log mentions SELinux: check the node's audit log for AVC denials too."
    return [
        _finding(
            state,
            lc.CauseCode.PERMISSION_DENIED,
            (),
            perms,
            text,
            fixes.permission(selinux, must_be_root),
            0.9 if must_be_root else 0.85,
            selinux=selinux,
        )
    ]


def _lsm_denied(state: _State) -> list[Finding]:
    """EACCES (not on table/extension setup) and LSM denials other than module_request."""
    setup = set(id(s) for s in _eacces_on_setup(state))
    perms = [s for s in state.of(Kind.PERMISSION) if s.errno is Errno.EACCES and id(s) not in setup]
    avc = [s for s in state.of(Kind.AVC_OTHER) if not s.warning]
    if not perms and not avc:
        return []
    if not avc and not state.failed and all(s.detail == "generic" for s in perms):
        return []
    selinux = bool(avc and any("AppArmor" not in s.detail for s in avc)) or _selinux_in_log(state)
    text = (
        "A security module refused the netfilter operation (EACCES, a bare 'Permission denied'): "
        "capabilities were not the problem. "
    )
    if avc:
        denied = _dedupe(f"{s.name or '?'} {s.detail}" for s in avc)
        text += "Denied: " + "; ".join(denied) + "."
    else:
        text += "Look for SELinux AVC or AppArmor denials on the node at that time."
    return [
        _finding(
            state,
            lc.CauseCode.LSM_DENIED,
            (),
            [*perms, *avc],
            text,
            fixes.lsm(selinux),
            0.8,
            selinux=selinux,
        )
    ]


def _ipv6_disabled(state: _State) -> list[Finding]:
    sigs = state.of(Kind.IPV6_DISABLED)
    if not sigs:
        return []
    tables = _dedupe(s.table or "" for s in sigs)
    text = (
        "ip6tables got EAFNOSUPPORT ('Address family not supported by protocol')"
        + (f" opening table {', '.join(tables)}" if tables else "")
        + ": the node's kernel runs without IPv6 (ipv6.disable=1), so no IPv6 netfilter socket "
        "can exist. Loading modules does not help; the mesh must not program IPv6 on this node, "
        "or the node must boot with IPv6."
    )
    return [_finding(state, lc.CauseCode.IPV6_DISABLED, (), sigs, text, fixes.ipv6_disabled(), 0.9)]


def _tool_missing(state: _State) -> list[Finding]:
    sigs = state.of(Kind.TOOL_MISSING)
    if not sigs:
        return []
    named = _dedupe(s.name or "" for s in sigs)
    if not named and not state.of(Kind.FAILURE):
        return []
    text = (
        "A program or library the run needs is missing where it ran"
        + (f": {', '.join(named)}" if named else " (exit status 127: command not found)")
        + ". Not a kernel problem: install it on the node or in the image, or switch the mesh "
        "to the iptables mode whose binary is there."
    )
    failures = [s for s in state.of(Kind.FAILURE) if not s.warning][:3]
    return [
        _finding(
            state,
            lc.CauseCode.TOOL_MISSING,
            (),
            [*sigs, *failures],
            text,
            fixes.tool_missing(named),
            0.85 if named else 0.6,
        )
    ]


def _foreign_rules(state: _State) -> list[Finding]:
    sigs = state.of(Kind.FOREIGN_RULES)
    if not sigs:
        return []
    libs = _dedupe(f"{s.ext_kind} {s.name}" for s in sigs if s.name)
    text = (
        "The tables already hold rules the mesh's iptables cannot read, so it fails listing or "
        "restoring them: "
        + (
            f"no userspace library for {', '.join(libs)} in this image"
            if libs
            else "rules written with the nft tool (or a newer iptables) in a table iptables-nft "
            "manages ('is incompatible, use 'nft' tool')"
        )
        + ". The rules were added by another tool on the node."
    )
    return [
        _finding(state, lc.CauseCode.FOREIGN_RULES, (), sigs, text, fixes.foreign_rules(), 0.85)
    ]


def _leftover_rules(state: _State) -> list[Finding]:
    sigs = state.of(Kind.CHAIN_EXISTS)
    if not sigs:
        return []
    chains = _dedupe(s.name or "" for s in sigs)
    cmd = next((s.command for s in sigs if s.command), None)
    text = (
        "The run creates "
        + (f"chain {', '.join(chains)}" if chains else "a chain")
        + (f" ({cmd})" if cmd and not chains else "")
        + " that already exists (EEXIST, 'Chain already exists'): rules left over from an "
        "earlier run in the same network namespace (the init container ran again in a pod whose "
        "sandbox survived) or from another process. Not a kernel module problem."
    )
    return [
        _finding(
            state,
            lc.CauseCode.LEFTOVER_RULES,
            (),
            sigs,
            text,
            fixes.leftover_rules(state.context.container),
            0.85,
        )
    ]


def _xtables_lock(state: _State) -> list[Finding]:
    sigs = [s for s in state.of(Kind.LOCK_HELD) if s.detail == "gave up"]
    if not sigs:
        return []
    text = (
        "iptables gave up waiting for the xtables lock ('Another app is currently holding the "
        "xtables lock'): another iptables user on the node held it at that moment. Transient; "
        "the caller should wait for the lock (-w)."
    )
    return [_finding(state, lc.CauseCode.XTABLES_LOCK, (), sigs, text, fixes.xtables_lock(), 0.8)]


def _redirect_not_applied(state: _State) -> list[Finding]:
    if state.of(Kind.VALIDATION_PASSED):
        return []
    failed = state.of(Kind.VALIDATION_FAILED)
    probes = state.of(Kind.VALIDATION_PROBE)
    refused = [s for s in probes if _is_failure(s)]
    if not failed and len(probes) < 3 and not refused:
        return []
    addr = probes[0].name if probes else None
    text = (
        "The validation probe "
        + (f"connected to {addr} and " if addr else "")
        + "was not redirected to the proxy: no interception rules were in place in this pod. "
        "The rules are written by the mesh's CNI plugin on the node; it did not run for this pod "
        "(pod scheduled before the plugin was ready on the node) or it failed there."
    )
    confidence = 0.85 if failed else 0.55 if len(probes) >= 3 else 0.45
    return [
        _finding(
            state,
            lc.CauseCode.REDIRECT_NOT_APPLIED,
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
    # Expected cleanup noise (deleting, flushing, probing the tool's own chains before they exist)
    # only counts when the run failed and nothing else explains it.
    chains = [s for s in state.of(Kind.CHAIN_MISSING) if s.step is Step.SETUP or state.failed]
    enoent = [s for s in state.of(Kind.XT_ENOENT) if s.step is Step.SETUP or state.failed]
    if any(s.step is Step.SETUP for s in [*chains, *enoent]):
        # A setup step failed: the cleanup noise before it is not the cause.
        chains = [s for s in chains if s.step is Step.SETUP]
        enoent = [s for s in enoent if s.step is Step.SETUP]
    elif _explained_elsewhere(state):
        chains, enoent = [], []
    positional: list[Signal] = []
    for s in state.of(Kind.NFT_RULE_ERROR):
        if s.errno is not Errno.ENOENT:
            continue
        rule, span = s.extra if len(s.extra) == 2 else ("", "")
        if not rule:
            continue  # nft did not quote the rule: nothing says what it referred to
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
    setup_command = next(
        (s.command for s in [*enoent, *chains] if s.step is Step.SETUP and s.command), None
    )
    if not candidates and setup_command:
        candidates = _candidates_for_command(state, setup_command)
    parts: list[str] = []
    errnos = _dedupe(s.errno_text or (s.errno.value if s.errno else "") for s in failed_rules)
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
            "'No chain/target/match by that name' (ENOENT) means either a missing chain or a "
            "match or target whose module could not be loaded."
        )
        if setup_command:
            parts.append(
                f"It answered the setup command '{setup_command}'"
                + (
                    f", whose extensions need {', '.join(candidates)}: with its chain just "
                    "created, a module the kernel could not load is the likely reason."
                    if candidates
                    else "."
                )
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
    if setup_command and candidates:
        confidence = 0.6
    return [
        _finding(
            state,
            lc.CauseCode.RULE_REJECTED,
            candidates,
            sigs,
            " ".join(parts),
            fixes.rule_rejected(failing_rule, candidates),
            confidence,
        )
    ]


def _explained_elsewhere(state: _State) -> bool:
    """Is there a failure with a cause of its own (so cleanup noise is just noise)?"""
    return bool(
        state.of(
            Kind.TABLE_MISSING,
            Kind.CORE_MISSING,
            Kind.AVC_MODULE,
            Kind.NFT_UNAVAILABLE,
            Kind.EXTENSION_MISSING,
            Kind.PERMISSION,
            Kind.IPV6_DISABLED,
            Kind.FOREIGN_RULES,
            Kind.TOOL_MISSING,
            Kind.CHAIN_EXISTS,
            Kind.VALIDATION_FAILED,
        )
    )


_COMMENT_ARG = re.compile(r"\s-m\s+comment\s+--comment(?:\s+.*?)?(?=\s-[a-zA-Z-]|$)")
_BUILTIN_CHAINS = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}
_COMMAND_RULE = re.compile(
    r"(?:^|\s)(?:(?:/\S*/)?ip6?tables(?:-legacy|-nft)?)\s+(?P<args>.*?)(?:\]|$)"
)


_NAME_PREFIX = re.compile(r"[\w-]+")  # a chain or target name, as far as it goes


def _candidates_for_command(state: _State, command: str) -> tuple[str, ...]:
    """The modules one traced iptables command needs (its table, matches and targets)."""
    m = _COMMAND_RULE.search(command)
    # Comments are free text (cilium leaves them unquoted); they need xt_comment, nothing else.
    text = _COMMENT_ARG.sub(" -m comment --comment x", m.group("args") if m else command)
    args = text.split()
    table = "filter"
    rest: list[str] = []
    i = 0
    while i < len(args):
        if args[i] in TABLE_OPTIONS and i + 1 < len(args):
            table = args[i + 1]
            i += 2
            continue
        if args[i] in ("-w", "--wait") and i + 1 < len(args) and args[i + 1].isdigit():
            i += 2
            continue
        if args[i] in ("-w", "--wait", "-W"):
            i += 1
            continue
        rest.append(args[i])
        i += 1
    if not rest or COMMANDS.get(rest[0]) not in ("-A", "-I"):
        return ()
    family = Family.IPV6 if re.search(r"\bip6", command) else Family.IPV4
    chains = {rest[1]} if len(rest) > 1 and rest[1] not in _BUILTIN_CHAINS else set()
    # A jump to a name with "_" or "-" is taken for a user chain (KUBE-SVC-..., ISTIO_REDIRECT):
    # target extensions are plain words (REDIRECT, MASQUERADE).
    pairs = itertools.pairwise(rest)
    jump = next((name for option, name in pairs if option in JUMP_OPTIONS), "")
    named = _NAME_PREFIX.match(jump)
    target = named.group() if named else ""
    if "_" in target or "-" in target:
        chains.add(target)
    single = LogRules(xt={(family, table): [(0, " ".join(rest))]}, chains={(family, table): chains})
    try:
        mods, _ = modules_for_rules(single, state.backend, state.kernel_release)
    except InputError:
        return ()
    return tuple(m for m in mods if m not in ("ip_tables", "ip6_tables", "x_tables"))


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
    """The run failed and no known cause fits: quote the failing lines, give the next steps."""
    failing = [s for s in state.signals if _is_failure(s)]
    # Lines that name an outcome (exit status, abort, panic) first, then the first error lines.
    outcome = [s for s in failing if s.kind is Kind.FAILURE and s.detail != "error words"]
    words = [s for s in failing if s not in outcome]
    sigs = [*words[:5], *outcome[:3]]
    text = (
        "The run failed, but not with a message meshready recognises. The evidence quotes the "
        "lines that show the failure and how the run ended."
    )
    ends = _dedupe(f"exit status {s.number}" for s in outcome if s.number is not None)
    if ends:
        text += f" It ended with {', '.join(ends)}."
    return _finding(state, lc.CauseCode.UNKNOWN, (), sigs, text, fixes.unknown(), 0.2)


_FATAL_WITH_CAUSE = (
    Kind.TABLE_MISSING,
    Kind.CORE_MISSING,
    Kind.NFT_UNAVAILABLE,
    Kind.PERMISSION,
    Kind.IPV6_DISABLED,
    Kind.AVC_MODULE,
    Kind.FOREIGN_RULES,
    Kind.TOOL_MISSING,
    Kind.CHAIN_EXISTS,
)


def _fatal_decides(state: _State, findings: list[Finding]) -> list[Finding]:
    """A warning never outranks the fatal error after it: when every extension signal is a
    warning and a fatal message with a cause of its own is there, the warnings become supporting
    evidence of that cause."""
    ext = state.of(Kind.EXTENSION_MISSING)
    if not ext or not all(s.warning for s in ext):
        return findings
    if not any(not s.warning for s in state.of(*_FATAL_WITH_CAUSE)):
        return findings
    kept = [f for f in findings if f.cause != lc.CauseCode.EXTENSION_MISSING]
    if not kept:
        return findings
    dropped = [f for f in findings if f.cause == lc.CauseCode.EXTENSION_MISSING]
    top = max(kept, key=lambda f: (f.confidence, -lc.CAUSES[f.cause].rank))
    supporting = [e for f in dropped for e in f.evidence_lines]
    merged = {e.line: e for e in [*top.evidence_lines, *supporting]}
    evidence = tuple(sorted(merged.values(), key=lambda e: e.line))[:_MAX_EVIDENCE]
    note = (
        " The warnings about extensions before it ("
        + ", ".join(_dedupe(s.name or "" for s in ext))
        + ") are supporting evidence: iptables-nft prints them when it cannot ask the kernel, "
        "which the fatal error explains."
    )
    replaced = replace(
        top,
        explanation=top.explanation + note,
        evidence=tuple(e.text for e in evidence),
        evidence_lines=evidence,
    )
    return [replaced if f is top else f for f in kept]


def _promote_root_causes(findings: list[Finding]) -> list[Finding]:
    """A module that does not exist explains every finding that needs it: rank it first."""
    absent = next((f for f in findings if f.cause == lc.CauseCode.MODULE_NOT_IN_KERNEL), None)
    if absent is None or absent.confidence < 0.5:
        return findings
    others = {m for f in findings if f is not absent for m in f.modules}
    if not others & set(absent.modules):
        return findings
    promoted = replace(absent, confidence=0.93)
    return [promoted if f is absent else f for f in findings]
