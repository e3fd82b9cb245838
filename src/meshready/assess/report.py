"""The report every front end renders (CLI table, JSON, Node condition, metrics, diagnose).

JSON schema ``meshready.io/report/v1`` is documented in docs/report.md; keep the two in step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from meshready.errors import MeshreadyError
from meshready.knowledge.requests import Backend

SCHEMA = "meshready.io/report/v1"


def backend_name(backend: Backend | None) -> str:
    """A backend as printed and in JSON (a string in every schema): "?" when it is not known."""
    return "?" if backend is None else backend.value


class State(StrEnum):
    LOADED = "loaded"
    BUILTIN = "builtin"
    LOADABLE = "loadable"
    ABSENT = "absent"
    UNKNOWN = "unknown"

    @property
    def ok(self) -> bool:
        return self in (State.LOADED, State.BUILTIN)


@dataclass(frozen=True)
class ModuleReport:
    name: str
    state: State
    direct: bool  # asked for by the rules themselves, not only as a dependency
    requests: tuple[str, ...]  # the request names that resolved to this module
    needed_by: tuple[str, ...]  # rules (file:line what) or "dependency of X"
    detail: str
    config: str | None = None  # Kconfig symbol
    path: str | None = None  # file in the module tree, when known
    # False: recommended only: without it the rules still apply and the tool prints `warning`
    # (iptables-nft, measured per iptables version); it does not count for readiness.
    required: bool = True
    warning: str | None = None


@dataclass(frozen=True)
class UnresolvedRequest:
    request: str
    needed_by: tuple[str, ...]
    detail: str
    required: bool = True
    warning: str | None = None


@dataclass(frozen=True)
class IptablesAssumption:
    """Which iptables userspace the derivation assumed (iptables-nft's requests depend on it)."""

    version: str  # as given or as the profile states
    source: str  # "--iptables-version", "profile NAME: ...", or "default: ..."
    measured_as: str  # the measured version whose behaviour applies (knowledge/iptables_versions)


@dataclass(frozen=True)
class KernelInfo:
    release: str | None
    arch: str | None
    source: str
    module_support: bool | None
    modprobe: str | None
    modules_disabled: bool | None
    index: str | None  # where modules.dep came from, None without a module index
    config: str | None


@dataclass(frozen=True)
class Report:
    ready: bool
    summary: str
    backend: Backend | None  # None: not known (a report an agent published without one)
    profile: str | None
    rules: tuple[str, ...]
    kernel: KernelInfo
    modules: tuple[ModuleReport, ...]
    load_order: tuple[str, ...]  # modules to load, dependencies first (state loadable)
    unresolved: tuple[UnresolvedRequest, ...] = ()
    notes: tuple[str, ...] = field(default=())
    iptables: IptablesAssumption | None = None  # None for native nftables rules

    @property
    def missing(self) -> tuple[str, ...]:
        """Required modules that are neither loaded nor built in."""
        return tuple(m.name for m in self.modules if m.required and not m.state.ok)

    @property
    def recommended(self) -> tuple[str, ...]:
        """Recommended modules (warning only) that are neither loaded nor built in."""
        return tuple(m.name for m in self.modules if not m.required and not m.state.ok)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data = {
            "schema": SCHEMA,
            **data,
            "backend": backend_name(self.backend),
            "modules": [{**m, "state": m["state"].value} for m in data["modules"]],
            "missing": list(self.missing),
            "recommended": list(self.recommended),
        }
        return data


class ReportFormatError(MeshreadyError):
    """JSON that is not a report: e.g. a check pod printed something else (a version mismatch
    between this client and the image, or a crash). Exit code 1."""


def strings(value: Any) -> tuple[str, ...]:
    """A JSON list of strings (or nothing) as a tuple."""
    return tuple(str(v) for v in value or ())


def backend_from_text(value: Any) -> Backend | None:
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
            backend=backend_from_text(data["backend"]),
            profile=data.get("profile"),
            rules=strings(data.get("rules")),
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
                    requests=strings(m.get("requests")),
                    needed_by=strings(m.get("needed_by")),
                    detail=str(m.get("detail", "")),
                    config=m.get("config"),
                    path=m.get("path"),
                    required=bool(m.get("required", True)),
                    warning=m.get("warning"),
                )
                for m in data["modules"]
            ),
            load_order=strings(data.get("load_order")),
            unresolved=tuple(
                UnresolvedRequest(
                    str(u["request"]),
                    strings(u.get("needed_by")),
                    str(u.get("detail", "")),
                    required=bool(u.get("required", True)),
                    warning=u.get("warning"),
                )
                for u in data.get("unresolved") or ()
            ),
            notes=strings(data.get("notes")),
            iptables=_iptables(data.get("iptables")),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ReportFormatError(f"not a {SCHEMA} report ({type(exc).__name__}: {exc})") from exc
