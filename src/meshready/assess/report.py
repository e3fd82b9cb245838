"""The report every front end renders (CLI table, JSON, Node condition, metrics, diagnose).

JSON schema ``meshready.io/report/v1`` is documented in docs/report.md; keep the two in step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

SCHEMA = "meshready.io/report/v1"


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


@dataclass(frozen=True)
class UnresolvedRequest:
    request: str
    needed_by: tuple[str, ...]
    detail: str


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
    backend: str
    profile: str | None
    rules: tuple[str, ...]
    kernel: KernelInfo
    modules: tuple[ModuleReport, ...]
    load_order: tuple[str, ...]  # modules to load, dependencies first (state loadable)
    unresolved: tuple[UnresolvedRequest, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.modules if not m.state.ok)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data = {"schema": SCHEMA, **data, "missing": list(self.missing)}
        return data
