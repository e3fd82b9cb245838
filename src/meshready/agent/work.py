"""The node-local part of one check: assess, fix (load; persist if on), probe. No cluster involved.

``NodeWork.check()`` never raises for a node problem: every outcome (ready, modules missing, a load
refused by the kernel, a failed probe, even an assessment that could not run) becomes a
``CheckResult`` with the condition's status, reason and message, ready to publish.

Fixing goes through ``meshready.actions.fix`` (``plan_fix``/``apply_fix``: all or nothing, only
modules the rules need) with the loader from ``meshready.actions.loader.choose_loader``; the probe
is ``meshready.actions.probe.probe`` in the pod's own network namespace (``inplace``), the
conditions a mesh's init container meets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from meshready.actions.fix import FixOptions, apply_fix, assess_live, plan_fix
from meshready.actions.loader import Loader, LoaderKind, choose_loader
from meshready.actions.probe import Mode
from meshready.actions.probe import probe as run_probe
from meshready.assess.plan import NeedsSpec
from meshready.assess.report import Report, State
from meshready.cluster.published import (
    NodeEvent,
    ProbeSummary,
    Publication,
    Reason,
    compact_report,
    cut_message,
)
from meshready.errors import MeshreadyError
from meshready.host.facts import HostFacts
from meshready.host.root import HostRoot

log = logging.getLogger("meshready.agent")


class AgentLoader(StrEnum):
    """``meshready agent --loader``: a loader of ``actions.loader``, or none at all."""

    AUTO = LoaderKind.AUTO.value
    MODPROBE = LoaderKind.MODPROBE.value
    PYTHON = LoaderKind.PYTHON.value
    NONE = "none"  # the agent never loads (the init container did; --fix-record tells what)

    def loader_kind(self) -> LoaderKind | None:
        """The loader to load with; None for ``none``."""
        return None if self is AgentLoader.NONE else LoaderKind(self.value)


class AgentProbeMode(StrEnum):
    """``meshready agent --probe-mode``: a probe mode of ``actions.probe``, or no probe."""

    INPLACE = Mode.INPLACE.value
    NETNS = Mode.NETNS.value
    OFF = "off"

    def probe_mode(self) -> Mode | None:
        """The mode to probe in; None for ``off``."""
        return None if self is AgentProbeMode.OFF else Mode(self.value)


@dataclass(frozen=True)
class FixOutcome:
    loaded: tuple[str, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)  # module (or "fix") -> error
    persisted: tuple[str, ...] | None = None  # modules in the persisted file; None: not persisted
    persist_changed: bool = False
    skipped: str | None = None  # why nothing was tried (loading off, nothing loadable, blockers)


class Fixer(Protocol):
    persist: bool

    def fix(self, report: Report, facts: HostFacts) -> FixOutcome: ...


@runtime_checkable
class ObservingFixer(Protocol):
    """A fixer that loads nothing itself and reports what another step (the init container) did."""

    persist: bool

    def fix(self, report: Report, facts: HostFacts) -> FixOutcome: ...

    def observed(self) -> FixOutcome: ...

    def startup_events(self) -> list[NodeEvent]: ...


class Prober(Protocol):
    def probe(self) -> ProbeSummary: ...


class ActionsFixer:
    """Loads with meshready.actions (the chosen loader), persisting when asked."""

    def __init__(self, spec: NeedsSpec, root: HostRoot, loader: LoaderKind, persist: bool) -> None:
        self.spec = spec
        self.root = root
        self.loader_kind = loader
        self.persist = persist
        self._loader: Loader | None = None

    def loader(self) -> Loader:
        if self._loader is None:
            self._loader = choose_loader(self.loader_kind, self.root)
        return self._loader

    def fix(self, report: Report, facts: HostFacts) -> FixOutcome:
        plan = plan_fix(report, self.root, FixOptions(persist=self.persist), facts.index)
        if plan.blockers:
            return FixOutcome(failed={"fix": plan.blockers[0]})
        if plan.nothing_to_do:
            return FixOutcome(
                persisted=plan.persist_modules if plan.persist_path else None,
                skipped="nothing to load",
            )
        if facts.index is None:
            return FixOutcome(skipped="no module tree (modules.dep) on this host")
        try:
            result = apply_fix(plan, facts.index, self.root, self.loader())
        except MeshreadyError as exc:
            return FixOutcome(failed={"fix": exc.one_line()})
        return FixOutcome(
            loaded=result.loaded,
            persisted=plan.persist_modules if result.persist_path else None,
            persist_changed=result.persist_changed,
        )


class ActionsProber:
    """A redirect probe with meshready.actions.probe, in the pod's own network namespace."""

    def __init__(self, spec: NeedsSpec, mode: Mode) -> None:
        self.spec = spec
        self.mode = mode

    def probe(self) -> ProbeSummary:
        started = time.monotonic()
        try:
            result = run_probe(self.spec, self.spec.backend, mode=self.mode)
        except MeshreadyError as exc:
            return ProbeSummary(
                mode=self.mode.value,
                ok=False,
                seconds=time.monotonic() - started,
                error=exc.one_line(),
            )
        return ProbeSummary(
            mode=self.mode.value,
            ok=bool(result.ok),
            redirected=result.redirected,
            proxy_bypassed=result.proxy_bypassed,
            seconds=result.duration_s,
            detail=result.detail or "",
            error=result.error,
        )


@dataclass(frozen=True)
class CheckResult:
    ready: bool | None
    reason: Reason
    message: str
    report: Report | None
    fix: FixOutcome
    probe: ProbeSummary | None
    error: str | None
    seconds: float
    events: tuple[NodeEvent, ...] = ()

    @property
    def backend(self) -> str | None:
        return self.report.backend if self.report else None

    def publication(self, boot_id: str | None) -> Publication:
        data = compact_report(
            self.report,
            ready=self.ready,
            reason=self.reason.value,
            load_failed=self.fix.failed,
            persisted=self.fix.persisted,
            probe=self.probe,
            boot_id=boot_id,
            error=self.error,
        )
        return Publication(
            ready=self.ready,
            reason=self.reason.value,
            message=self.message,
            backend=self.backend,
            report=data,
            events=self.events,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "reason": self.reason.value,
            "message": self.message,
            "loaded": list(self.fix.loaded),
            "load_failed": dict(self.fix.failed),
            "persisted": list(self.fix.persisted) if self.fix.persisted is not None else None,
            "probe": self.probe.to_dict() if self.probe else None,
            "error": self.error,
            "seconds": round(self.seconds, 3),
            "report": self.report.to_dict() if self.report else None,
        }


def _gist(failed: dict[str, str]) -> set[str]:
    """The causes of a failure, without the rollback details that vary from run to run."""
    return {text.split("; ", 1)[0] for text in failed.values()}


class NodeWork:
    """Assess, fix and probe this node for SPEC. FIXER None: loading is off (``--loader none``)."""

    def __init__(
        self,
        spec: NeedsSpec,
        root: HostRoot,
        *,
        fixer: Fixer | None,
        prober: Prober | None,
        assess: Callable[[NeedsSpec, HostRoot], tuple[Report, HostFacts]] = assess_live,
    ) -> None:
        self.spec = spec
        self.root = root
        self.fixer = fixer
        self.prober = prober
        self._assess = assess
        self._last_failed: dict[str, str] = {}

    def check(self) -> CheckResult:
        started = time.monotonic()
        try:
            report, facts = self._assess(self.spec, self.root)
        except Exception as exc:  # the node must still say something: status Unknown
            log.exception("assessment failed")
            text = exc.one_line() if isinstance(exc, MeshreadyError) else f"{exc}"
            return CheckResult(
                ready=None,
                reason=Reason.CHECK_FAILED,
                message=cut_message(f"cannot assess this node: {text}"),
                report=None,
                fix=FixOutcome(),
                probe=None,
                error=text,
                seconds=time.monotonic() - started,
            )

        fix = FixOutcome(skipped="ready")
        events: list[NodeEvent] = []
        if isinstance(self.fixer, ObservingFixer):
            events += self.fixer.startup_events()
        if report.ready and isinstance(self.fixer, ObservingFixer):
            fix = self.fixer.observed()
        elif not report.ready:
            fix = self._fix(report, facts)
            if fix.loaded:
                report, facts = self._assess(self.spec, self.root)
                where = " and persisted them" if fix.persist_changed else ""
                events.append(
                    NodeEvent(
                        "Normal",
                        "ModulesLoaded",
                        cut_message(f"loaded {', '.join(fix.loaded)}{where}"),
                    )
                )
            if fix.failed and _gist(fix.failed) != _gist(self._last_failed):
                first = next(iter(fix.failed.values()))
                events.append(NodeEvent("Warning", "ModuleLoadFailed", cut_message(first)))
        elif self.fixer is not None and self.fixer.persist:
            fix = self._persist_only(report, facts)
            if fix.persist_changed:
                events.append(
                    NodeEvent(
                        "Normal", "ModulesPersisted", "wrote /etc/modules-load.d/meshready.conf"
                    )
                )
        self._last_failed = dict(fix.failed)

        probe = None
        if report.ready and self.prober is not None:
            probe = self.prober.probe()
        ready, reason, message = self._verdict(report, fix, probe)
        return CheckResult(
            ready=ready,
            reason=reason,
            message=message,
            report=report,
            fix=fix,
            probe=probe,
            error=None,
            seconds=time.monotonic() - started,
            events=tuple(events),
        )

    def _fix(self, report: Report, facts: HostFacts) -> FixOutcome:
        if not report.load_order:
            return FixOutcome(skipped="nothing loadable")
        if self.fixer is None:
            return FixOutcome(skipped="loading is off (--loader none)")
        try:
            return self.fixer.fix(report, facts)
        except MeshreadyError as exc:
            return FixOutcome(failed={"fix": exc.one_line()})

    def _persist_only(self, report: Report, facts: HostFacts) -> FixOutcome:
        """A ready node still gets its persisted file written (e.g. loaded by hand, or by us
        before a restart), so the modules come back at boot."""
        assert self.fixer is not None
        try:
            return self.fixer.fix(report, facts)
        except MeshreadyError as exc:
            log.warning("persisting failed: %s", exc.one_line())
            return FixOutcome(failed={"persist": exc.one_line()})

    @staticmethod
    def _verdict(
        report: Report, fix: FixOutcome, probe: ProbeSummary | None
    ) -> tuple[bool, Reason, str]:
        if report.ready:
            if probe is None:
                return True, Reason.MODULES_READY, cut_message(report.summary)
            if probe.ok:
                return (
                    True,
                    Reason.VERIFIED,
                    cut_message(
                        f"{report.summary}; a {report.backend} redirect probe worked in the "
                        f"pod's network namespace ({probe.mode})"
                    ),
                )
            why = probe.error or probe.detail or "no redirect"
            return (
                False,
                Reason.PROBE_FAILED,
                cut_message(
                    f"modules are ready, but the {report.backend} redirect probe failed: {why}"
                ),
            )
        missing = [m for m in report.modules if m.state in (State.ABSENT, State.UNKNOWN)]
        if missing or report.unresolved:
            return False, Reason.MODULES_MISSING, cut_message(report.summary)
        if fix.failed:
            first = next(iter(fix.failed.values()))
            return False, Reason.LOAD_FAILED, cut_message(f"{report.summary}; {first}")
        return (
            False,
            Reason.NOT_LOADED,
            cut_message(f"{report.summary}; {fix.skipped or 'not loaded'}"),
        )
