"""``meshready diagnose --cluster``: every pod that failed for want of interception, by node and cause."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from meshready.cli.kube import connect
from meshready.cli.output import console, emit_json


def _parse_selector(selector: str | None) -> dict[str, Any] | None:
    if not selector:
        return None
    from meshready.errors import InputError

    labels: dict[str, Any] = {}
    for part in selector.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise InputError("-l", f"only key=value selectors are supported, got {part!r}")
        labels[key.strip().rstrip("=")] = value.strip()
    return labels


def diagnose_cluster(
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
    selector: str | None,
    concurrency: int,
    output: str,
    verbose: bool,
) -> int:
    from lightkube.resources.core_v1 import Pod

    from meshready.cluster.errors import ClusterError, describe, is_api_failure
    from meshready.cluster.failing_pods import find_failures
    from meshready.cluster.fleet import PAGE_SIZE, read_node_states
    from meshready.cluster.fleet_diagnose import diagnose_pod, group_by_node_and_cause

    labels = _parse_selector(selector)
    client = connect(kubeconfig, context)
    try:
        nodes = {s.name: s for s in read_node_states(client)}
        pods = client.list(Pod, namespace=namespace or "*", labels=labels, chunk_size=PAGE_SIZE)
        failures = find_failures(pods)
        logs = _read_with_progress(client, failures, concurrency, output)
    except Exception as exc:
        if is_api_failure(exc):
            raise ClusterError(f"reading pods: {describe(exc)}") from None
        raise
    diagnosed = [diagnose_pod(entry, nodes.get(entry.failure.node or "")) for entry in logs]
    groups = group_by_node_and_cause(diagnosed, nodes)
    if output == "json":
        emit_json(
            {
                "failedPods": len(diagnosed),
                "groups": [g.to_dict() for g in groups],
                "pods": [p.to_dict() for p in diagnosed],
            }
        )
    else:
        _render(groups, len(diagnosed), verbose)
    return 1 if diagnosed else 0


def _read_with_progress(client: Any, failures: list[Any], concurrency: int, output: str) -> Any:
    from meshready.cluster.failing_pods import read_failure_logs

    if output == "json" or not sys.stderr.isatty() or not failures:
        return read_failure_logs(client, failures, concurrency)
    from rich.progress import Progress

    with Progress(transient=True, console=_stderr_console()) as progress:
        task = progress.add_task("reading logs", total=len(failures))
        return read_failure_logs(
            client, failures, concurrency, progress=lambda _f: progress.advance(task)
        )


def _stderr_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def _render(groups: list[Any], failed: int, verbose: bool) -> None:
    from rich.table import Table

    out = console()
    if not failed:
        out.print("no mesh init container or CNI pod has failed")
        return
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    for col in ("NODE", "NODE READY", "CAUSE", "PODS", "MODULES"):
        table.add_column(col, overflow="fold")
    for g in groups:
        ready = "unknown" if g.node_ready is None else str(g.node_ready).lower()
        table.add_row(g.node, ready, g.cause, str(len(g.pods)), " ".join(g.modules) or "-")
    out.print(table)
    out.print("\nwhat to do:")
    for g in groups:
        pods = ", ".join(
            f"{p.logs.failure.namespace}/{p.logs.failure.pod}"
            for p in g.pods[: 3 if not verbose else None]
        )
        more = "" if verbose or len(g.pods) <= 3 else f" and {len(g.pods) - 3} more"
        out.print(f"- {g.node} ({g.cause}; {pods}{more}):")
        if g.node_ready is False and g.node_missing:
            out.print(
                f"    the agent reports this node not ready, missing {' '.join(g.node_missing)}"
            )
        elif g.node_ready is None:
            out.print("    no meshready agent report for this node: `meshready install` runs one")
        for command in g.fix:
            out.print(f"    $ {command}")
        notes = [p.note for p in g.pods if p.note]
        if notes:
            out.print(f"    ({notes[0]})")
    out.print(f"{failed} failed pod container(s) in {len(groups)} group(s)")
