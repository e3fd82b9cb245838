"""Fixtures for the `node` tests: a real single-node Kubernetes (see cluster.py, fixtures.py)."""

from .fixtures import (  # noqa: F401 - pytest finds fixtures and hooks by name
    agent_image,
    installed_agent,
    mesh_init_image,
    node_cluster,
    pytest_collection_modifyitems,
)
