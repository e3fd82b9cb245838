"""pytest fixtures for tests against a real kube-apiserver (see cluster.py).

`tests/apiserver/conftest.py` re-exports them. Other test directories get them with
`pytest_plugins = ["tests.apiserver.fixtures"]` in the top-level `tests/conftest.py`, or by
importing them into their own conftest.py. However often they are registered, the session has one
cluster (kept in `config.stash`).

Every test that uses `cluster` (directly or through another fixture) gets the `apiserver` marker.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client

from .cluster import (
    BUILD_HINT,
    FakeKubelet,
    HarnessError,
    LocalCluster,
    MissingArtifactError,
)

__all__ = [
    "admin_client",
    "admin_kubeconfig",
    "cluster",
    "kubelet",
    "namespace",
    "pytest_collection_modifyitems",
]

_CLUSTER = pytest.StashKey[LocalCluster]()
_FAILURE = pytest.StashKey[str]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "cluster" in fixtures and item.get_closest_marker("apiserver") is None:
            item.add_marker(pytest.mark.apiserver)


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> LocalCluster:
    """One real etcd + kube-apiserver for the whole session; fails (never skips) without it."""
    stash = request.config.stash
    if _FAILURE in stash:
        pytest.fail(stash[_FAILURE], pytrace=False)
    if _CLUSTER in stash:
        return stash[_CLUSTER]
    try:
        started = LocalCluster()
        request.config.add_cleanup(started.close)
        started.start()
    except MissingArtifactError as err:
        stash[_FAILURE] = f"apiserver tests need the cached kube-apiserver build: {err}"
    except HarnessError as err:
        stash[_FAILURE] = f"the test kube-apiserver did not start ({BUILD_HINT}?): {err}"
    if _FAILURE in stash:  # failed outside the except blocks: no chained traceback noise
        pytest.fail(stash[_FAILURE], pytrace=False)
    stash[_CLUSTER] = started
    return started


@pytest.fixture(scope="session")
def admin_kubeconfig(cluster: LocalCluster) -> Path:
    """Path of a kubeconfig for the admin (system:masters) of the session cluster."""
    return cluster.admin_kubeconfig


@pytest.fixture
def admin_client(cluster: LocalCluster) -> Iterator[Client]:
    """A lightkube Client as the admin; closed after the test."""
    cluster.start_apiserver()  # a no-op unless an earlier test left it stopped
    client = cluster.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def namespace(cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace named after the test; deleted afterwards (stays Terminating: no
    controller-manager, so its objects are not removed; never reuse the name)."""
    cluster.start_apiserver()
    prefix = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:30]
    name = cluster.create_namespace(prefix)
    yield name
    with contextlib.suppress(Exception):  # best effort: the apiserver may be down after a failure
        cluster.api.delete(f"/api/v1/namespaces/{name}")


@pytest.fixture
def kubelet() -> Iterator[FakeKubelet]:
    """A fake kubelet (HTTPS on 127.0.0.1) that serves the pod logs the test registers.

    Point nodes at it with `cluster.create_node(name, kubelet=kubelet)`.
    """
    with FakeKubelet() as fake:
        yield fake
