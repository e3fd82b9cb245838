"""Errors from the Kubernetes API, turned into one line a person can act on."""

from __future__ import annotations

import email.utils
import time

import httpx2
from lightkube import ApiError, ConfigError

from meshready.errors import MeshreadyError


class ClusterError(MeshreadyError):
    """The cluster could not be reached or refused a request. Exit code 1."""

    exit_code = 1


class WriteRace(MeshreadyError):
    """A guarded write kept losing to another writer (its JSON patch `test` failed, 422, each
    time): not the request's fault, so worth retrying later, unlike another 422."""

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
    return isinstance(exc, ApiError | httpx2.HTTPError | ConfigError | OSError | WriteRace)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the API is unreachable, overloaded, or a write raced another writer."""
    status = api_status(exc)
    if status is None:
        return isinstance(exc, httpx2.TransportError | OSError)
    return status in (409, 429) or status >= 500


def is_permanent(exc: BaseException) -> bool:
    """An answer from the API that repeating the same request cannot change (400, 401, 403,
    404, 405, 410, 413, 415, 422, ...): retrying it would only load the server."""
    status = api_status(exc)
    if status is None and isinstance(exc, httpx2.HTTPStatusError):
        status = exc.response.status_code
    return status is not None and 400 <= status < 500 and status not in (408, 409, 425, 429)


RETRY_AFTER_MAX = (
    600.0  # a server asking for more is capped: the agent must come back at some point
)


def retry_after(exc: BaseException, now: float | None = None) -> float | None:
    """Seconds the server asked to wait (``Retry-After``: seconds or an HTTP date), or None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, httpx2.Response):
        return None
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, min(seconds, RETRY_AFTER_MAX))


def describe(exc: BaseException) -> str:
    """One line for logs and messages."""
    if isinstance(exc, ApiError):
        status = exc.status
        code = api_status(exc)
        reason = (status.reason if status is not None else None) or ""
        message = (status.message if status is not None else None) or str(exc)
        return " ".join(f"{code} {reason}: {message}".split())
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"{exc.response.status_code} {exc.response.reason_phrase} (not a Kubernetes Status)"
    if isinstance(exc, httpx2.TransportError):
        return f"cannot reach the API server ({type(exc).__name__}: {exc})"
    if isinstance(exc, ConfigError):
        return f"kubeconfig: {exc}"
    return f"{type(exc).__name__}: {exc}"
