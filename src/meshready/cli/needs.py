"""``meshready needs``: the module set some rules need on a kernel, for scripts and tests."""

from __future__ import annotations

from pathlib import Path

import click

from meshready.assess.assess import assess
from meshready.assess.plan import needs_from_options
from meshready.assess.report import State, backend_name
from meshready.cli.options import iptables_version_option, rules_options
from meshready.cli.output import emit_json, output_option
from meshready.host.facts import gather_live, gather_offline
from meshready.knowledge.profiles import PROFILES
from meshready.knowledge.requests import Backend


@click.command()
@rules_options
@iptables_version_option
@click.option(
    "--include",
    type=click.Choice(["all", "required"]),
    default="all",
    show_default=True,
    help="required: only what the rules cannot apply without; all: also the recommended "
    "modules whose absence only makes iptables warn",
)
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
@output_option("lines", "json")
def needs(
    profile: str | None,
    rules: tuple[str, ...],
    backend: Backend | None,
    iptables_version: str | None,
    include: str,
    kernel_release: str | None,
    modules_dir: Path | None,
    kernel_config: Path | None,
    output: str,
) -> None:
    """Print the modules the rules need on a kernel, dependencies first.

    Lines: one module per line in load order, built-in modules left out. JSON: every module with
    whether the rules need it directly, whether it is required or only recommended, the requests
    that name it, and the load order.
    """
    spec = needs_from_options(profile, rules, backend, iptables_version)
    if kernel_release or modules_dir or kernel_config:
        facts = gather_offline(None, kernel_release, modules_dir, kernel_config)
    else:
        # The running kernel, but what it needs rather than what happens to be loaded now.
        facts = gather_live().kernel_only()
    report = assess(spec.needs, facts, spec.backend, spec.profile, spec.rules, spec.iptables)
    order = [
        m.name
        for m in report.modules
        if m.state is not State.BUILTIN and (m.required or include == "all")
    ]
    unanswered = [u.request for u in report.unresolved if u.required]
    if output == "lines":
        for name in order:
            click.echo(name)
        if unanswered:  # never a silent drop: the list alone would look complete
            click.echo(
                f"meshready: warning: nothing in kernel {report.kernel.release or '?'} answers "
                f"{', '.join(unanswered)} (the rules need it; no module can be listed)",
                err=True,
            )
            raise click.exceptions.Exit(1)
        return
    emit_json(
        {
            "schema": "meshready.io/needs/v1",
            "backend": backend_name(report.backend),
            "kernel_release": report.kernel.release,
            "profile": report.profile,
            "rules": list(report.rules),
            "iptables": None
            if report.iptables is None
            else {
                "version": report.iptables.version,
                "source": report.iptables.source,
                "measured_as": report.iptables.measured_as,
            },
            "include": include,
            "modules": [
                {
                    "name": m.name,
                    "direct": m.direct,
                    "builtin": m.state is State.BUILTIN,
                    "state": m.state.value,
                    "requested_by": list(m.requests),
                    "needed_by": list(m.needed_by),
                    "need": "required" if m.required else "recommended",
                    "warning": m.warning,
                }
                for m in report.modules
            ],
            "load_order": order,
            "direct": [m.name for m in report.modules if m.direct],
            "required": [m.name for m in report.modules if m.direct and m.required],
            "recommended": [m.name for m in report.modules if m.direct and not m.required],
            "unresolved": [u.request for u in report.unresolved if u.required],
            "unresolved_recommended": [u.request for u in report.unresolved if not u.required],
        }
    )


@click.command()
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table")
def profiles(output: str) -> None:
    """List the built-in profiles (mesh modes and their rules)."""
    if output == "json":
        emit_json(
            {
                "schema": "meshready.io/profiles/v1",
                "profiles": [
                    {
                        "name": p.name,
                        "description": p.description,
                        "default_backend": p.default_backend.value,
                        "backends": [b.value for b in p.backends],
                        "files": list(p.files),
                    }
                    for p in PROFILES.values()
                ],
            }
        )
        return
    for p in PROFILES.values():
        backends = "/".join(b.value for b in p.backends)
        click.echo(f"{p.name:24} {backends:14} {p.description}")
