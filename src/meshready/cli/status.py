"""``meshready status``: every node's readiness for the mesh, from what the agents publish."""

from __future__ import annotations

from pathlib import Path

import click

from meshready.cli.kube import connect, kube_options
from meshready.cli.output import console, emit_json


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@click.command()
@kube_options
@click.option(
    "-n",
    "--namespace",
    default=None,
    metavar="NS",
    help="namespace the agent runs in (default: meshready)",
)
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.pass_context
def status(
    ctx: click.Context,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
    output: str,
) -> None:
    """Show every node's readiness for mesh traffic interception.

    Reads what the meshready agent publishes on each Node (condition, labels, report annotation) and
    where its pods run; never execs into nodes. Exit 0 when every node is ready, 1 otherwise.
    """
    from meshready.cluster.errors import ClusterError, describe, is_api_failure
    from meshready.cluster.fleet import read_fleet
    from meshready.cluster.names import DEFAULT_NAMESPACE

    client = connect(kubeconfig, context)
    try:
        fleet = read_fleet(client, namespace or DEFAULT_NAMESPACE)
    except Exception as exc:
        if is_api_failure(exc):
            raise ClusterError(f"reading nodes: {describe(exc)}") from None
        raise
    if output == "json":
        emit_json(fleet.to_dict())
    else:
        from rich.table import Table

        out = console()
        table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
        for col in ("NODE", "AGENT", "READY", "REASON", "BACKEND", "KERNEL", "MISSING", "CHECKED"):
            table.add_column(col, overflow="fold")
        style = {"true": "green", "false": "red", "unknown": "magenta"}
        for row in fleet.rows:
            table.add_row(
                row.node,
                row.agent,
                f"[{style[row.ready_word]}]{row.ready_word}[/]",
                row.reason,
                row.backend or "-",
                row.kernel or "-",
                " ".join(row.missing) or "-",
                _age(row.checked_seconds_ago),
            )
        out.print(table)
        for row in fleet.rows:
            if row.ready is not True and row.message:
                out.print(f"- {row.node}: {row.message}")
        out.print(fleet.summary())
    ctx.exit(0 if fleet.all_ready else 1)
