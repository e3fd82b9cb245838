"""``meshready check``: is this node's kernel ready for the mesh's interception rules?"""

from __future__ import annotations

from pathlib import Path

import click

from meshready.assess.assess import assess
from meshready.assess.plan import needs_from_options
from meshready.cli.options import facts_from_options, host_options, rules_options
from meshready.cli.output import emit_json, render_report


@click.command()
@rules_options
@host_options
@click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.option("-v", "--verbose", is_flag=True, help="show every module, dependencies included")
@click.pass_context
def check(
    ctx: click.Context,
    profile: str | None,
    rules: tuple[str, ...],
    backend: str | None,
    host_root: Path | None,
    lsmod: Path | None,
    kernel_release: str | None,
    modules_dir: Path | None,
    kernel_config: Path | None,
    output: str,
    verbose: bool,
) -> None:
    """Assess which kernel modules the rules need and whether each is loaded.

    Live on this machine, on a host root mounted in a pod (--host-root), or offline from a node's
    lsmod output and kernel release (--lsmod, --kernel-release, optionally --modules-dir and
    --kernel-config). Exit 0 when ready, 1 when not, 2 on bad input.
    """
    spec = needs_from_options(profile, rules, backend)
    facts = facts_from_options(host_root, lsmod, kernel_release, modules_dir, kernel_config)
    report = assess(spec.needs, facts, spec.backend, spec.profile, spec.rules)
    if output == "json":
        emit_json(report.to_dict())
    else:
        render_report(report, verbose)
    ctx.exit(0 if report.ready else 1)
