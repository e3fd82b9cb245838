"""What a probe yields: the mode's report, the public result and its one JSON form."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from meshready.knowledge.requests import Backend


class Mode(StrEnum):
    """Where the rules are applied (the package docstring and docs/fix.md describe both)."""

    NETNS = "netns"  # a throwaway network namespace: needs CAP_SYS_ADMIN
    INPLACE = "inplace"  # this namespace, in unhooked chains: CAP_NET_ADMIN is enough


class ProbeFailure(Exception):
    """A step of the probe failed; the message is one line for the user."""


@dataclass
class ConnectionCheck:
    """What the test connections showed."""

    redirected: bool = False
    proxy_bypassed: bool | None = None
    original_dst: str | None = None
    redirect_port: int | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class ModeReport:
    """What one mode found; the netns child sends it to its parent as JSON."""

    applied: list[str] = field(default_factory=list)  # rule sources the kernel accepted
    steps: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    redirected: bool = False
    proxy_bypassed: bool | None = None
    original_dst: str | None = None
    redirect_port: int | None = None
    error: str | None = None

    def record(self, check: ConnectionCheck) -> None:
        self.redirected = check.redirected
        self.proxy_bypassed = check.proxy_bypassed
        self.original_dst = check.original_dst
        self.redirect_port = check.redirect_port
        self.notes += check.notes

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModeReport:
        """The report from the child's JSON; a field of the wrong type reads as absent."""
        port = data.get("redirect_port")
        return cls(
            applied=_strings(data.get("applied")),
            steps=_strings(data.get("steps")),
            notes=_strings(data.get("notes")),
            redirected=data.get("redirected") is True,
            proxy_bypassed=_bool_or_none(data.get("proxy_bypassed")),
            original_dst=_str_or_none(data.get("original_dst")),
            redirect_port=port if isinstance(port, int) else None,
            error=_str_or_none(data.get("error")),
        )


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    redirected: bool  # an application connection was redirected (SO_ORIGINAL_DST checked)
    proxy_bypassed: bool | None  # the proxy's connection was not redirected; None: not checked
    backend: Backend
    duration_s: float
    detail: str
    error: str | None = None
    mode: Mode = Mode.NETNS
    applied: tuple[str, ...] = ()  # rule sources the kernel accepted
    original_dst: str | None = None  # what SO_ORIGINAL_DST gave on the redirected connection
    redirect_port: int | None = None  # the listener that got it
    proxy: str | None = None  # the proxy identity checked ("uid 1337", "mark 0x3/0xfff")
    steps: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The result as ``meshready probe -o json`` prints it (schemas/probe.json), keys in order."""
        return {
            "ok": self.ok,
            "redirected": self.redirected,
            "proxy_bypassed": self.proxy_bypassed,
            "backend": self.backend.value,
            "duration_s": round(self.duration_s, 3),
            "detail": self.detail,
            "error": self.error,
            "mode": self.mode.value,
            "applied": self.applied,
            "original_dst": self.original_dst,
            "redirect_port": self.redirect_port,
            "proxy": self.proxy,
            "steps": self.steps,
        }


def _strings(value: object) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _bool_or_none(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
