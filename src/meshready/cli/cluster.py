"""``meshready install`` and ``meshready uninstall``: the agent in a cluster (docs/agent.md).

As a kubectl plugin (``kubectl meshready install``) kubectl passes none of its global flags, so
``--kubeconfig``, ``--context`` and ``-n/--namespace`` are parsed here, with kubectl's meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from meshready.cli.kube import connect_with_config, kube_options, talking_to
from meshready.cli.render_manifests import manifest_options, options_from
from meshready.cluster.names import DEFAULT_NAMESPACE, DEFAULT_TAINT_KEY, PREFIX

F = TypeVar("F", bound=Callable[..., Any])

_DRY_RUN = click.Choice(["none", "server", "client"])


def dry_run_option(func: F) -> F:
    return click.option(
        "--dry-run",
        type=_DRY_RUN,
        is_flag=False,
        flag_value="server",
        default="none",
        show_default=True,
        help="server: the API server validates everything and changes nothing; "
        "client: only print what would be sent",
    )(func)


@click.command()
@manifest_options
@kube_options
@dry_run_option
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="follow the rollout until every agent runs the new version and has published its "
    "node's state (ready or not: the summary lists nodes that are not)",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    metavar="S",
    help="how long --wait waits",
)
@click.option(
    "--force-conflicts",
    is_flag=True,
    help="take over fields another field manager owns (server-side apply force)",
)
def install(
    kubeconfig: Path | None,
    context: str | None,
    dry_run: str,
    wait: bool,
    timeout: float,
    force_conflicts: bool,
    **params: Any,
) -> None:
    """Install or upgrade the agent: server-side apply (field manager meshready), then follow the
    rollout. Exit 0 when every node's agent is ready, 1 when the rollout did not finish in time.
    """
    from meshready.cluster.install import install as do_install
    from meshready.cluster.install import node_summary, wait_rollout
    from meshready.cluster.manifests import render_objects, to_yaml

    options = options_from(params)
    if dry_run == "client":
        click.echo(to_yaml(render_objects(options)), nl=False)
        return
    client, connection = connect_with_config(kubeconfig, context)
    with client, talking_to(connection, "installing"):
        click.echo(
            f"installing into {connection.server} ({connection.source}), namespace {options.namespace}"
        )
        do_install(
            client,
            options,
            dry_run=dry_run == "server",
            force_conflicts=force_conflicts,
            echo=click.echo,
        )
        if dry_run == "server" or not wait:
            return
        rollout = wait_rollout(client, options.namespace, timeout=timeout, echo=click.echo)
        states = node_summary(client, options.taint_key)
        ready = sum(1 for s in states if s.ready)
        not_ready = [s for s in states if s.published and s.ready is not True]
        click.echo(f"done: {rollout.desired} agent(s); {ready} node(s) ready for interception")
        for state in not_ready[:20]:
            reason = state.condition.reason if state.condition else "?"
            click.echo(f"  not ready: {state.name}: {reason}")


@click.command()
@kube_options
@click.option(
    "-n",
    "--namespace",
    default=DEFAULT_NAMESPACE,
    show_default=True,
    metavar="NS",
    help="namespace the agent was installed in",
)
@click.option(
    "--taint-key",
    "taint_keys",
    multiple=True,
    metavar="KEY",
    help="also remove this startup taint from nodes (default: the installed agent's and "
    f"every {PREFIX} taint)",
)
@dry_run_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=120.0,
    show_default=True,
    metavar="S",
    help="how long to wait for agent pods to stop before cleaning nodes",
)
def uninstall(
    kubeconfig: Path | None,
    context: str | None,
    namespace: str,
    taint_keys: tuple[str, ...],
    dry_run: str,
    timeout: float,
) -> None:
    """Remove the agent and everything it put on nodes: the DaemonSet, the meshready.io/ labels
    and annotation, the MeshInterceptionReady condition, the startup taint, the RBAC objects, the
    ServiceAccount and the namespace (if meshready created it).

    Remove the startup taint from your node pool configuration first, or new nodes will keep
    arriving with it and nothing will remove it.
    """
    from meshready.cluster.install import uninstall as do_uninstall

    if dry_run == "client":
        raise click.UsageError("uninstall supports --dry-run=server only")
    client, connection = connect_with_config(kubeconfig, context)
    with client, talking_to(connection, "uninstalling"):
        click.echo(
            f"uninstalling from {connection.server} ({connection.source}), namespace {namespace}"
        )
        do_uninstall(
            client,
            namespace,
            taint_keys=(*taint_keys, DEFAULT_TAINT_KEY),
            dry_run=dry_run == "server",
            pods_timeout=timeout,
            echo=click.echo,
        )
