"""``meshready check``: is a node's kernel ready for the mesh's interception rules?

``check node/NAME`` (or ``-l SELECTOR``) checks cluster nodes from a workstation
(``cli.node_commands``); without targets it checks the machine it runs on, a host root, or a
node's files offline, and says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from meshready.assess.assess import assess
from meshready.assess.plan import needs_from_options
from meshready.cli.node_commands import (
    NodeRequest,
    kube_and_node_options,
    node_request_options,
    rule_args,
    run_on_nodes,
)
from meshready.cli.options import (
    facts_from_options,
    host_options,
    iptables_version_option,
    rules_options,
)
from meshready.cli.output import emit_json, fix_script, output_option, render_report
from meshready.errors import InputError
from meshready.knowledge.requests import Backend


@click.command()
@click.argument("targets", nargs=-1, metavar="[node/NAME...]")
@rules_options
@iptables_version_option
@host_options
@output_option("table", "json")
@click.option("-v", "--verbose", is_flag=True, help="show every module, dependencies included")
@click.option(
    "--fix-script",
    is_flag=True,
    help="print only the fix (load and persist what is missing) as one POSIX sh script",
)
@kube_and_node_options
@click.pass_context
def check(
    ctx: click.Context,
    /,
    targets: tuple[str, ...],
    profile: str | None,
    rules: tuple[str, ...],
    backend: Backend | None,
    iptables_version: str | None,
    host_root: Path | None,
    lsmod: Path | None,
    kernel_release: str | None,
    modules_dir: Path | None,
    kernel_config: Path | None,
    output: str,
    verbose: bool,
    fix_script: bool,
    kubeconfig: Path | None,
    context: str | None,
    **params: Any,
) -> None:
    """Assess which kernel modules the rules need and whether each is loaded.

    From a workstation: `kubectl meshready check node/NAME` (several, or -l SELECTOR) reads what
    the node's meshready agent published, or, without an agent, runs a short-lived pod on the node
    (the meshready image, the host root read-only at /host, no capabilities) and deletes it.

    Without node/NAME: this machine, a host root mounted in a pod (--host-root), or offline from a
    node's lsmod output and kernel release (--lsmod, --kernel-release, optionally --modules-dir
    and --kernel-config).

    Exit 0 when ready (every node), 1 when not, 2 on bad input.
    """
    node = node_request_options(params)
    local = _LocalKernel(host_root, lsmod, kernel_release, modules_dir, kernel_config)
    if targets or node["selector"] is not None:
        given = local.options_given()
        if given or fix_script:
            raise InputError(
                given[0] if given else "--fix-script", "cannot be combined with node/NAME or -l"
            )
        request = NodeRequest(
            kind="check",
            targets=targets,
            rule_args=rule_args(profile, rules, backend),
            **node,
        )
        ctx.exit(run_on_nodes(request, kubeconfig, context, output, verbose))
    _check_local(ctx, profile, rules, backend, local, output, verbose, fix_script, iptables_version)


@dataclass(frozen=True)
class _LocalKernel:
    """Where a check without node/NAME reads the kernel: this machine, a host root, or a node's
    files offline (the host options, as given)."""

    host_root: Path | None
    lsmod: Path | None
    kernel_release: str | None
    modules_dir: Path | None
    kernel_config: Path | None

    def options_given(self) -> list[str]:
        """The host options given, by name."""
        values = {
            "--host-root": self.host_root,
            "--lsmod": self.lsmod,
            "--kernel-release": self.kernel_release,
            "--modules-dir": self.modules_dir,
            "--kernel-config": self.kernel_config,
        }
        return [name for name, value in values.items() if value is not None]


def _check_local(
    ctx: click.Context,
    profile: str | None,
    rules: tuple[str, ...],
    backend: Backend | None,
    local: _LocalKernel,
    output: str,
    verbose: bool,
    script: bool,
    iptables_version: str | None = None,
) -> None:
    from meshready.cli.machine import describe_machine
    from meshready.cli.next_steps import load_commands, next_steps, print_steps

    spec = needs_from_options(profile, rules, backend, iptables_version)
    facts = facts_from_options(
        local.host_root, local.lsmod, local.kernel_release, local.modules_dir, local.kernel_config
    )
    report = assess(spec.needs, facts, spec.backend, spec.profile, spec.rules, spec.iptables)
    offline = facts.source == "offline"
    label = str(local.lsmod) if local.lsmod else local.kernel_release or "?"
    machine = describe_machine(local.host_root, label if offline else None)
    if script:
        header = [f"load and persist what {machine.title()} is missing; run there as root"]
        click.echo(fix_script(load_commands(report), header), nl=False)
        ctx.exit(0 if report.ready else 1)
    if output == "json":
        emit_json({**report.to_dict(), "machine": machine.to_dict()})
        ctx.exit(0 if report.ready else 1)
    if machine.kubernetes_node is False:
        click.echo(
            f"meshready: warning: checked {machine.title()}, which is not a Kubernetes node "
            f"({machine.evidence}); to check a cluster's node from here: kubectl meshready "
            "check node/NAME",
            err=True,
        )
    render_report(report, verbose, machine=machine.title())
    print_steps(next_steps(report, machine.how))
    ctx.exit(0 if report.ready else 1)
