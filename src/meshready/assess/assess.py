"""Requests + host facts -> Report."""

from __future__ import annotations

from meshready.assess.report import (
    IptablesAssumption,
    KernelInfo,
    ModuleReport,
    Report,
    State,
    UnresolvedRequest,
)
from meshready.assess.resolve import Closure, close_over, knowledge_index, resolve_request
from meshready.host.facts import HostFacts
from meshready.host.modindex import ModuleIndex
from meshready.knowledge.modules import known_modules, module_symbol
from meshready.knowledge.renames import gone_on, parse_kernel_version, rename_for
from meshready.knowledge.requests import Backend, Need


def index_for(facts: HostFacts) -> ModuleIndex:
    if facts.index is not None:
        return facts.index
    return knowledge_index(parse_kernel_version(facts.release or ""))


def assess(
    needs: list[Need],
    facts: HostFacts,
    backend: Backend,
    profile: str | None = None,
    rules: tuple[str, ...] = (),
    iptables: IptablesAssumption | None = None,
) -> Report:
    index = index_for(facts)
    direct: list[str] = []
    required_direct: list[str] = []
    warnings_of: dict[str, list[str]] = {}
    requests_of: dict[str, list[str]] = {}
    reasons: dict[str, list[str]] = {}
    unresolved: list[UnresolvedRequest] = []
    by_binary: set[str] = set()
    for need in needs:
        res = resolve_request(need.request, index)
        if not res.modules:
            unresolved.append(
                UnresolvedRequest(
                    need.request.name,
                    need.reasons,
                    _unresolved_detail(facts),
                    need.required,
                    need.warning,
                )
            )
            continue
        for module in res.modules:
            if module not in direct:
                direct.append(module)
            if need.warning is None:
                _extend(required_direct, [module])
            else:
                _extend(warnings_of.setdefault(module, []), [need.warning])
            _extend(requests_of.setdefault(module, []), [need.request.name])
            _extend(reasons.setdefault(module, []), list(need.reasons))
            if need.request.by_binary:
                by_binary.add(module)

    # Required: what the required requests resolve to, and everything those need. The rest of the
    # closure is only recommended (without it the rules apply with a warning).
    closure = close_over(direct, index)
    required = set(close_over(required_direct, index).order)
    builtin_reason = _builtin_evidence(facts, index)
    states = {name: _state(name, facts, index, builtin_reason) for name in closure.order}
    modules: list[ModuleReport] = []
    for name in closure.order:
        state, detail = states[name]
        if (
            facts.index is None
            and name not in direct
            and not state.ok
            and _dependents_ok(name, closure.order, index, states)
        ):
            # Built-in knowledge lists dependencies of a typical kernel; when every module that
            # needs this one is already there, this kernel does not need it (e.g. no libcrc32c
            # on 6.14+, where nf_conntrack uses the crc32c library directly).
            continue
        needed_by = tuple(reasons.get(name, [])) + tuple(closure.why.get(name, []))
        if name in by_binary and not state.ok:
            detail += (
                " — only the iptables binary loads it (never the kernel), and that fails "
                "inside a pod: it must be loaded on the node"
            )
        modules.append(
            ModuleReport(
                name=name,
                state=state,
                direct=name in direct,
                requests=tuple(requests_of.get(name, [])),
                needed_by=needed_by,
                detail=detail,
                config=module_symbol(name),
                path=index.paths.get(name) if facts.index is not None else None,
                required=name in required,
                warning=None if name in required else _warning_of(name, warnings_of, closure),
            )
        )

    # Recommended modules are loaded too (by `meshready fix`): without them iptables warns.
    load_order = tuple(m.name for m in modules if m.state is State.LOADABLE)
    ready = all(m.state.ok for m in modules if m.required) and not any(
        u.required for u in unresolved
    )
    report = Report(
        ready=ready,
        summary=_summary(ready, modules, unresolved),
        backend=backend,
        profile=profile,
        rules=rules,
        kernel=KernelInfo(
            release=facts.release,
            arch=facts.arch,
            source=facts.source,
            module_support=facts.module_support,
            modprobe=facts.modprobe_path,
            modules_disabled=facts.modules_disabled,
            index=facts.index.directory if facts.index else None,
            config=facts.config.source if facts.config else None,
        ),
        modules=tuple(modules),
        load_order=load_order,
        unresolved=tuple(unresolved),
        notes=tuple(
            _iptables_note(backend, iptables) + _notes(facts, modules, load_order, unresolved)
        ),
        iptables=iptables,
    )
    return report


def _iptables_note(backend: Backend, iptables: IptablesAssumption | None) -> list[str]:
    if backend is not Backend.NFT or iptables is None:
        return []
    how = (
        ""
        if iptables.measured_as == iptables.version
        else f", behaving as measured {iptables.measured_as}"
    )
    return [
        f"iptables-nft's needs depend on the mesh image's iptables: assumed {iptables.version}{how} "
        f"({iptables.source}); --iptables-version overrides it"
    ]


def _warning_of(name: str, warnings_of: dict[str, list[str]], closure: Closure) -> str | None:
    """The warning a recommended module's absence causes: its own, or that of the recommended
    module it is a dependency of."""
    if name in warnings_of:
        return "; ".join(warnings_of[name])
    for reason in closure.why.get(name, []):
        parent = reason.rsplit(" ", 1)[-1]
        if parent in warnings_of:
            return "; ".join(warnings_of[parent])
    return None


def _dependents_ok(
    name: str, order: list[str], index: ModuleIndex, states: dict[str, tuple[State, str]]
) -> bool:
    dependents = [m for m in order if name in index.deps.get(m, ())]
    return bool(dependents) and all(states[m][0].ok for m in dependents)


def _extend(target: list[str], items: list[str]) -> None:
    seen = set(target)  # one set per call: linear, not quadratic, in a need's reasons
    for item in items:
        if item not in seen:
            seen.add(item)
            target.append(item)


def _builtin_evidence(facts: HostFacts, index: ModuleIndex) -> dict[str, str]:
    """module -> why it is known to be built in, from evidence other than modules.builtin."""
    evidence: dict[str, str] = {}
    loaded = facts.loaded
    if loaded is not None and facts.index is None:
        # A loaded module whose dependency is not loaded can only have it built in.
        for module in sorted(loaded.names):
            for dep in index.deps.get(module, ()):
                if dep not in loaded.names and dep not in evidence:
                    evidence[dep] = f"{module} is loaded and needs {dep}, which is not listed"
        # Modules built from the same Kconfig symbol share its state (x_tables and xt_tcpudp).
        for dep, why in list(evidence.items()):
            info = known_modules().get(dep)
            if info is None:
                continue
            for other in known_modules().values():
                if other.symbol == info.symbol and other.name not in evidence:
                    evidence[other.name] = f"built from CONFIG_{info.symbol} like {dep} ({why})"
    return evidence


def _state(
    name: str, facts: HostFacts, index: ModuleIndex, builtin_evidence: dict[str, str]
) -> tuple[State, str]:
    if facts.loaded is not None and name in facts.loaded.names:
        return State.LOADED, "loaded"
    if facts.index is not None and name in facts.index.builtin:
        return State.BUILTIN, "built into the kernel (modules.builtin)"
    symbol = module_symbol(name)
    config_state = facts.config.state(symbol) if facts.config and symbol else None
    if config_state == "y":
        return State.BUILTIN, f"built into the kernel ({symbol}=y)"
    if name in builtin_evidence:
        return State.BUILTIN, f"built into the kernel (inferred: {builtin_evidence[name]})"
    if facts.module_support is False:
        if facts.config is not None:
            return (
                State.ABSENT,
                f"not in this kernel ({symbol or name} is not set, no module support)",
            )
        if facts.sysfs_modules is not None and name in facts.sysfs_modules:
            return State.BUILTIN, "built into the kernel (/sys/module)"
        return State.UNKNOWN, "kernel without module support and no config to tell what is built in"
    if facts.live and facts.sysfs_modules is not None and name in facts.sysfs_modules:
        return State.BUILTIN, "built into the kernel (/sys/module, not in /proc/modules)"
    if facts.index is not None:
        if facts.index.has(name):
            return State.LOADABLE, f"not loaded; on disk ({facts.index.paths.get(name, name)})"
        if config_state is None and facts.config is not None and symbol:
            return State.ABSENT, f"not in this kernel ({symbol} is not set)"
        return State.ABSENT, "not in this kernel's module tree (modules.dep)"
    if config_state == "m":
        return State.LOADABLE, f"not loaded; built as a module ({symbol}=m, file not checked)"
    if facts.config is not None and symbol:
        return State.ABSENT, f"not in this kernel ({symbol} is not set)"
    return State.UNKNOWN, (
        "not loaded; whether this kernel has it as a module is unknown "
        "without its module tree (--modules-dir) or config (--kernel-config)"
    )


def _unresolved_detail(facts: HostFacts) -> str:
    if facts.index is None:
        return (
            "no module known to answer this request (give --modules-dir for the kernel's own data)"
        )
    return "no module, alias or built-in answers this request on this kernel"


def _summary(ready: bool, modules: list[ModuleReport], unresolved: list[UnresolvedRequest]) -> str:
    recommended = [m.name for m in modules if not m.required and not m.state.ok]
    if ready:
        needed = [m for m in modules if m.required]
        text = f"ready: all {len(needed)} needed modules are loaded or built in"
        if recommended:
            text += (
                f" ({len(recommended)} recommended not loaded: {', '.join(recommended)}; "
                "the rules apply with a warning)"
            )
        return text
    parts = []
    for state in (State.LOADABLE, State.ABSENT, State.UNKNOWN):
        names = [m.name for m in modules if m.state is state and m.required]
        if names:
            label = {"loadable": "not loaded", "absent": "absent", "unknown": "unknown"}[
                state.value
            ]
            parts.append(f"{len(names)} {label} ({', '.join(names)})")
    blocking = [u for u in unresolved if u.required]
    if blocking:
        parts.append(
            f"{len(blocking)} request(s) nothing answers ({', '.join(u.request for u in blocking)})"
        )
    return "not ready: " + "; ".join(parts)


def _boot_module_notes(facts: HostFacts) -> list[str]:
    """Names in modules-load.d files that this kernel does not have (systemd-modules-load fails)."""
    version = parse_kernel_version(facts.release or "")
    notes = []
    for path, names in sorted(facts.boot_modules.items()):
        for name in names:
            rename = gone_on(name, version) or (rename_for(name) if facts.index else None)
            if facts.index is not None and (facts.index.has(name) or name in facts.index.builtin):
                continue
            if rename is not None:
                notes.append(
                    f"{path} lists {name}, which does not exist on {facts.release} (merged into "
                    f"{rename.new}; {rename.source}): systemd-modules-load fails on it at boot; "
                    "remove the line"
                )
            elif facts.index is not None:
                notes.append(
                    f"{path} lists {name}, which is not in this kernel's module tree (built in, "
                    "or absent): remove the line"
                )
    return notes


def _notes(
    facts: HostFacts,
    modules: list[ModuleReport],
    load_order: tuple[str, ...],
    unresolved: list[UnresolvedRequest],
) -> list[str]:
    notes: list[str] = []
    for m in modules:
        if not m.required and not m.state.ok:
            notes.append(
                f"recommended, not required: {m.name} ({m.state.value}); without it the rules "
                f"still apply, and iptables prints: {m.warning or 'a warning'}"
            )
    for u in unresolved:
        if not u.required:
            notes.append(
                f"recommended request {u.request} has no answer on this kernel; the rules still "
                f"apply, and iptables prints: {u.warning or 'a warning'}"
            )
    builtin = [m.name for m in modules if m.state is State.BUILTIN]
    if builtin:
        notes.append(
            f"built in, nothing to load ({', '.join(builtin)}); modprobe answers 'not found' for "
            "a built-in name in some versions, which is harmless"
        )
    if load_order:
        notes.append(
            f"to fix: meshready fix (loads, in order: {' '.join(load_order)}; and writes "
            "/etc/modules-load.d/meshready.conf so they load at boot)"
        )
    notes.extend(_boot_module_notes(facts))
    if facts.modules_disabled:
        notes.append("kernel.modules_disabled=1: no module can be loaded until reboot")
    if (
        facts.loaded is not None
        and facts.index is None
        and facts.config is None
        and any(m.state is State.UNKNOWN for m in modules)
    ):
        notes.append(
            "offline without a module tree: give --modules-dir (and --kernel-config) to "
            "tell loadable from absent"
        )
    return notes
