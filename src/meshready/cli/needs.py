"""``meshready needs``: the module set some rules need on a kernel, for scripts and tests."""

from __future__ import annotations

from pathlib import Path

import click

from meshready.assess.assess import assess
from meshready.assess.plan import needs_from_options
from meshready.assess.report import State
from meshready.cli.options import rules_options
from meshready.cli.output import emit_json
from meshready.host.facts import gather_live, gather_offline
from meshready.knowledge.profiles import PROFILES


@click.command()
@rules_options
@click.option("--kernel-release", metavar="R", help="the kernel (default: the running one)")
@click.option(
    "--modules-dir",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="module tree with depmod output (/lib/modules/R, or its parent)",
)
@click.option(
    "--kernel-config",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="the kernel's config, to tell built-in modules without a module tree",
)
@click.option(
    "-o", "--output", type=click.Choice(["lines", "json"]), default="lines", show_default=True
)
def needs(
    profile: str | None,
    rules: tuple[str, ...],
    backend: str | None,
    kernel_release: str | None,
    modules_dir: Path | None,
    kernel_config: Path | None,
    output: str,
) -> None:
    """Print the modules the rules need on a kernel, dependencies first.

    Lines: one module per line in load order, built-in modules left out. JSON: every module with
    whether the rules need it directly, the requests that name it, and the load order.
    """
    spec = needs_from_options(profile, rules, backend)
    if kernel_release or modules_dir or kernel_config:
        facts = gather_offline(None, kernel_release, modules_dir, kernel_config)
    else:
        # The running kernel, but what it needs rather than what happens to be loaded now.
        facts = gather_live().kernel_only()
    report = assess(spec.needs, facts, spec.backend, spec.profile, spec.rules)
    order = [m.name for m in report.modules if m.state is not State.BUILTIN]
    if output == "lines":
        for name in order:
            click.echo(name)
        return
    emit_json(
        {
            "backend": report.backend,
            "kernel_release": report.kernel.release,
            "profile": report.profile,
            "rules": list(report.rules),
            "modules": [
                {
                    "name": m.name,
                    "direct": m.direct,
                    "builtin": m.state is State.BUILTIN,
                    "state": m.state.value,
                    "requested_by": list(m.requests),
                    "needed_by": list(m.needed_by),
                }
                for m in report.modules
            ],
            "load_order": order,
            "direct": [m.name for m in report.modules if m.direct],
            "unresolved": [u.request for u in report.unresolved],
        }
    )


@click.command()
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def profiles(output: str) -> None:
    """List the built-in profiles (mesh modes and their rules)."""
    if output == "json":
        emit_json(
            [
                {
                    "name": p.name,
                    "description": p.description,
                    "default_backend": p.default_backend.value,
                    "backends": [b.value for b in p.backends],
                    "files": list(p.files),
                }
                for p in PROFILES.values()
            ]
        )
        return
    for p in PROFILES.values():
        backends = "/".join(b.value for b in p.backends)
        click.echo(f"{p.name:24} {backends:14} {p.description}")
