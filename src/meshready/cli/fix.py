"""``meshready fix`` and ``meshready unfix``: load and persist the modules the rules need."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from meshready.actions.fix import FixOptions, FixPlan, FixResult, apply_fix, assess_live, plan_fix
from meshready.actions.loader import LoaderKind, choose_loader
from meshready.actions.persist import PERSIST_PATH, PersistAction, remove_persisted
from meshready.assess.plan import needs_from_options
from meshready.assess.report import Report, backend_name
from meshready.cli.choices import enum_choice
from meshready.cli.node_commands import (
    NodeRequest,
    kube_and_node_options,
    node_request_options,
    rule_args,
    run_on_nodes,
)
from meshready.cli.options import rules_options
from meshready.cli.output import emit_json, render_report
from meshready.errors import ActionError, InputError
from meshready.host.root import HostRoot
from meshready.knowledge.requests import Backend

FIX_SCHEMA = "meshready.io/fix/v1"  # src/meshready/schemas/fix.json

_host_root = click.option(
    "--host-root",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="the node's root filesystem mounted here (as in a privileged pod)",
)
_output = click.option(
    "-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True
)


def _root(host_root: Path | None) -> HostRoot:
    if host_root is None:
        return HostRoot()
    if not host_root.is_dir():
        raise InputError(str(host_root), "host root is not a directory")
    return HostRoot(host_root)


def _print_plan(plan: FixPlan, dry_run: bool) -> None:
    head = "plan (dry run: nothing changed)" if dry_run else "plan"
    click.echo(f"{head}: kernel {plan.release or '?'}, backend {backend_name(plan.backend)}")
    if plan.load:
        click.echo(f"  load, in order: {' '.join(plan.load)}")
    else:
        click.echo("  load: nothing (every needed module is loaded or built in)")
    if plan.present:
        click.echo(f"  already there: {' '.join(plan.present)}")
    if plan.persist_path is None:
        click.echo("  persist: no (--no-persist)")
    elif plan.persist_content is None:
        click.echo("  persist: nothing to persist (no needed module is a loadable module)")
    else:
        click.echo(f"  persist: {plan.persist_action.value} {plan.persist_path}")
        if dry_run:
            for line in plan.persist_content.splitlines():
                click.echo(f"    | {line}")
    for blocker in plan.blockers:
        click.echo(f"  cannot apply: {blocker}")


def _print_result(result: FixResult) -> None:
    if result.loaded:
        click.echo(
            f"loaded {len(result.loaded)} module(s) with {result.loader} in "
            f"{result.duration_s:.2f}s: {' '.join(result.loaded)}"
        )
    else:
        click.echo("loaded nothing: every needed module was already loaded or built in")
    if result.persist_path is None:
        click.echo("persisted nothing")
    elif result.persist_changed:
        verb = "wrote" if result.persist_action is PersistAction.CREATE else "updated"
        click.echo(f"{verb} {result.persist_path}")
    else:
        click.echo(f"{result.persist_path} already up to date (unchanged)")


@click.command()
@click.argument("targets", nargs=-1, metavar="[node/NAME...]")
@rules_options
@_host_root
@click.option(
    "--loader",
    type=enum_choice(LoaderKind),
    default="auto",
    show_default=True,
    help="the host's modprobe, or finit_module/init_module from Python (no kmod needed); "
    "auto: modprobe when the host has it",
)
@click.option("--no-persist", is_flag=True, help=f"load only; do not write {PERSIST_PATH}")
@click.option(
    "--dry-run", is_flag=True, help="print the plan (modules, order, file) and change nothing"
)
@click.option(
    "--allow",
    multiple=True,
    metavar="NAME",
    help="also load this module (and its dependencies); repeatable",
)
@_output
@kube_and_node_options
@click.pass_context
def fix(
    ctx: click.Context,
    /,
    targets: tuple[str, ...],
    profile: str | None,
    rules: tuple[str, ...],
    backend: Backend | None,
    host_root: Path | None,
    loader: LoaderKind,
    no_persist: bool,
    dry_run: bool,
    allow: tuple[str, ...],
    output: str,
    kubeconfig: Path | None,
    context: str | None,
    **params: Any,
) -> None:
    """Load the kernel modules the rules need, in dependency order, and persist them for boot.

    Only modules the assessment derives from the rules (or --allow names) are loaded; loaded and
    built-in ones are skipped. Every precondition is checked before anything changes; if a load
    fails, what this run loaded is unloaded and no file is written. Exit 0 when the node is ready
    afterwards, 1 when not (or a change failed), 2 on bad input.

    From a workstation: `kubectl meshready fix node/NAME` (several, or -l SELECTOR) does the same
    on that node in a short-lived pod with exactly the capabilities of the agent's loading
    container (SYS_MODULE), the host root read-only at /host and /etc/modules-load.d writable,
    then deletes it.
    A node whose agent reports it ready is left alone (--via pod runs the pod anyway).
    """
    node = node_request_options(params)
    if targets or node["selector"] is not None:
        if host_root is not None:
            raise InputError("--host-root", "cannot be combined with node/NAME or -l")
        extra = [*(("--no-persist",) if no_persist else ()), *(("--dry-run",) if dry_run else ())]
        extra += [f"--allow={name}" for name in allow]
        request = NodeRequest(
            kind="fix",
            targets=targets,
            rule_args=rule_args(profile, rules, backend),
            extra_args=tuple(extra),
            **node,
        )
        ctx.exit(run_on_nodes(request, kubeconfig, context, output, False))
    spec = needs_from_options(profile, rules, backend)
    root = _root(host_root)
    report, facts = assess_live(spec, root)
    plan = plan_fix(report, root, FixOptions(persist=not no_persist, allow=allow), facts.index)
    if dry_run:
        if output == "json":
            emit_json(
                {
                    "schema": FIX_SCHEMA,
                    "dry_run": True,
                    "ready": report.ready,
                    "plan": plan.to_dict(),
                    "result": None,
                    "report": report.to_dict(),
                }
            )
        else:
            _print_plan(plan, dry_run=True)
        ctx.exit(0 if plan.ok else 1)
    if plan.blockers:
        more = f" (and {len(plan.blockers) - 1} more)" if len(plan.blockers) > 1 else ""
        raise ActionError(f"{plan.blockers[0]}{more}; nothing was changed")
    result: FixResult | None = None
    if plan.nothing_to_do:
        after = report
    else:
        if facts.index is None:
            raise ActionError("no module tree (modules.dep) on this host; nothing was changed")
        chosen = choose_loader(loader, root)
        result = apply_fix(plan, facts.index, root, chosen)
        after, _ = assess_live(spec, root)
    if output == "json":
        data: dict[str, Any] = {
            "schema": FIX_SCHEMA,
            "dry_run": False,
            "ready": after.ready,
            "plan": plan.to_dict(),
            "result": result.to_dict() if result else None,
            "report": after.to_dict(),
        }
        emit_json(data)
    else:
        _print_plan(plan, dry_run=False)
        if result is None:
            click.echo("nothing to do: every needed module is loaded or built in, file up to date")
        else:
            _print_result(result)
        _render_after(after)
    ctx.exit(0 if after.ready else 1)


def _render_after(report: Report) -> None:
    click.echo("")
    render_report(report)


@click.command()
@_host_root
@_output
def unfix(host_root: Path | None, output: str) -> None:
    """Remove /etc/modules-load.d/meshready.conf (written by meshready fix).

    Loaded modules stay loaded:

    unloading could break pods that use the rules now; the modules simply stop loading at the
    next boot.
    """
    root = _root(host_root)
    removed = remove_persisted(root)
    if output == "json":
        emit_json({"schema": "meshready.io/unfix/v1", "removed": removed, "path": PERSIST_PATH})
    elif removed:
        click.echo(f"removed {PERSIST_PATH} (loaded modules stay loaded until reboot)")
    else:
        click.echo(f"nothing to remove: {PERSIST_PATH} does not exist")
