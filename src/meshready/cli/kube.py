"""Options every cluster command takes itself (kubectl passes no global flags to plugins)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def kube_options(func: F) -> F:
    for option in reversed(
        [
            click.option(
                "--kubeconfig",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                metavar="FILE",
                help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)",
            ),
            click.option("--context", metavar="NAME", help="kubeconfig context to use"),
        ]
    ):
        func = option(func)
    return func


def connect(kubeconfig: Path | None, context: str | None, timeout: float = 30.0) -> Any:
    """A lightkube Client as kubectl would configure it."""
    return connect_with_config(kubeconfig, context, timeout)[0]


def connect_with_config(
    kubeconfig: Path | None, context: str | None, timeout: float = 30.0
) -> tuple[Any, Any]:
    """(client, resolved Connection); the cluster extras are imported only here."""
    try:
        from meshready.cluster.connect import make_client, resolve
    except ModuleNotFoundError as exc:
        from meshready.errors import MeshreadyError

        raise MeshreadyError(
            f"cluster commands need the cluster extras ({exc.name} is missing): "
            "pip install 'meshready[cluster]'"
        ) from None
    connection = resolve(kubeconfig, context)
    return make_client(connection, timeout=timeout), connection
