"""The reflect2 fix in scripts/kube/build: pretty-printed responses no longer crash the binaries.

Before the fix, every binary built from Debian's source with Go >= 1.18 died with SIGSEGV in
runtime.mapiternext when it pretty-printed a response holding a map: any `?pretty=true` request,
or any client whose User-Agent starts with curl or Wget (modern-go/reflect2#24).
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from .cluster import NODE_NAME, NodeCluster

pytestmark = pytest.mark.node


def _get(cluster: NodeCluster, path: str, agent: str) -> str:
    api = cluster.api
    request = urllib.request.Request(api.credentials.server + path)
    request.add_header("User-Agent", agent)
    request.add_header("Authorization", f"Bearer {api.credentials.token}")
    with api._opener.open(request, timeout=10) as response:
        return str(response.read().decode())


def test_apiserver_pretty_prints_maps_for_curl_and_pretty_true(node_cluster: NodeCluster) -> None:
    # Maps (labels, data, capacity) are exactly what crashed the unfixed build: measured with the
    # unfixed v1.20.2 here, the first request below killed kube-apiserver (SIGSEGV).
    api = node_cluster.api
    path = "/api/v1/namespaces/default/configmaps"
    if api.exists(f"{path}/pretty-map"):
        api.delete(f"{path}/pretty-map")
    api.post(
        path,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "pretty-map", "labels": {"a": "b"}},
            "data": {"k": "v"},
        },
    )
    for path, agent in (
        ("/api/v1/namespaces/default/configmaps/pretty-map", "curl/7.88.1"),
        (f"/api/v1/nodes/{NODE_NAME}", "curl/7.88.1"),
        (f"/api/v1/nodes/{NODE_NAME}?pretty=true", "python-urllib"),
        ("/api/v1/namespaces/kube-system/configmaps?pretty=true", "Wget/1.21.3"),
    ):
        text = _get(node_cluster, path, agent)
        assert text.startswith("{\n  "), text[:200]  # indented: the pretty encoder ran
        json.loads(text)
    assert node_cluster.process_alive("kube-apiserver")
    # kubectl against the same server still works afterwards (the process did not restart).
    assert node_cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
