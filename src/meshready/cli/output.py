"""Human and JSON rendering of reports. rich is imported only for human output."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from meshready.assess.report import Report, State

_STATE_STYLE = {
    State.LOADED: "green",
    State.BUILTIN: "green",
    State.LOADABLE: "yellow",
    State.ABSENT: "red",
    State.UNKNOWN: "magenta",
}


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 120)


def render_report(report: Report, verbose: bool = False) -> None:
    from rich.table import Table

    out = console()
    k = report.kernel
    out.print(
        f"kernel {k.release or '?'} ({k.arch or '?'}, {k.source})  backend {report.backend}"
        f"  rules {report.profile or ', '.join(report.rules)}"
    )
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("MODULE")
    table.add_column("STATE")
    table.add_column("NEEDED BY")
    table.add_column("DETAIL", overflow="fold")
    for m in report.modules:
        if not verbose and m.state.ok and not m.direct:
            continue
        needed = ", ".join(m.requests) if m.direct else (m.needed_by[0] if m.needed_by else "")
        style = _STATE_STYLE[m.state]
        table.add_row(m.name, f"[{style}]{m.state.value}[/]", needed, m.detail)
    for u in report.unresolved:
        table.add_row(f"({u.request})", "[red]absent[/]", u.request, u.detail)
    out.print(table)
    hidden = sum(1 for m in report.modules if m.state.ok and not m.direct)
    if hidden and not verbose:
        out.print(f"[dim]({hidden} dependencies loaded or built in not shown; -v shows all)[/]")
    for note in report.notes:
        out.print(f"- {note}")
    head, _, rest = report.summary.partition(": ")
    style = "green" if report.ready else "red"
    out.print(f"[bold {style}]{head.upper()}[/]: {rest}")
