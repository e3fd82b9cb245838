"""The report every front end renders (CLI table, JSON, Node condition, metrics, diagnose).

JSON schema ``meshready.io/report/v1`` is documented in docs/report.md; keep the two in step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

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
