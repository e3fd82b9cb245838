#!/usr/bin/env python3
"""How long from `meshready agent` starting to its node published ready, and how much memory idle.

Targets (issue 6): under 1 s from start to published ready on a node that needs loading (image
pull excluded); under 50 MB RSS idle.

Set-up, all real except the kernel: a kube-apiserver 1.20 + etcd (tests/apiserver/cluster.py,
needs the cached build from scripts/apiserver/build), the agent's RBAC from `install`, a Node with
the startup taint, and the agent as a process with its ServiceAccount's token, looking at a host
root with a real Debian kernel's module index. This machine's kernel cannot load modules, so the
agent's loader is tests/agent/fakes.FakeLoader with a per-module delay (--load-ms, default 5 ms,
about what finit_module of a small netfilter module costs on real hardware).

"Published ready" is the moment a watch from this script sees the Node with the startup taint gone
and MeshInterceptionReady=True (the agent removes the taint last). Start is just before the process
is spawned, so Python's start and imports are included.

    .venv/bin/python benchmarks/agent_targets.py [--runs 7] [--load-ms 5] [--probe]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lightkube.resources.core_v1 import Node  # noqa: E402
from tests.agent.fakes import make_node  # noqa: E402
from tests.agent.process import free_port, meshready_argv  # noqa: E402
from tests.apiserver.cluster import LocalCluster, can_i, wait_for  # noqa: E402

from meshready.cluster.install import install  # noqa: E402
from meshready.cluster.manifests import ManifestOptions  # noqa: E402
from meshready.cluster.names import AGENT_NAME, CONDITION_TYPE  # noqa: E402

TAINT = {"key": "meshready.io/not-ready", "effect": "NoSchedule"}


def _ready(node: Node) -> bool:
    taints = [t.key for t in (node.spec.taints if node.spec else None) or []]
    conditions = {c.type: c.status for c in (node.status.conditions if node.status else None) or []}
    return TAINT["key"] not in taints and conditions.get(CONDITION_TYPE) == "True"


def _cpu_seconds(pid: int) -> float:
    """utime + stime of PID (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_run(
    cluster: LocalCluster, namespace: str, sa: Path, work: Path, i: int, load_ms: float
) -> tuple[float, float]:
    name = f"bench-{i}-{os.getpid()}"
    cluster.create_node(name, taints=[TAINT])
    fake = make_node(work / name)
    seen = threading.Event()
    watch_ready = threading.Event()
    t_seen = [0.0]
    cpu_seen = [0.0]
    pid = [0]

    def watcher() -> None:
        with cluster.client() as client:
            while not seen.is_set():
                try:
                    for _, node in client.watch(Node, fields={"metadata.name": name}):
                        watch_ready.set()
                        if _ready(node):
                            t_seen[0] = time.monotonic()
                            cpu_seen[0] = _cpu_seconds(pid[0])
                            seen.set()
                            return
                except Exception:  # the apiserver may end a watch; watch again
                    if _ready(client.get(Node, name)):
                        t_seen[0] = time.monotonic()
                        cpu_seen[0] = _cpu_seconds(pid[0])
                        seen.set()

    thread = threading.Thread(target=watcher, daemon=True)
    thread.start()
    watch_ready.wait(10)
    env = {**os.environ, "MESHREADY_TEST_LOADER": f"fake:delay={load_ms / 1000:g}"}
    argv = meshready_argv(
        "agent", "--node-name", name, *fake.agent_args(), "--kubeconfig", str(sa),
        "--probe-mode", "off", "--loader", "python", "--interval", "3600",
        "--metrics-addr", f"127.0.0.1:{free_port()}",
    )  # fmt: skip
    log = (work / f"{name}.log").open("wb")
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    pid[0] = proc.pid
    try:
        if not seen.wait(30):
            proc.send_signal(signal.SIGUSR1)
            time.sleep(1)
            log.flush()
            text = (work / f"{name}.log").read_text(errors="replace")
            raise SystemExit(f"run {i}: not ready after 30 s; agent log:\n{text[-3000:]}")
        return t_seen[0] - start, cpu_seen[0]
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def idle_rss(cluster: LocalCluster, sa: Path, work: Path, seconds: float) -> tuple[float, float]:
    """RSS (MB) of an agent that has published and then idled; also its peak (VmHWM)."""
    name = f"bench-idle-{os.getpid()}"
    cluster.create_node(name, taints=[TAINT])
    fake = make_node(work / name)
    port = free_port()
    argv = meshready_argv(
        "agent", "--node-name", name, *fake.agent_args(), "--kubeconfig", str(sa),
        "--probe-mode", "off", "--loader", "python", "--interval", "3600",
        "--metrics-addr", f"127.0.0.1:{port}",
    )  # fmt: skip
    env = {**os.environ, "MESHREADY_TEST_LOADER": "fake"}
    log = (work / f"{name}.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        with cluster.client() as client:
            wait_for(lambda: _ready(client.get(Node, name)), timeout=30, what="published")
        time.sleep(seconds)
        # A few scrapes, as Prometheus and the kubelet's probes would do.
        import urllib.request

        for path in ("/metrics", "/readyz", "/healthz") * 3:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read()
        status = Path(f"/proc/{proc.pid}/status").read_text()
        kb = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M))
        return int(kb["VmRSS"]) / 1024, int(kb["VmHWM"]) / 1024
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--load-ms", type=float, default=5.0, help="fake time per module load")
    parser.add_argument(
        "--idle", type=float, default=10.0, help="seconds idle before measuring RSS"
    )
    args = parser.parse_args()

    with LocalCluster() as cluster, tempfile.TemporaryDirectory(prefix="meshready-bench-") as tmp:
        work = Path(tmp)
        namespace = cluster.create_namespace("bench")
        with cluster.client() as admin:
            install(admin, ManifestOptions(namespace=namespace))
        sa = cluster.serviceaccount_kubeconfig(namespace, AGENT_NAME)
        wait_for(lambda: can_i(sa, "patch", "nodes"), what="RBAC")
        one_run(cluster, namespace, sa, work, 0, args.load_ms)  # warm the page cache
        runs = [
            one_run(cluster, namespace, sa, work, i, args.load_ms) for i in range(1, args.runs + 1)
        ]
        times = [wall for wall, _ in runs]
        cpus = [cpu for _, cpu in runs]
        rss, peak = idle_rss(cluster, sa, work, args.idle)

    print(
        f"start -> published ready (18 modules loaded at {args.load_ms:g} ms each, taint removed):"
    )
    print(f"  runs {len(times)}: median {statistics.median(times):.3f} s, "
          f"min {min(times):.3f} s, max {max(times):.3f} s  (target < 1 s)")  # fmt: skip
    print(f"  agent CPU time (user+sys) until then: median {statistics.median(cpus):.3f} s, "
          f"max {max(cpus):.3f} s (what it costs an idle core)")  # fmt: skip
    print(f"  load average while measuring: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"idle RSS after {args.idle:g} s: {rss:.1f} MB (peak {peak:.1f} MB)  (target < 50 MB)")
    ok = max(times) < 1.0 and rss < 50
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
