"""pytest fixtures for the `node` tests: one real single-node cluster per session.

`node_cluster` starts it (tests/node/cluster.py) and always stops it, also when a test fails.
Without its prerequisites (root, the cached Kubernetes build, kubectl, containerd, the images) a
test FAILS, naming the script to run; it never skips. Every test using `node_cluster` gets the
`node` marker.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.apiserver.cluster import HarnessError, MissingArtifactError

from .cluster import BUILD_HINT, REPO, NodeCluster

__all__ = [
    "AgentImage",
    "Installed",
    "agent_image",
    "installed_agent",
    "mesh_init_image",
    "node_cluster",
    "pytest_collection_modifyitems",
]

AGENT_NAMESPACE = "meshready"
IMAGE_HINT = "run scripts/build-test-artifacts (or scripts/image/build)"

_CLUSTER = pytest.StashKey[NodeCluster]()
_FAILURE = pytest.StashKey[str]()
_IMAGES = pytest.StashKey[dict[str, "AgentImage"]]()
_INSTALLED = pytest.StashKey["Installed"]()
_RECORDS = pytest.StashKey[dict[str, dict[str, str]]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "node_cluster" in fixtures and item.get_closest_marker("node") is None:
            item.add_marker(pytest.mark.node)


@pytest.fixture(scope="session")
def node_cluster(request: pytest.FixtureRequest) -> NodeCluster:
    """One real single-node cluster for the session; fails (never skips) without it."""
    stash = request.config.stash
    if _FAILURE in stash:
        pytest.fail(stash[_FAILURE], pytrace=False)
    if _CLUSTER in stash:
        return stash[_CLUSTER]
    try:
        started = NodeCluster()
        request.config.add_cleanup(started.close)
        started.start()
    except MissingArtifactError as err:
        stash[_FAILURE] = f"node tests need their prerequisites: {err}"
    except HarnessError as err:
        stash[_FAILURE] = f"the test node did not start ({BUILD_HINT}?): {err}"
    if _FAILURE in stash:
        pytest.fail(stash[_FAILURE], pytrace=False)
    stash[_CLUSTER] = started
    return started


@dataclass(frozen=True)
class AgentImage:
    """One image built by scripts/image/build and imported into the node's containerd."""

    image: str
    ref: str
    archive: Path


def _built_images() -> dict[str, dict[str, str]]:
    """Ask scripts/image/build (warm: about a second) for the current images' records."""
    script = REPO / "scripts" / "image" / "build"
    if not script.is_file():
        raise MissingArtifactError(f"{script} is missing")
    try:
        result = subprocess.run(
            [sys.executable, str(script), "--json"],
            capture_output=True,
            text=True,
            timeout=1800,
        )
    except subprocess.TimeoutExpired as err:
        raise MissingArtifactError(f"scripts/image/build timed out: {IMAGE_HINT}") from err
    if result.returncode != 0:
        raise MissingArtifactError(
            f"scripts/image/build failed ({IMAGE_HINT}):\n{result.stderr[-2000:]}"
        )
    return {str(r["image"]): r for r in json.loads(result.stdout)}


def _image(request: pytest.FixtureRequest, cluster: NodeCluster, name: str) -> AgentImage:
    stash = request.config.stash
    images = stash.setdefault(_IMAGES, {})
    if name in images:
        return images[name]
    try:
        # One look-up per session: the records of every image, as the build script knows them.
        if _RECORDS not in stash:
            stash[_RECORDS] = _built_images()
        record = stash[_RECORDS][name]
        image = AgentImage(name, str(record["ref"]), Path(record["docker_archive"]))
        cluster.import_image(image.archive)
    except (MissingArtifactError, KeyError, HarnessError) as err:
        pytest.fail(f"image {name!r} not available: {err}", pytrace=False)
    if image.ref not in cluster.image_refs():
        pytest.fail(
            f"{image.archive} imported, but containerd has no {image.ref}: {cluster.image_refs()}",
            pytrace=False,
        )
    images[name] = image
    return image


@pytest.fixture(scope="session")
def agent_image(request: pytest.FixtureRequest, node_cluster: NodeCluster) -> AgentImage:
    """The meshready agent image (the repository's Containerfile), in the node's containerd."""
    return _image(request, node_cluster, "agent")


@pytest.fixture(scope="session")
def mesh_init_image(request: pytest.FixtureRequest, node_cluster: NodeCluster) -> AgentImage:
    """Debian bookworm + iptables (scripts/image/mesh-init.Containerfile), in containerd."""
    return _image(request, node_cluster, "mesh-init")


@dataclass
class Installed:
    """`kubectl meshready install` as it ran: its result, and when it ran."""

    result: subprocess.CompletedProcess[str]
    seconds: float
    image: AgentImage


def install(cluster: NodeCluster, image: AgentImage, timeout: float = 240) -> Installed:
    began = time.monotonic()
    result = cluster.kubectl(
        "meshready",
        "install",
        "--image",
        image.ref,
        "--image-pull-policy",
        "Never",
        "--timeout",
        str(int(timeout - 30)),
        timeout=timeout,
        check=False,
    )
    return Installed(result, time.monotonic() - began, image)


@pytest.fixture
def installed_agent(
    request: pytest.FixtureRequest, node_cluster: NodeCluster, agent_image: AgentImage
) -> Iterator[Installed]:
    """The agent installed with `kubectl meshready install` (once; again after an uninstall)."""
    stash = request.config.stash
    if _INSTALLED not in stash or not _is_installed(node_cluster):
        stash[_INSTALLED] = install(node_cluster, agent_image)
    installed = stash[_INSTALLED]
    if installed.result.returncode != 0:
        pytest.fail(
            "kubectl meshready install failed (exit "
            f"{installed.result.returncode}):\n{installed.result.stdout}\n"
            f"{installed.result.stderr}\nkubelet log:\n{node_cluster.log_tail('kubelet', 30)}",
            pytrace=False,
        )
    yield installed


def _is_installed(cluster: NodeCluster) -> bool:
    return cluster.api.exists(
        f"/apis/apps/v1/namespaces/{AGENT_NAMESPACE}/daemonsets/meshready-agent"
    )
