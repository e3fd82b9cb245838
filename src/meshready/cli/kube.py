"""Options every cluster command takes itself (kubectl passes no global flags to plugins), and
turning API failures into one line that names the server and the context."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from meshready.errors import InputError, MeshreadyError

F = TypeVar("F", bound=Callable[..., Any])

# kubectl's own default is 0 (wait for ever); a plugin that hangs silently is worse than one that
# says which server did not answer. Per request, so a long paginated list is not cut short.
DEFAULT_REQUEST_TIMEOUT = "15s"
_META_KEY = "meshready.request_timeout"
_DURATION = re.compile(r"^(?P<n>\d+(\.\d+)?)(?P<unit>ms|s|m|h)?$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str, source: str = "--request-timeout") -> float | None:
    """kubectl's --request-timeout: ``0`` (no timeout), ``N`` seconds, or ``Nms|Ns|Nm|Nh``."""
    m = _DURATION.match(text.strip())
    if not m:
        raise InputError(source, f"expected a duration like 30s, 2m or 0 (none), got {text!r}")
    seconds = float(m["n"]) * _UNIT[m["unit"]]
    return None if seconds == 0 else seconds


def _store_timeout(ctx: click.Context, _param: click.Parameter, value: str) -> None:
    ctx.meta[_META_KEY] = parse_duration(value)


def request_timeout() -> float | None:
    ctx = click.get_current_context(silent=True)
    if ctx is None or _META_KEY not in ctx.meta:
        return parse_duration(DEFAULT_REQUEST_TIMEOUT)
    value: float | None = ctx.meta[_META_KEY]
    return value


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
            click.option(
                "--request-timeout",
                default=DEFAULT_REQUEST_TIMEOUT,
                show_default=True,
                metavar="DURATION",
                expose_value=False,
                is_eager=True,
                callback=_store_timeout,
                help="give up on a single API request after this long (30s, 2m; 0: never)",
            ),
        ]
    ):
        func = option(func)
    return func


def connect(kubeconfig: Path | None, context: str | None) -> Any:
    """A lightkube Client as kubectl would configure it."""
    return connect_with_config(kubeconfig, context)[0]


def connect_with_config(kubeconfig: Path | None, context: str | None) -> tuple[Any, Any]:
    """(client, resolved Connection), with --request-timeout."""
    from meshready.cluster.connect import make_client, resolve

    connection = resolve(kubeconfig, context)
    return make_client(connection, timeout=request_timeout()), connection


def where(connection: Any) -> str:
    return f"{connection.server} (context {connection.context}, {connection.source})"


@contextmanager
def talking_to(connection: Any, doing: str) -> Iterator[None]:
    """API failures inside become ClusterError: DOING at SERVER (context C, kubeconfig): why."""
    from meshready.cluster.errors import API_FAILURES, ClusterError, api_error

    try:
        yield
    except ClusterError as exc:
        if connection.server in str(exc) and not exc.bare:
            raise  # an inner talking_to said where already
        raise exc.within(f"{doing} at {where(connection)}") from exc
    except MeshreadyError:
        raise
    except API_FAILURES as exc:
        raise api_error(exc, f"{doing} at {where(connection)}") from exc
