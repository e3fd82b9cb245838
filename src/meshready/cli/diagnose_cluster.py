"""``meshready diagnose --cluster`` and ``diagnose node/NAME``: every pod that failed for want of
interception, by node and cause, with each node's published state and paste-safe fixes."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from meshready.cli.kube import connect_with_config, request_timeout, talking_to
from meshready.cli.output import (
    Column,
    emit_json,
    fix_script,
    print_commands,
    print_table,
)
from meshready.errors import InputError

MAX_PODS_SHOWN = 5
SCHEMA = "meshready.io/diagnose-cluster/v1"  # src/meshready/schemas/diagnose-cluster.json

COLUMNS = (
    Column("NODE", shrink=False),
    Column("NODE READY", shrink=False),
    Column("CAUSE", min_width=12),
    Column("PODS", shrink=False),
    Column("MODULES", min_width=10),
    Column("POD NAMES", wide=True),
)


@dataclass(frozen=True)
class ClusterQuery:
    namespace: str | None = None
    selector: str | None = None
    nodes: tuple[str, ...] = ()  # diagnose node/NAME: only pods on these nodes
    concurrency: int = 8


@contextmanager
def stderr_status(enabled: bool) -> Iterator[Callable[[str], None]]:
    """A one-line status on stderr (a terminal only), replaced as work goes on, gone at the end."""
    if not enabled or not sys.stderr.isatty():
        yield lambda _text: None
        return
    from rich.console import Console

    with Console(stderr=True).status("") as status:
        yield lambda text: status.update(text)


def diagnose_cluster(
    kubeconfig: Path | None,
    context: str | None,
    query: ClusterQuery,
    output: str,
    verbose: bool,
    no_headers: bool = False,
    script: bool = False,
) -> int:
    from meshready.cluster.failing_pods import (
        LogReader,
        find_failures,
        list_candidate_pods,
        read_failure_logs,
    )
    from meshready.cluster.fleet import read_named_nodes
    from meshready.cluster.fleet_diagnose import diagnose_pods, group_by_node_and_cause
    from meshready.cluster.selector import parse_selector

    labels = parse_selector(query.selector) if query.selector else []
    client, connection = connect_with_config(kubeconfig, context)
    with (
        client,
        LogReader(connection.config, request_timeout()) as reader,
        stderr_status(output != "json") as status,
    ):
        if query.nodes:
            with talking_to(connection, "reading nodes"):
                nodes = read_named_nodes(client, query.nodes)
            missing = [n for n in query.nodes if n not in nodes]
            if missing:
                raise InputError(f"node/{missing[0]}", "no such node")
        pods: list[Any] = []
        with talking_to(connection, "listing pods"):
            for node in query.nodes or (None,):
                pods += list_candidate_pods(
                    reader,
                    namespace=query.namespace,
                    labels=labels,
                    node=node,
                    on_pod=lambda n: status(f"listing pods that have not started: {n}"),
                )
        failures = find_failures(pods)
        if not query.nodes:
            # Only the nodes with failures: their published state is what the fix text uses.
            status(f"reading {len({f.node for f in failures if f.node})} nodes")
            with talking_to(connection, "reading nodes"):
                nodes = read_named_nodes(client, {f.node for f in failures if f.node})
        done = 0

        def advance(_failure: Any) -> None:
            nonlocal done
            done += 1
            status(f"reading logs: {done}/{len(failures)}")

        with talking_to(connection, "reading logs"):
            logs = read_failure_logs(reader, failures, query.concurrency, progress=advance)
    diagnosed = diagnose_pods(logs, nodes)
    groups = group_by_node_and_cause(diagnosed, nodes)
    if script:
        _print_script(groups)
    elif output == "json":
        emit_json(
            {
                "schema": SCHEMA,
                "failed_pods": len(diagnosed),
                "groups": [g.to_dict() for g in groups],
                "pods": [p.to_dict() for p in diagnosed],
            }
        )
    else:
        _render(groups, len(diagnosed), verbose, output == "wide", no_headers)
    return 1 if diagnosed else 0


def _print_script(groups: Sequence[Any]) -> None:
    nodes = sorted({g.node for g in groups if g.node_fix})
    if len(nodes) > 1:
        raise InputError(
            "--fix-script",
            f"the fixes are for {len(nodes)} nodes ({', '.join(nodes[:5])}...): a script runs "
            "on one node; use `diagnose node/NAME --fix-script`",
        )
    commands: list[Any] = []
    for g in groups:
        commands += [c for c in g.node_fix if c not in commands]
    header = [f"fix for node {nodes[0]}: run there as root" if nodes else "nothing to run"]
    for g in groups:
        for step in g.cluster_fix:
            for binding in g.bindings:
                values = " ".join(f"{k}={v}" for k, v in binding.items())
                header.append(f"then, from a workstation: {values} {' '.join(step.run.split())}")
    click.echo(fix_script(commands, header), nl=False)


def _render(
    groups: Sequence[Any], failed: int, verbose: bool, wide: bool, no_headers: bool
) -> None:
    if not failed:
        click.echo("no mesh init container or CNI pod has failed")
        return
    rows = []
    for g in groups:
        ready = "unknown" if g.node_ready is None else str(g.node_ready).lower()
        names = " ".join(p.logs.failure.pod for p in g.pods)
        rows.append([g.node, ready, g.cause, str(len(g.pods)), " ".join(g.modules) or "-", names])
    print_table(COLUMNS, rows, wide=wide, headers=not no_headers)
    if no_headers:
        return
    click.echo("")
    click.echo("what to do:")
    for g in groups:
        shown = g.pods if verbose else g.pods[:3]
        pods = ", ".join(f"{p.logs.failure.namespace}/{p.logs.failure.pod}" for p in shown)
        more = f" and {len(g.pods) - len(shown)} more" if len(g.pods) > len(shown) else ""
        click.echo(f"- {g.node}: {g.cause} ({pods}{more})")
        if g.node_ready is False and g.node_missing:
            click.echo(f"  its agent reports it not ready, missing {' '.join(g.node_missing)}")
        elif g.node_ready is None:
            click.echo("  no meshready agent report for this node: `meshready install` runs one")
        if g.node_fix:
            print_commands(f"on {g.node}:", g.node_fix, indent="  ")
        if g.cluster_fix:
            bindings = g.bindings if verbose else g.bindings[:MAX_PODS_SHOWN]
            print_commands("then, from a workstation with kubectl:", g.cluster_fix, "  ", bindings)
            if len(g.bindings) > len(bindings):
                click.echo(f"  (for {len(g.bindings) - len(bindings)} more pods: -v)")
        notes = [p.note for p in g.pods if p.note]
        if notes:
            click.echo(f"  ({notes[0]})")
    click.echo(f"{failed} failed pod container(s) in {len(groups)} group(s)")
