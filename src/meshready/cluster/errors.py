"""Errors from the Kubernetes API, turned into one line a person can act on."""

from __future__ import annotations

import httpx2
from lightkube import ApiError, ConfigError

from meshready.errors import MeshreadyError


class ClusterError(MeshreadyError):
    """The cluster could not be reached or refused a request. Exit code 1."""

    exit_code = 1


def api_status(exc: BaseException) -> int | None:
    """The HTTP status of an API error; None for transport errors and anything else."""
    if isinstance(exc, ApiError):
        code = exc.status.code if exc.status is not None else None
        if code is None and exc.response is not None:
            code = exc.response.status_code
        return code
    return None


def is_api_failure(exc: BaseException) -> bool:
    """An error from talking to the API (refused, timed out, or an error status)."""
    return isinstance(exc, ApiError | httpx2.HTTPError | ConfigError | OSError)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the API is unreachable, overloaded, or a write raced another writer."""
    status = api_status(exc)
    if status is None:
        return isinstance(exc, httpx2.TransportError | OSError)
    return status in (409, 429) or status >= 500


def describe(exc: BaseException) -> str:
    """One line for logs and messages."""
    if isinstance(exc, ApiError):
        status = exc.status
        code = api_status(exc)
        reason = (status.reason if status is not None else None) or ""
        message = (status.message if status is not None else None) or str(exc)
        return " ".join(f"{code} {reason}: {message}".split())
    if isinstance(exc, httpx2.TransportError):
        return f"cannot reach the API server ({type(exc).__name__}: {exc})"
    if isinstance(exc, ConfigError):
        return f"kubeconfig: {exc}"
    return f"{type(exc).__name__}: {exc}"
