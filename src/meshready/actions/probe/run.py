"""The probe's entry point: choose the mode, run it, and turn its report into the result."""

from __future__ import annotations

import os
import time

from meshready.actions.probe.inplace import run_inplace
from meshready.actions.probe.netns import run_netns
from meshready.actions.probe.result import Mode, ModeReport, ProbeFailure, ProbeResult
from meshready.actions.probe.rules import redirect_ports, rule_texts
from meshready.actions.probe_targets import ProbeTarget, target_for_rules
from meshready.assess.plan import NeedsSpec
from meshready.knowledge.requests import Backend


def probe(
    spec: NeedsSpec,
    backend: Backend | None = None,
    mode: Mode = Mode.NETNS,
    *,
    timeout: float = 30.0,
    proxy_uid: int | None = None,
    target: ProbeTarget | None = None,
) -> ProbeResult:
    """Apply ``spec``'s rules for real with ``backend`` (default: the spec's) and check redirection.

    Never raises for a failing check: the result says what failed (``ok`` False, ``error``).
    Raises InputError for unusable input (rules that cannot be applied this way).
    """
    started = time.monotonic()
    chosen = backend if backend is not None else spec.backend

    texts = rule_texts(spec)
    tgt = target or target_for_rules(spec.profile, spec.rulesets, proxy_uid)
    ports = redirect_ports(texts)
    if not ports and mode is Mode.NETNS:
        return ProbeResult(
            ok=False,
            redirected=False,
            proxy_bypassed=None,
            backend=chosen,
            duration_s=time.monotonic() - started,
            detail="the rules REDIRECT no TCP port: the probe checks outbound redirection",
            error="nothing to check: no REDIRECT in the rules",
            mode=mode,
            proxy=tgt.describe_proxy(),
        )
    try:
        if mode is Mode.NETNS:
            report = run_netns(texts, chosen, tgt, ports, timeout)
        else:
            report = run_inplace(texts, chosen, tgt, min(timeout / 3, 8.0))
    except ProbeFailure as exc:
        report = ModeReport(error=str(exc))
    bypassed = report.proxy_bypassed
    error = report.error
    ok = error is None and report.redirected and (bypassed is True or not tgt.has_proxy)
    if mode is Mode.INPLACE and bypassed is None and error is None:
        ok = report.redirected  # the probe could not act as the proxy here; said in the notes
    notes = report.notes
    if ok:
        detail = (
            f"rules applied with {chosen.value}; a connection from uid "
            f"{tgt.app_uid if mode is Mode.NETNS else os.geteuid()} was redirected to "
            f":{report.redirect_port} (SO_ORIGINAL_DST {report.original_dst})"
        )
        if bypassed:
            detail += f"; the proxy's ({tgt.describe_proxy()}) was not"
    else:
        detail = error or "; ".join(notes) or "interception did not work"
    if notes and ok:
        detail += " (" + "; ".join(notes) + ")"
    return ProbeResult(
        ok=ok,
        redirected=report.redirected,
        proxy_bypassed=bypassed,
        duration_s=time.monotonic() - started,
        detail=detail,
        error=error,
        applied=tuple(report.applied),
        original_dst=report.original_dst,
        redirect_port=report.redirect_port,
        steps=tuple(report.steps),
        backend=chosen,
        mode=mode,
        proxy=tgt.describe_proxy(),
    )
