"""Fixtures for the tests in this directory: a real kube-apiserver + etcd (see fixtures.py)."""

from .fixtures import (  # noqa: F401 - pytest finds fixtures and hooks by name
    admin_client,
    admin_kubeconfig,
    cluster,
    kubelet,
    namespace,
    pytest_collection_modifyitems,
)
