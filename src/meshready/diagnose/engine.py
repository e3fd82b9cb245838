"""The diagnose engine: a log's text in, ranked findings out. Pure: no I/O.

    from meshready.diagnose.engine import diagnose_text
    diagnosis = diagnose_text(text, "istio-init.log")
    for finding in diagnosis.findings: ...

The fleet view calls the same function per pod log, passing the container name and what it knows
about the node in ``DiagnoseContext``.
"""

from __future__ import annotations

from meshready.diagnose.classify import classify
from meshready.diagnose.logrules import find_rules
from meshready.diagnose.model import DiagnoseContext, Diagnosis, Evidence, Finding, Fix
from meshready.diagnose.readers import read_lines
from meshready.diagnose.signals import extract
from meshready.errors import InputError

__all__ = [
    "DiagnoseContext",
    "Diagnosis",
    "Evidence",
    "Finding",
    "Fix",
    "diagnose_text",
]


def diagnose_text(text: str, source: str, context: DiagnoseContext | None = None) -> Diagnosis:
    """Diagnose one log. Raises InputError for input that is not a text log (binary, empty)."""
    if "\x00" in text:
        raise InputError(source, "binary data, not a log")
    if not text.strip():
        raise InputError(source, "empty input: no log lines")
    ctx = context or DiagnoseContext()
    lines = read_lines(text)
    signals = extract(lines)
    rules = find_rules(lines)
    findings, backend, kernel, failed = classify(signals, lines, rules, ctx)
    return Diagnosis(
        source=source,
        findings=findings,
        backend=backend.value if (findings or failed) else None,
        kernel_release=kernel,
        lines=len(lines),
        failed=failed,
    )
