"""`meshready status` and `diagnose --cluster` on a large fleet, against a real kube-apiserver.

Creates NODES nodes (a tenth not ready, a tenth without an agent) and PODS pods (one in a hundred
with a failed istio-init whose log the loopback fake kubelet serves), then prints wall time and the
apiserver's own request count (apiserver_request_total) for each command. Targets at 5,000 nodes
and 50,000 pods: status < 5 s, diagnose --cluster < 5 s (11.1 s before it asked the API only for
pods that have not started: issue 14).

    .venv/bin/python benchmarks/fleet_scale.py [NODES] [PODS]      (default 5000 50000)

With MESHREADY_BASELINE_SRC=DIR (a `src` directory of another version, e.g. from
`git archive OLD src`), each command is also timed with that version, on the same cluster and
machine load, for a fair before/after figure.

Needs the cached apiserver (scripts/build-test-artifacts). Creating the objects takes minutes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.apiserver.cluster import FakeKubelet, LocalCluster  # noqa: E402

LOG = (REPO / "tests/data/logs/istio-28897-rhel8-legacy.log").read_text()


def request_counts(cluster: LocalCluster) -> dict[str, int]:
    text = cluster.api.request_text("GET", "/metrics")
    counts: dict[str, int] = {}
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        verb = re.search(r'verb="([A-Z]+)"', line)
        if verb:
            counts[verb.group(1)] = counts.get(verb.group(1), 0) + int(
                float(line.rsplit(" ", 1)[1])
            )
    return counts


def node_body(i: int, port: int) -> tuple[dict[str, Any], dict[str, Any]]:
    name = f"node-{i:05d}"
    ready = i % 10 != 0
    labels = {} if i % 10 == 5 else {"meshready.io/ready": str(ready).lower()}
    report = {
        "schema": "meshready.io/node-report/v1",
        "ready": ready,
        "backend": "legacy",
        "kernel": "6.1.0-28-cloud-amd64",
        "modules": {"loaded": ["ip_tables"]} if ready else {"loadable": ["ip_tables"]},
    }
    annotations = {} if i % 10 == 5 else {"meshready.io/report": json.dumps(report)}
    meta = {"name": name, "labels": labels, "annotations": annotations}
    status = {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
    }
    if i % 10 != 5:
        status["conditions"] = [
            {
                "type": "MeshInterceptionReady",
                "status": str(ready),
                "reason": "InterceptionVerified" if ready else "ModulesNotLoaded",
                "lastHeartbeatTime": "2026-11-27T00:00:00Z",
            }
        ]
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta}, status


def main() -> None:
    nodes = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    pods = int(sys.argv[2]) if len(sys.argv) > 2 else 50000
    cluster = LocalCluster()
    kubelet = FakeKubelet()
    try:
        cluster.start()
        api = cluster.api
        cluster.ensure_namespace("apps")
        start = time.perf_counter()

        def make_node(i: int) -> None:
            body, status = node_body(i, kubelet.port)
            api.post("/api/v1/nodes", body)
            api.merge_patch(f"/api/v1/nodes/{body['metadata']['name']}/status", {"status": status})

        def make_pod(j: int) -> None:
            node = f"node-{j % nodes:05d}"
            failed = j % 100 == 0
            name = f"app-{j:06d}"
            body = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "namespace": "apps"},
                "spec": {
                    "nodeName": node,
                    "initContainers": [{"name": "istio-init", "image": "proxyv2"}],
                    "containers": [{"name": "app", "image": "app"}],
                },
            }
            api.post("/api/v1/namespaces/apps/pods", body)
            if failed:
                state = {"waiting": {"reason": "CrashLoopBackOff"}}
                kubelet.set_log("apps", name, "istio-init", LOG)
            else:
                state = {"terminated": {"exitCode": 0, "reason": "Completed"}}
            api.merge_patch(
                f"/api/v1/namespaces/apps/pods/{name}/status",
                {
                    "status": {
                        "phase": "Pending" if failed else "Running",
                        "initContainerStatuses": [
                            {
                                "name": "istio-init",
                                "image": "proxyv2",
                                "imageID": "",
                                "ready": not failed,
                                "restartCount": 3 if failed else 0,
                                "state": state,
                            }
                        ],
                    }
                },
            )

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(make_node, range(nodes)))
            list(pool.map(make_pod, range(pods)))
        print(
            f"created {nodes} nodes and {pods} pods in {time.perf_counter() - start:.0f} s",
            flush=True,
        )
        target = 5.0
        versions = [("", [str(Path(sys.executable).parent / "meshready")], None)]
        baseline = os.environ.get("MESHREADY_BASELINE_SRC")
        if baseline:
            env = {**os.environ, "PYTHONPATH": baseline}
            versions.append((" (baseline)", [sys.executable, "-m", "meshready.cli.main"], env))
        runs = [
            (label + tag, exe, args, env)
            for tag, exe, env in versions
            for label, args in (
                ("status", ["status", "-o", "json"]),
                ("diagnose --cluster", ["diagnose", "--cluster", "-o", "json"]),
            )
        ]
        for label, exe, args, env in runs:
            before = request_counts(cluster)
            t0 = time.perf_counter()
            proc = subprocess.run(
                [*exe, *args, "--kubeconfig", str(cluster.admin_kubeconfig)],
                capture_output=True,
                text=True,
                check=False,
                env=env,
            )
            wall = time.perf_counter() - t0
            after = request_counts(cluster)
            made = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            made = {k: v for k, v in made.items() if v}
            verdict = "within" if wall < target else "OVER"
            print(
                f"{label:31} {wall:6.2f} s  exit {proc.returncode}  requests {made}  "
                f"(stdout {len(proc.stdout) // 1024} KiB)  {verdict} the {target:g} s target",
                flush=True,
            )
            if proc.returncode not in (0, 1):
                print(proc.stderr)
    finally:
        kubelet.close()
        cluster.close()


if __name__ == "__main__":
    main()
