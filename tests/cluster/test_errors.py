"""API failures typed once (cluster.errors.api_error): the type a caller catches, the one line a
person reads (the same as before typing), and the original kept as the cause."""

from __future__ import annotations

from typing import Any, cast

import httpx2
import pytest
from lightkube import ApiError, Client, ConfigError
from lightkube.resources.core_v1 import Node

from meshready.cluster.errors import (
    ClusterError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    NotServed,
    Refused,
    Transient,
    WriteRace,
    api_error,
    api_errors,
    describe,
    is_api_failure,
    is_permanent,
    retry_after,
)
from meshready.cluster.install import clean_node
from meshready.cluster.node import TAINT_ATTEMPTS, remove_taint

_REQUEST = httpx2.Request("GET", "https://203.0.113.1:6443/api/v1/nodes/n1")


def status_error(
    code: int, reason: str = "Reason", headers: dict[str, str] | None = None
) -> ApiError:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": f"said {code}",
            "reason": reason, "code": code}  # fmt: skip
    response = httpx2.Response(code, json=body, request=_REQUEST, headers=headers)
    return ApiError(request=_REQUEST, response=response)


def page_error(code: int) -> httpx2.HTTPStatusError:
    """An error answer that is not a Kubernetes Status (a proxy's page, an unserved URL)."""
    response = httpx2.Response(code, text="nope", request=_REQUEST)
    return httpx2.HTTPStatusError("nope", request=_REQUEST, response=response)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (status_error(404, "NotFound"), NotFound),
        (status_error(409, "Conflict"), Conflict),
        (status_error(401, "Unauthorized"), Forbidden),
        (status_error(403, "Forbidden"), Forbidden),
        (status_error(422, "Invalid"), Invalid),
        (status_error(400, "BadRequest"), Refused),
        (status_error(410, "Expired"), Refused),
        (status_error(408, "Timeout"), Transient),
        (status_error(429, "TooManyRequests"), Transient),
        (status_error(500, "InternalError"), Transient),
        (status_error(503, "ServiceUnavailable"), Transient),
        (page_error(404), NotServed),
        (page_error(409), ClusterError),
        (page_error(403), Refused),
        (page_error(502), Transient),
        (httpx2.ConnectError("connection refused", request=_REQUEST), Transient),
        (httpx2.ReadTimeout("timed out", request=_REQUEST), Transient),
        (ConnectionResetError(104, "reset"), Transient),
        (ConfigError("no user"), ClusterError),
    ],
)
def test_one_type_per_failure_with_the_old_line(exc: Exception, kind: type[ClusterError]) -> None:
    error = api_error(exc)
    assert type(error) is kind
    assert error.bare and str(error) == describe(exc) == describe(error)
    labelled = api_error(exc, "node/n1")
    assert type(labelled) is kind and not labelled.bare
    assert str(labelled) == f"node/n1: {describe(exc)}"
    assert error.exit_code == 1


def test_permanent_is_what_retrying_cannot_change() -> None:
    permanent = [status_error(c) for c in (400, 401, 403, 404, 405, 410, 413, 415, 422)]
    retried = [status_error(c) for c in (408, 409, 425, 429, 500, 503)]
    assert all(is_permanent(e) and is_permanent(api_error(e)) for e in permanent)
    assert not any(is_permanent(e) or is_permanent(api_error(e)) for e in retried)
    assert is_permanent(page_error(403)) and not is_permanent(page_error(503))
    assert not is_permanent(WriteRace("raced")) and is_api_failure(WriteRace("raced"))
    assert not is_permanent(ValueError("a bug")) and not is_api_failure(ValueError("a bug"))


def test_messages_for_answers_and_for_silence() -> None:
    answered = api_error(status_error(500), "namespace/x", no_status="cannot read the cluster")
    silent = api_error(
        httpx2.ConnectError("refused"), "namespace/x", no_status="cannot read the cluster"
    )
    assert str(answered).startswith("namespace/x: 500 ")
    assert (
        str(silent)
        == "cannot read the cluster: cannot reach the API server (ConnectError: refused)"
    )
    bare = api_error(httpx2.ConnectError("refused"), "namespace/x", no_status="")
    assert bare.bare and str(bare) == "cannot reach the API server (ConnectError: refused)"


def test_api_errors_chains_the_cause_and_leaves_bugs_alone() -> None:
    raw = status_error(404, "NotFound")
    with pytest.raises(NotFound) as caught, api_errors("node/n1"):
        raise raw
    assert caught.value.__cause__ is raw
    assert str(caught.value) == "node/n1: 404 NotFound: said 404"
    with pytest.raises(KeyError), api_errors("node/n1"):
        raise KeyError("a bug is not an API failure")
    inner = api_error(status_error(403, "Forbidden"))  # bare: relabelled by the outer block
    with pytest.raises(Forbidden) as outer, api_errors("node/n1"):
        raise inner
    assert str(outer.value) == "node/n1: 403 Forbidden: said 403" and outer.value.__cause__ is inner
    placed = ClusterError("rollout not finished")  # not bare: passes as it is
    with pytest.raises(ClusterError) as same, api_errors("node/n1"):
        raise placed
    assert same.value is placed


def test_retry_after_survives_typing() -> None:
    raw = status_error(429, "TooManyRequests", headers={"Retry-After": "7"})
    assert retry_after(raw) == retry_after(api_error(raw)) == 7.0
    assert retry_after(api_error(raw).within("publishing")) == 7.0
    assert retry_after(api_error(httpx2.ConnectError("refused"))) is None


def test_describe_of_other_errors_is_unchanged() -> None:
    assert describe(WriteRace("taints raced")) == "WriteRace: taints raced"
    assert describe(ValueError("x")) == "ValueError: x"


# ---- the one guarded taint removal (agent and uninstall)


def _node(*taints: dict[str, str]) -> Node:
    node = Node.from_dict({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                           "spec": {"taints": list(taints)}})  # fmt: skip
    assert isinstance(node, Node)
    return node


MINE = {"key": "meshready.io/not-ready", "effect": "NoSchedule"}
OTHER = {"key": "example.com/other", "effect": "NoExecute"}


class FakeClient:
    """Answers GETs with NODE and each patch with the next of PATCHES (an exception or None)."""

    def __init__(self, node: Node, patches: list[Exception | None]) -> None:
        self.node = node
        self.patches = patches
        self.gets = 0
        self.sent: list[dict[str, Any]] = []

    def get(self, _kind: Any, _name: str) -> Node:
        self.gets += 1
        return self.node

    def patch(self, _kind: Any, _name: str, patch: Any, **kwargs: Any) -> None:
        self.sent.append({"patch": patch, **kwargs})
        outcome = self.patches.pop(0) if self.patches else None
        if outcome is not None:
            raise outcome


def test_a_raced_taint_removal_reads_again_and_retries() -> None:
    client = FakeClient(_node(OTHER, MINE), [status_error(422, "Invalid"), status_error(409)])
    assert remove_taint(cast(Client, client), "n1", MINE["key"], MINE["effect"]) is True
    assert client.gets == 3 and len(client.sent) == 3
    assert client.sent[-1]["patch"][1]["value"] == [OTHER]


def test_a_taint_removal_that_always_loses_says_so() -> None:
    races: list[Exception | None] = [status_error(422, "Invalid")] * TAINT_ATTEMPTS
    client = FakeClient(_node(MINE), races)
    with pytest.raises(WriteRace, match=f"every one of {TAINT_ATTEMPTS} attempts") as caught:
        remove_taint(cast(Client, client), "n1", MINE["key"])
    assert isinstance(caught.value.__cause__, Invalid)
    assert isinstance(caught.value.__cause__.__cause__, ApiError)


def test_other_failures_are_not_retried() -> None:
    client = FakeClient(_node(MINE), [status_error(403, "Forbidden")])
    with pytest.raises(Forbidden):
        remove_taint(cast(Client, client), "n1", MINE["key"])
    assert len(client.sent) == 1


def test_uninstall_removes_taints_with_the_same_guarded_retry() -> None:
    node = _node(OTHER, MINE)
    client = FakeClient(node, [status_error(422, "Invalid")])
    cleanup = clean_node(cast(Client, client), node, [MINE["key"]])
    assert cleanup.taints == ["meshready.io/not-ready:NoSchedule"]
    assert len(client.sent) == 2 and all(s["dry_run"] is False for s in client.sent)
    dry_client = FakeClient(node, [])
    clean_node(cast(Client, dry_client), node, [MINE["key"]], dry_run=True)
    assert dry_client.gets == 0 and dry_client.sent[0]["dry_run"] is True


def test_the_front_end_says_where_once_typed_or_not() -> None:
    from types import SimpleNamespace

    from meshready.cli.kube import talking_to

    connection = SimpleNamespace(server="https://203.0.113.1:6443", context="c", source="/kc")
    where = "reading nodes at https://203.0.113.1:6443 (context c, /kc)"
    # a transport error that names the server is still placed, typed (bare) or raw
    raw = httpx2.ConnectError("cannot connect to https://203.0.113.1:6443")
    lines = []
    for exc in (raw, api_error(raw), status_error(500), api_error(status_error(500))):
        with pytest.raises(ClusterError) as caught, talking_to(connection, "reading nodes"):
            raise exc
        assert caught.value.__cause__ is exc
        lines.append(str(caught.value))
    assert lines[0] == lines[1] == f"{where}: {describe(raw)}"
    assert lines[2] == lines[3] == f"{where}: 500 Reason: said 500"
    with pytest.raises(Transient) as typed, talking_to(connection, "reading nodes"):
        raise api_error(status_error(503))
    assert str(typed.value).startswith(where)
    placed = ClusterError(f"{where}: already said")  # an inner talking_to's: left alone
    with pytest.raises(ClusterError) as same, talking_to(connection, "listing pods"):
        raise placed
    assert same.value is placed
