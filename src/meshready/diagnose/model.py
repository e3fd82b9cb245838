"""The diagnosis data: what ``diagnose_text`` returns and ``-o json`` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshready.knowledge.requests import Backend


@dataclass(frozen=True)
class DiagnoseContext:
    """What the caller knows besides the log (all optional).

    ``backend`` overrides what the log suggests; ``container`` (istio-init, istio-validation,
    linkerd-init, ...) and ``kernel_release`` refine names and fixes; ``node`` and
    ``node_ready``/``missing_modules`` let a fleet view pass the node's own assessment.
    """

    backend: Backend | None = None
    container: str | None = None
    kernel_release: str | None = None
    node: str | None = None
    missing_modules: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fix:
    commands: tuple[str, ...] = ()  # shell commands, run on the node unless said otherwise
    modules_load_conf: str | None = None  # content for /etc/modules-load.d/<name>.conf
    meshready: tuple[str, ...] = ()  # the meshready (or agent) route
    notes: tuple[str, ...] = ()  # what else to change (SELinux, securityContext, platform)

    def to_dict(self) -> dict[str, Any]:
        return {
            "commands": list(self.commands),
            "modules_load_conf": self.modules_load_conf,
            "meshready": list(self.meshready),
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
    cause: str
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
    backend: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "title": self.title,
            "confidence": round(self.confidence, 2),
            "backend": self.backend,
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
    backend: str | None
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
            "backend": self.backend,
            "kernel_release": self.kernel_release,
            "lines": self.lines,
            "failed": self.failed,
            "findings": [f.to_dict() for f in self.findings],
        }
