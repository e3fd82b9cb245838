"""``meshready status``: every node's readiness for the mesh, from what the agents publish."""

from __future__ import annotations

from pathlib import Path

import click

from meshready.cli.kube import connect_with_config, kube_options, talking_to
from meshready.cli.output import Column, emit_json, output_option, print_table
from meshready.cluster.names import DEFAULT_NAMESPACE

COLUMNS = (
    Column("NODE", shrink=False),
    Column("READY", shrink=False),
    Column("REASON", min_width=10),
    Column("AGENT", min_width=7),
    Column("MISSING", min_width=8),
    Column("CHECKED", shrink=False),
    Column("BACKEND", wide=True),
    Column("KERNEL", wide=True),
    Column("MESSAGE", wide=True),
)


def age(seconds: float | None) -> str:
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
    help=f"namespace the agent runs in (default: {DEFAULT_NAMESPACE})",
)
@output_option(
    "table", "wide", "json", help_text="wide: also the backend, kernel and the agent's message"
)
@click.option("--no-headers", is_flag=True, help="print the table without its header line")
@click.option(
    "-l",
    "--selector",
    metavar="SELECTOR",
    help="only the nodes with these labels (kubectl syntax: k=v, k!=v, k in (a,b), !k)",
)
@click.pass_context
def status(
    ctx: click.Context,
    kubeconfig: Path | None,
    context: str | None,
    namespace: str | None,
    output: str,
    no_headers: bool,
    selector: str | None,
) -> None:
    """Show every node's readiness for mesh traffic interception.

    Reads what the meshready agent publishes on each Node (condition, labels, report annotation) and
    where its pods run; never execs into nodes. Exit 0 when every node is ready, 1 otherwise.
    """
    from meshready.cluster.fleet import read_fleet
    from meshready.cluster.selector import as_labels, parse_selector

    labels = as_labels(parse_selector(selector)) if selector else None
    client, connection = connect_with_config(kubeconfig, context)
    with client, talking_to(connection, "reading nodes"):
        fleet = read_fleet(client, namespace or DEFAULT_NAMESPACE, labels)
    if output == "json":
        emit_json(fleet.to_dict())
        ctx.exit(0 if fleet.all_ready else 1)
    rows = [
        (
            row.node,
            row.ready_word,
            row.reason or "-",
            row.agent,
            " ".join(row.missing) or "-",
            age(row.checked_seconds_ago),
            row.backend or "-",
            row.kernel or "-",
            row.message or "-",
        )
        for row in fleet.rows
    ]
    print_table(COLUMNS, rows, wide=output == "wide", headers=not no_headers)
    if not no_headers:
        if output != "wide" and any(r.ready is not True and r.message for r in fleet.rows):
            click.echo("(-o wide shows each node's message; `check node/NAME` its full report)")
        click.echo(fleet.summary())
    ctx.exit(0 if fleet.all_ready else 1)
