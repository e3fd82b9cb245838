"""Errors from the Kubernetes API: typed once, by ``api_error``, and one line a person can act on.

Every failure to talk to the API (lightkube's ``ApiError``, an httpx2 error, a ``ConfigError``,
an ``OSError``) becomes one of the ClusterError types below in one place, ``api_error``, with the
original chained as its cause (``raise ... from exc``), so callers catch what they mean
(``except NotFound``) instead of comparing HTTP statuses, and MESHREADY_DEBUG=1 still shows where
it came from. Statuses: https://kubernetes.io/docs/reference/using-api/api-concepts/ (errors).
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
from lightkube import ApiError, ConfigError

from meshready.errors import MeshreadyError


class ClusterError(MeshreadyError):
    """The cluster could not be reached or refused a request. Exit code 1."""

    exit_code = 1
    # The message is the API's answer alone (api_error without WHAT): it names neither the object
    # nor the server, so whoever catches it adds them (cli.kube.talking_to, ``within``).
    bare: bool = False
    response: httpx2.Response | None = None  # the API's answer, when there was one

    def within(self, what: str) -> ClusterError:
        """The same failure (same type), its message prefixed with WHAT."""
        error = type(self)(f"{what}: {self}")
        error.response = self.response
        return error


class Refused(ClusterError):
    """An answer that repeating the same request cannot change (400, 401, 403, 404, 405, 410,
    413, 415, 422, ...): retrying it would only load the server."""


class NotFound(Refused):
    """404 with a Kubernetes Status: the object does not exist."""


class NotServed(Refused):
    """404 without a Kubernetes Status: the URL, that is the kind itself, is not served (an
    older cluster without the admission policy API, for example)."""


class Forbidden(Refused):
    """401 or 403 with a Kubernetes Status: the credentials, RBAC or an admission policy say no."""


class Invalid(Refused):
    """422 with a Kubernetes Status: the request is invalid, or a JSON patch's ``test`` failed."""


class Conflict(ClusterError):
    """409 with a Kubernetes Status: another writer got there first (a stale resourceVersion, a
    server-side apply conflict); not permanent."""


class Transient(ClusterError):
    """Worth retrying: the API is unreachable or timed out, overloaded (429) or failing (5xx)."""


class WriteRace(Transient):
    """A guarded write kept losing to another writer (its JSON patch `test` failed, 422, each
    time): not the request's fault, so worth retrying later, unlike another 422."""


# What talking to the API raises besides a ClusterError: lightkube's ApiError is an httpx2
# HTTPStatusError; ConfigError comes from the kubeconfig and credential plugins.
API_FAILURES = (httpx2.HTTPError, ConfigError, OSError)

_RETRYABLE_STATUSES = (408, 425, 429)


def _status(exc: BaseException) -> int | None:
    """The HTTP status of an API error; None for transport errors and anything else."""
    if isinstance(exc, ApiError):
        code = exc.status.code if exc.status is not None else None
        if code is None and exc.response is not None:
            code = exc.response.status_code
        return code
    if isinstance(exc, httpx2.HTTPStatusError):
        return exc.response.status_code
    return None


def _kind(exc: BaseException) -> type[ClusterError]:
    status = _status(exc)
    if status is None:
        is_transport = isinstance(exc, httpx2.TransportError | OSError)
        return Transient if is_transport else ClusterError
    if status in _RETRYABLE_STATUSES or status >= 500:
        return Transient
    if isinstance(exc, ApiError):
        typed = {404: NotFound, 409: Conflict, 401: Forbidden, 403: Forbidden, 422: Invalid}
        if status in typed:
            return typed[status]
    elif status == 404:
        return NotServed
    elif status == 409:
        return ClusterError
    return Refused if 400 <= status < 500 else ClusterError


def api_error(
    exc: BaseException, what: str | None = None, *, no_status: str | None = None
) -> ClusterError:
    """The ClusterError for EXC, a failure talking to the API; raise it ``from exc``.

    The message is ``WHAT: describe(EXC)``, or ``describe(EXC)`` alone without WHAT (a bare
    error). NO_STATUS, when given, replaces WHAT for failures that carry no Kubernetes Status
    (unreachable, TLS, credentials, a proxy's page): "" for no prefix. A ClusterError comes back
    as it is, or, when bare, with WHAT added.
    """
    if isinstance(exc, ClusterError):
        return exc.within(what) if what is not None and exc.bare else exc
    label = what if no_status is None or isinstance(exc, ApiError) else no_status
    detail = describe(exc)
    error = _kind(exc)(f"{label}: {detail}" if label else detail)
    error.bare = not label
    response = getattr(exc, "response", None)
    error.response = response if isinstance(response, httpx2.Response) else None
    return error


@contextmanager
def api_errors(what: str | None = None, *, no_status: str | None = None) -> Iterator[None]:
    """Inside, a failure talking to the API is raised as ``api_error(exc, WHAT, no_status=...)``,
    chained to the original."""
    try:
        yield
    except (ClusterError, httpx2.HTTPError, ConfigError, OSError) as exc:
        error = api_error(exc, what, no_status=no_status)
        if error is exc:
            raise
        raise error from exc


def is_api_failure(exc: BaseException) -> bool:
    """An error from talking to the API (refused, timed out, or an error status)."""
    return isinstance(exc, (ClusterError, *API_FAILURES))


def is_permanent(exc: BaseException) -> bool:
    """An answer from the API that repeating the same request cannot change (``Refused``)."""
    return is_api_failure(exc) and isinstance(api_error(exc), Refused)


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
    """One line for logs and messages (a bare ClusterError: the line it was made from)."""
    if isinstance(exc, ClusterError) and exc.bare:
        return str(exc)
    if isinstance(exc, ApiError):
        status = exc.status
        code = _status(exc)
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
