"""Fix a node: load the modules the assessment says are needed and loadable, and persist them.

``plan_fix`` reads only: what would be loaded (dependency order, loaded and built-in modules
skipped), the exact file content, and every precondition that would stop the fix (blockers).
``apply_fix`` refuses a plan with blockers, proves /etc writable, loads, then writes the file. If a
load or the write fails, it unloads what this run loaded (reverse order, only modules nothing uses)
and writes nothing, so the node is no worse than before.

Only modules the assessment derived from the rules (the report's closure), or names given in
``FixOptions.allow`` (with their dependencies), can ever be loaded; a name must match
``[A-Za-z0-9_-]+`` and its file is the one the kernel's own modules.dep names.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from meshready.actions.kernel import has_signature, refcount, valid_module_name
from meshready.actions.loader import Loader, module_file, read_module_image
from meshready.actions.persist import (
    PERSIST_PATH,
    PersistAction,
    check_writable,
    persist_action,
    render_persist,
    writable_hint,
    write_persisted,
)
from meshready.assess.assess import assess
from meshready.assess.plan import NeedsSpec
from meshready.assess.report import Report, State, backend_name
from meshready.assess.resolve import close_over
from meshready.errors import ActionError, InputError, MeshreadyError
from meshready.host.facts import HostFacts, gather_live
from meshready.host.kernel_state import kernel_guard, loaded_modules
from meshready.host.modindex import ModuleIndex, load_index
from meshready.host.root import HostRoot
from meshready.knowledge.requests import Backend


@dataclass(frozen=True)
class FixOptions:
    persist: bool = True  # write /etc/modules-load.d/meshready.conf
    allow: tuple[str, ...] = ()  # extra module names that may be loaded (with their dependencies)
    check_signatures: bool = True  # under lockdown/sig_enforce, refuse unsigned files up front


@dataclass(frozen=True)
class FixPlan:
    release: str | None
    profile: str | None
    backend: Backend | None
    load: tuple[str, ...]  # modules to load, dependencies first
    present: tuple[str, ...]  # needed and already loaded or built in
    allowed: frozenset[str]  # every name this plan may load
    persist_path: str | None  # host path of the file; None with --no-persist
    persist_content: str | None  # exact content; None when nothing is to be persisted
    persist_action: PersistAction  # create | update | unchanged | none
    blockers: tuple[str, ...] = ()  # preconditions that fail: apply_fix refuses the plan
    changes: tuple[str, ...] = ()  # what applying would change, one line each
    persist_modules: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.blockers

    @property
    def nothing_to_do(self) -> bool:
        return not self.load and not self.persist_action.changes

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["backend"] = backend_name(self.backend)
        data["persist_action"] = self.persist_action.value
        data["allowed"] = sorted(self.allowed)
        return data


@dataclass(frozen=True)
class FixResult:
    loaded: tuple[str, ...]  # modules this run loaded
    already_present: tuple[str, ...]  # needed modules found loaded or built in
    persist_path: str | None
    persist_action: PersistAction  # create | update | unchanged | none
    duration_s: float
    loader: str
    timings: tuple[tuple[str, float], ...] = ()  # (module, seconds) per load

    @property
    def persist_changed(self) -> bool:
        return self.persist_action.changes

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["persist_action"] = self.persist_action.value
        data["persist_changed"] = self.persist_changed
        data["timings"] = {m: round(s, 4) for m, s in self.timings}
        return data


def assess_live(spec: NeedsSpec, root: HostRoot) -> tuple[Report, HostFacts]:
    """Assess the running kernel (module tree and /etc under ``root``) for ``spec``."""
    facts = gather_live(root)
    return assess(spec.needs, facts, spec.backend, spec.profile, spec.rules), facts


def _index_of(report: Report, index: ModuleIndex | None) -> ModuleIndex | None:
    if index is not None:
        return index
    if report.kernel.index:
        return load_index(Path(report.kernel.index))
    return None


def plan_fix(
    report: Report,
    root: HostRoot,
    options: FixOptions | None = None,
    index: ModuleIndex | None = None,
) -> FixPlan:
    """What ``apply_fix`` would do, and what would stop it. Reads only; changes nothing."""
    options = options or FixOptions()
    index = _index_of(report, index)
    blockers: list[str] = []
    loaded_now = loaded_modules(root) or frozenset()

    missing = [m for m in report.modules if m.state in (State.ABSENT, State.UNKNOWN)]
    if missing:
        first = missing[0]
        names = ", ".join(f"{m.name} ({m.state.value})" for m in missing)
        blockers.append(
            f"loading cannot make this node ready: {names}; {first.name}: {first.detail}"
        )
    if report.unresolved:
        blockers.append(
            "loading cannot make this node ready: nothing in this kernel answers "
            + ", ".join(u.request for u in report.unresolved)
        )

    load = list(report.load_order)
    present = [m.name for m in report.modules if m.state.ok]
    allowed = {m.name for m in report.modules}
    persist_modules = [
        m.name
        for m in report.modules
        if m.state in (State.LOADED, State.LOADABLE) and (index is None or index.has(m.name))
    ]

    if options.allow:
        if index is None:
            raise InputError(
                "--allow", "needs the kernel's module tree (modules.dep) to check names"
            )
        extras = []
        for raw in options.allow:
            try:
                name = valid_module_name(raw)
            except ActionError as exc:
                raise InputError("--allow", exc.one_line()) from exc
            if not index.has(name) and name not in index.builtin:
                raise InputError(
                    "--allow", f"{name}: no such module in this kernel's tree ({index.directory})"
                )
            extras.append(name)
        closure = close_over([e for e in extras if index.has(e)], index)
        for name in closure.order:
            allowed.add(name)
            if name in persist_modules or name in index.builtin:
                continue
            persist_modules.append(name)
            if name in loaded_now:
                present.append(name)
            elif name not in load:
                load.append(name)

    for name in load:
        try:
            valid_module_name(name)
        except ActionError as exc:
            blockers.append(exc.one_line())

    guard = kernel_guard(root)
    if load:
        if index is None:
            blockers.append(
                f"no module tree (modules.dep) for kernel {report.kernel.release} on this host: "
                "nothing can be loaded"
            )
        if report.kernel.module_support is False:
            blockers.append("this kernel has no loadable module support")
        if guard.modules_disabled:
            blockers.append(
                "kernel.modules_disabled=1: this kernel accepts no more modules until it reboots "
                "(load them at boot: meshready render bootstrap)"
            )
        if index is not None:
            for name in load:
                try:
                    path = module_file(name, index, root)
                except ActionError as exc:
                    blockers.append(exc.one_line())
                    continue
                if not path.is_file():
                    blockers.append(
                        f"module {name} is absent on disk: {path} is missing "
                        "(modules.dep lists it; the module tree is incomplete)"
                    )
                    continue
                if guard.needs_signed and options.check_signatures:
                    try:
                        image = read_module_image(path)
                    except ActionError as exc:
                        blockers.append(exc.one_line())
                        continue
                    if not has_signature(image):
                        blockers.append(
                            f"{guard.why_signed()} loads only signed modules and {path} is "
                            f"unsigned: {name} cannot be loaded"
                        )

    content: str | None = None
    action = PersistAction.NONE
    if options.persist and persist_modules:
        content = render_persist(
            persist_modules, profile=report.profile, backend=report.backend, rules=report.rules
        )
        action = persist_action(root, content)
        if action.changes:
            hint = writable_hint(root)
            if hint is not None:
                blockers.append(hint)

    changes = [f"load {name}" for name in load]
    if action.changes:
        changes.append(f"{action.value} {PERSIST_PATH} ({len(persist_modules)} modules)")
    return FixPlan(
        release=report.kernel.release,
        profile=report.profile,
        backend=report.backend,
        load=tuple(load),
        present=tuple(dict.fromkeys(present)),
        allowed=frozenset(allowed),
        persist_path=PERSIST_PATH if options.persist else None,
        persist_content=content,
        persist_action=action,
        blockers=tuple(blockers),
        changes=tuple(changes),
        persist_modules=tuple(persist_modules),
    )


def apply_fix(plan: FixPlan, index: ModuleIndex, root: HostRoot, loader: Loader) -> FixResult:
    """Carry out ``plan``: load in order, then persist. All or nothing (see the module docstring)."""
    if plan.blockers:
        more = f" (and {len(plan.blockers) - 1} more)" if len(plan.blockers) > 1 else ""
        raise ActionError(f"{plan.blockers[0]}{more}; nothing was changed")
    for name in plan.load:
        if valid_module_name(name) not in plan.allowed:
            raise ActionError(
                f"refusing {name}: not derived from the rules nor allowed; nothing was changed"
            )
    writes = plan.persist_content is not None and plan.persist_action.changes
    started = time.monotonic()
    if plan.load and kernel_guard(root).modules_disabled:
        raise ActionError(
            "kernel.modules_disabled=1: this kernel accepts no more modules until it reboots; "
            "nothing was changed"
        )
    if writes:
        check_writable(root)

    before = loaded_modules(root) or frozenset()
    loaded: list[str] = []
    already: list[str] = list(plan.present)
    timings: list[tuple[str, float]] = []
    action = plan.persist_action if plan.persist_content is not None else PersistAction.NONE
    try:
        for name in plan.load:
            if name in (loaded_modules(root) or frozenset()):
                already.append(name)
                continue
            t0 = time.monotonic()
            loader.load(name, index, root)
            timings.append((name, time.monotonic() - t0))
            loaded.append(name)
        if writes:
            assert plan.persist_content is not None
            action = write_persisted(root, plan.persist_content).action
    except MeshreadyError as exc:
        undo = rollback(plan.load, before, root, loader)
        raise ActionError(f"{exc.one_line()}; nothing was persisted; {undo}") from exc
    return FixResult(
        loaded=tuple(loaded),
        already_present=tuple(dict.fromkeys(already)),
        persist_path=plan.persist_path if plan.persist_content is not None else None,
        persist_action=action,
        duration_s=time.monotonic() - started,
        loader=loader.describe(),
        timings=tuple(timings),
    )


def rollback(
    planned: tuple[str, ...] | list[str], before: frozenset[str], root: HostRoot, loader: Loader
) -> str:
    """Unload, in reverse order, the planned modules loaded since ``before`` that nothing uses."""
    now = loaded_modules(root) or frozenset()
    ours = [m for m in reversed(planned) if m in now and m not in before]
    if not ours:
        return "nothing had been loaded"
    undone: list[str] = []
    kept: list[str] = []
    for name in ours:
        count = refcount(name, root)
        if count not in (0, None):
            kept.append(name)
            continue
        try:
            loader.unload(name, root)
        except ActionError:
            kept.append(name)
            continue
        undone.append(name)
    parts = []
    if undone:
        parts.append(f"unloaded what this run had loaded ({', '.join(undone)})")
    if kept:
        parts.append(f"left loaded because in use: {', '.join(kept)}")
    return "; ".join(parts)
