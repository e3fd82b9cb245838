"""The diagnose engine: a log's text in, ranked findings out. Pure: no I/O.

    from meshready.diagnose.engine import diagnose_text
    diagnosis = diagnose_text(text, "istio-init.log")
    for finding in diagnosis.findings: ...

The fleet view calls the same function per pod log, passing the container name and what it knows
about the node in ``DiagnoseContext``.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

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
    with _no_cycle_collection():
        lines = read_lines(text)
        signals = extract(lines)
        rules = find_rules(lines)
        findings, backend, kernel, failed = classify(signals, lines, rules, ctx)
    return Diagnosis(
        source=source,
        findings=findings,
        backend=backend if (findings or failed) else None,
        kernel_release=kernel,
        lines=len(lines),
        failed=failed,
    )


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """A 50 MB log makes a million small objects (its lines) that live as long as the call; the
    cyclic garbage collector would walk them again and again while they pile up (a tenth of the
    time). It is paused for the call and runs again afterwards if it ran before: whatever cycles
    the call leaves are collected then."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
