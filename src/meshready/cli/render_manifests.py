"""``meshready render manifests``: the objects ``install`` applies, as multi-document YAML.

With ``--output-dir DIR`` it writes them as a kustomize base instead (one file per object and a
kustomization.yaml): ``deploy/`` in the repository is exactly that, with the defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from meshready.actions.persist import PERSIST_PATH
from meshready.cli.choices import enum_choice
from meshready.cli.options import image_options
from meshready.knowledge.profiles import PROFILES
from meshready.knowledge.requests import Backend

F = TypeVar("F", bound=Callable[..., Any])


def manifest_options(func: F) -> F:
    """The options that shape the objects (shared by render manifests and install)."""
    from meshready.cluster.manifests import PodProbeMode
    from meshready.cluster.names import DEFAULT_NAMESPACE, DEFAULT_TAINT_KEY

    for option in reversed(
        [
            click.option(
                "-n",
                "--namespace",
                default=DEFAULT_NAMESPACE,
                show_default=True,
                metavar="NS",
                help="namespace of the agent (created unless it is a system namespace)",
            ),
            image_options("agent image"),
            click.option(
                "--profile",
                type=click.Choice(sorted(PROFILES)),
                help="mesh mode the agent checks for (default: the agent's, istio-sidecar)",
            ),
            click.option("--backend", type=enum_choice(Backend)),
            click.option(
                "--persist/--no-persist",
                default=True,
                show_default=True,
                help=f"let the agent write {PERSIST_PATH} on nodes",
            ),
            click.option(
                "--taint-key",
                default=DEFAULT_TAINT_KEY,
                show_default=True,
                metavar="KEY[:EFFECT]",
                help="the startup taint the agent removes once a node is ready",
            ),
            click.option("--no-taint", is_flag=True, help="no startup taint handling"),
            click.option(
                "--probe-mode",
                type=enum_choice(PodProbeMode),
                default=PodProbeMode.INPLACE.value,
                show_default=True,
                help="redirect probe in the agent pod's network namespace (needs NET_ADMIN, NET_RAW)",
            ),
            click.option(
                "--node-selector",
                "node_selector",
                multiple=True,
                metavar="KEY=VALUE",
                help="run the agent only on these nodes (repeatable; kubernetes.io/os=linux always)",
            ),
            click.option(
                "--toleration",
                "tolerations",
                multiple=True,
                metavar="KEY[=VALUE][:EFFECT]",
                help="tolerate only these taints (repeatable; default: every taint)",
            ),
            click.option(
                "--interval",
                type=click.IntRange(min=10),
                default=300,
                show_default=True,
                metavar="S",
                help="the agent's re-check interval",
            ),
            click.option(
                "--admission-policy",
                is_flag=True,
                help="add the ValidatingAdmissionPolicy that keeps each agent to its own Node "
                "(Kubernetes 1.30+)",
            ),
        ]
    ):
        func = option(func)
    return func


def options_from(params: dict[str, Any]) -> Any:
    """ManifestOptions from the values of manifest_options (validated)."""
    from meshready.cluster.manifests import (
        TOLERATE_ALL,
        ManifestOptions,
        parse_selector,
        parse_toleration,
    )
    from meshready.cluster.names import DEFAULT_TAINT_EFFECT

    taint_key: str | None = params["taint_key"]
    effect = DEFAULT_TAINT_EFFECT
    if params["no_taint"]:
        taint_key = None
    elif taint_key and ":" in taint_key:
        taint_key, effect = taint_key.rsplit(":", 1)
    tolerations = [parse_toleration(t) for t in params["tolerations"]] or [dict(TOLERATE_ALL)]
    return ManifestOptions(
        namespace=params["namespace"],
        image=params["image"],
        image_pull_policy=params["image_pull_policy"],
        profile=params["profile"],
        backend=params["backend"],
        persist=params["persist"],
        taint_key=taint_key,
        taint_effect=effect,
        probe_mode=params["probe_mode"],
        node_selector=dict(parse_selector(s) for s in params["node_selector"]),
        tolerations=tuple(tolerations),
        interval_seconds=params["interval"],
        admission_policy=bool(params.get("admission_policy")),
    ).validated()


@click.command()
@manifest_options
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="write a kustomize base into DIR instead of printing",
)
def manifests(output_dir: Path | None, **params: Any) -> None:
    """Print the Kubernetes objects of the agent: Namespace, ServiceAccount, ClusterRole,
    ClusterRoleBinding and DaemonSet, as multi-document YAML (what `meshready install` applies).
    """
    from meshready.cluster.manifests import render_objects, to_yaml, write_kustomize

    options = options_from(params)
    if output_dir is not None:
        for path in write_kustomize(output_dir, options):
            click.echo(f"wrote {path}", err=True)
        return
    click.echo(to_yaml(render_objects(options)), nl=False)
