"""A node's report read back: from ``meshready check -o json`` (a check pod's output, schema
``meshready.io/report/v1``) or from what its agent published (``cluster.published``)."""

from __future__ import annotations

from typing import Any

from meshready.assess.report import (
    SCHEMA,
    IptablesAssumption,
    KernelInfo,
    ModuleReport,
    Report,
    State,
    UnresolvedRequest,
)
from meshready.cluster.published import NodeState
from meshready.errors import MeshreadyError
from meshready.knowledge.requests import Backend


class ReportFormatError(MeshreadyError):
    """A check pod printed something that is not the report it should have (a version mismatch
    between this client and the image, or a crash). Exit code 1."""


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value or ())


def _backend(value: Any) -> Backend | None:
    """A backend as a report or an agent wrote it; None when absent, "?" or not one we know
    (Report prints None as "?")."""
    known = isinstance(value, str) and value in {b.value for b in Backend}
    return Backend(value) if known else None


def _iptables(data: Any) -> IptablesAssumption | None:
    if not isinstance(data, dict):
        return None
    return IptablesAssumption(str(data["version"]), str(data["source"]), str(data["measured_as"]))


def report_from_dict(data: dict[str, Any]) -> Report:
    """The Report of ``check -o json``; ReportFormatError when DATA is not one."""
    if data.get("schema") != SCHEMA:
        raise ReportFormatError(f"expected a {SCHEMA} report, got schema {data.get('schema')!r}")
    try:
        kernel = data["kernel"]
        return Report(
            ready=bool(data["ready"]),
            summary=str(data["summary"]),
            backend=_backend(data["backend"]),
            profile=data.get("profile"),
            rules=_strings(data.get("rules")),
            kernel=KernelInfo(
                release=kernel.get("release"),
                arch=kernel.get("arch"),
                source=str(kernel.get("source", "")),
                module_support=kernel.get("module_support"),
                modprobe=kernel.get("modprobe"),
                modules_disabled=kernel.get("modules_disabled"),
                index=kernel.get("index"),
                config=kernel.get("config"),
            ),
            modules=tuple(
                ModuleReport(
                    name=str(m["name"]),
                    state=State(m["state"]),
                    direct=bool(m["direct"]),
                    requests=_strings(m.get("requests")),
                    needed_by=_strings(m.get("needed_by")),
                    detail=str(m.get("detail", "")),
                    config=m.get("config"),
                    path=m.get("path"),
                    required=bool(m.get("required", True)),
                    warning=m.get("warning"),
                )
                for m in data["modules"]
            ),
            load_order=_strings(data.get("load_order")),
            unresolved=tuple(
                UnresolvedRequest(
                    str(u["request"]),
                    _strings(u.get("needed_by")),
                    str(u.get("detail", "")),
                    required=bool(u.get("required", True)),
                    warning=u.get("warning"),
                )
                for u in data.get("unresolved") or ()
            ),
            notes=_strings(data.get("notes")),
            iptables=_iptables(data.get("iptables")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReportFormatError(f"not a {SCHEMA} report ({type(exc).__name__}: {exc})") from exc


def published_report(state: NodeState) -> Report | None:
    """What the node's agent published, as a Report (modules and verdict; no per-module detail,
    which the compact annotation leaves out). None when nothing usable was published."""
    data = state.report
    if data is None or state.condition is None:
        return None
    modules = tuple(
        ModuleReport(name, State(word), True, (), (), "")
        for word in (s.value for s in State)
        for name in _strings((data.get("modules") or {}).get(word))
    )
    ready = state.ready
    verdict = "ready" if ready else ("not ready" if ready is False else "unknown")
    message = state.condition.message or state.condition.reason or ""
    return Report(
        ready=bool(ready),
        summary=f"{verdict}: {message}" if message else verdict,
        backend=_backend(data.get("backend") or state.backend_label),
        profile=data.get("profile"),
        rules=_strings(data.get("rules")),
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
            UnresolvedRequest(str(u), (), "") for u in _strings(data.get("unresolved"))
        ),
    )
