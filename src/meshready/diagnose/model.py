"""The diagnosis data: what ``diagnose_text`` returns and ``-o json`` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from meshready.knowledge.log_causes import CauseCode
from meshready.knowledge.requests import Backend


@dataclass(frozen=True)
class DiagnoseContext:
    """What the caller knows besides the log (all optional).

    ``backend`` overrides what the log suggests; ``container`` (istio-init, istio-validation,
    linkerd-init, ...) and ``kernel_release`` refine names and fixes; ``node`` and
    ``missing_modules`` (not loaded) and ``absent_modules`` (not available in the kernel) let a
    fleet view pass the node's own assessment.
    """

    backend: Backend | None = None
    container: str | None = None
    kernel_release: str | None = None
    node: str | None = None
    missing_modules: tuple[str, ...] = ()
    # Modules the node's own assessment (agent's published state, offline `meshready check`)
    # found absent from its kernel: not built, not in its module tree. Only this says a module
    # does not exist; a modprobe message in a container's log does not.
    absent_modules: tuple[str, ...] = ()


class Where(StrEnum):
    """Where a command runs."""

    NODE = "node"  # a shell on the affected node (root or sudo)
    CLUSTER = "cluster"  # anywhere kubectl reaches the cluster


@dataclass(frozen=True)
class Command:
    """One step of a fix: a single logical POSIX shell command, kept apart from its prose.

    ``run`` is pasted or written to a script as is. It may span several physical lines, but only
    through ``\\`` line continuations or a quoted heredoc, so it keeps its meaning however a
    renderer lays it out, as long as the text itself is not re-wrapped. It never carries a
    comment: what it does is ``purpose``. ``needs`` names the shell variables the command expects
    to be set (``POD``, ``NAMESPACE``): a script must set them (``: "${POD:?...}"``) first.
    """

    run: str
    where: Where
    purpose: str
    needs: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "where": self.where.value,
            "purpose": self.purpose,
            "needs": list(self.needs),
        }


@dataclass(frozen=True)
class Fix:
    steps: tuple[Command, ...] = ()  # shell commands in order
    modules_load_conf: str | None = None  # content for /etc/modules-load.d/<name>.conf
    meshready_steps: tuple[Command, ...] = ()  # the meshready (or agent) route
    notes: tuple[str, ...] = ()  # what else to change (SELinux, securityContext, platform)

    @property
    def commands(self) -> tuple[str, ...]:
        """The shell commands alone (no prose), in order."""
        return tuple(c.run for c in self.steps)

    @property
    def meshready(self) -> tuple[str, ...]:
        return tuple(c.run for c in self.meshready_steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "commands": list(self.commands),
            "steps": [c.to_dict() for c in self.steps],
            "modules_load_conf": self.modules_load_conf,
            "meshready": list(self.meshready),
            "meshready_steps": [c.to_dict() for c in self.meshready_steps],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Evidence:
    line: int  # physical line in the input (1-based)
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "text": self.text}


@dataclass(frozen=True)
class Finding:
    cause: CauseCode
    title: str
    modules: tuple[str, ...]
    evidence: tuple[str, ...]
    explanation: str
    fix: Fix
    confidence: float
    # Modules every rule printed in the log needs (the assessment engine's answer), when the log
    # shows its rules; ``modules`` already starts with the ones the failure names.
    rule_modules: tuple[str, ...] = ()
    evidence_lines: tuple[Evidence, ...] = field(default=(), compare=False)
    selinux: bool = False
    backend: Backend | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause.value,
            "title": self.title,
            "confidence": round(self.confidence, 2),
            "backend": None if self.backend is None else self.backend.value,
            "modules": list(self.modules),
            "rule_modules": list(self.rule_modules),
            "selinux": self.selinux,
            "evidence": list(self.evidence),
            "evidence_lines": [e.to_dict() for e in self.evidence_lines],
            "explanation": self.explanation,
            "fix": self.fix.to_dict(),
        }


@dataclass(frozen=True)
class Diagnosis:
    source: str
    findings: list[Finding]
    backend: Backend | None
    kernel_release: str | None
    lines: int  # logical lines read
    failed: bool  # the log shows a failed run

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ok": self.ok,
            "backend": None if self.backend is None else self.backend.value,
            "kernel_release": self.kernel_release,
            "lines": self.lines,
            "failed": self.failed,
            "findings": [f.to_dict() for f in self.findings],
        }
