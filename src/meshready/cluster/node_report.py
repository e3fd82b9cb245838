"""A node's report read back from what its agent published (``cluster.published``); a check pod's
``meshready check -o json`` is read by ``assess.report.report_from_dict``, beside its writer."""

from __future__ import annotations

from meshready.assess.report import (
    KernelInfo,
    ModuleReport,
    Report,
    State,
    UnresolvedRequest,
    backend_from_text,
    strings,
)
from meshready.cluster.published import NodeState


def published_report(state: NodeState) -> Report | None:
    """What the node's agent published, as a Report (modules and verdict; no per-module detail,
    which the compact annotation leaves out). None when nothing usable was published."""
    data = state.report
    if data is None or state.condition is None:
        return None
    modules = tuple(
        ModuleReport(name, State(word), True, (), (), "")
        for word in (s.value for s in State)
        for name in strings((data.get("modules") or {}).get(word))
    )
    ready = state.ready
    verdict = "ready" if ready else ("not ready" if ready is False else "unknown")
    message = state.condition.message or state.condition.reason or ""
    return Report(
        ready=bool(ready),
        summary=f"{verdict}: {message}" if message else verdict,
        backend=backend_from_text(data.get("backend") or state.backend_label),
        profile=data.get("profile"),
        rules=strings(data.get("rules")),
        kernel=KernelInfo(
            release=data.get("kernel") or state.kernel,
            arch=None,
            source="agent",
            module_support=None,
            modprobe=None,
            modules_disabled=None,
            index=None,
            config=None,
        ),
        modules=modules,
        load_order=(),
        unresolved=tuple(
            UnresolvedRequest(str(u), (), "") for u in strings(data.get("unresolved"))
        ),
    )
