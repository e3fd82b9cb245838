#!/usr/bin/env python3
"""The agent in a real DaemonSet pod: start to published-ready, and idle memory.

Goals (issue 15): agent idle RSS in the pod under 50 MB; start to published-ready under 2 s on a
ready node.

Set-up, all real: the node suite's single-node Kubernetes (tests/node/cluster.py `NodeCluster`:
kubelet, containerd, runc, the control plane), the agent image from `scripts/image/build --json`
imported into its containerd, and `kubectl meshready install --image REF --image-pull-policy Never`.
This machine's kernel has netfilter built in, so the node is ready with nothing to load (the
init container and the in-place probe still run).

Each run deletes the agent pod and lets the DaemonSet create a new one, as a node reboot or a
rollout would. The new pod finds the Node already showing its verdict; an unchanged node is not
rewritten (the condition's heartbeat is refreshed every 600 s), so "published-ready" is the
agent's own signal: `meshready_published 1` on /metrics, read through the API server's pod proxy
every 50 ms (as tests/node/test_lifecycle.py does). /readyz turning 200 is polled alongside
(the agent sets both in the same step; the difference is the polling). Start is measured
(the headline figure is the agent's own start, the first; the pod's creation adds its sandbox
and the init container):

- from the container's start: the main process's start time in /proc/PID/stat (10 ms ticks; the
  process runc created, found with `ctr -n k8s.io task ls` on the harness's containerd socket),
  and `containerStatuses[].state.running.startedAt` (whole seconds);
- from the pod's creation: the moment this script first saw the new pod in a 50 ms LIST poll
  (this machine's clock) and `metadata.creationTimestamp` (the API's clock, whole seconds).

The agent's CPU time by then and its container's CFS throttling (the DaemonSet's 250m CPU limit)
are printed too: they say where the start time goes.

Idle RSS: VmRSS of that main process (python3 running `meshready agent`) after it has been ready
and idle for --idle seconds; the container's memory cgroup (v1 memory.stat rss/cache, or v2
memory.current) is printed beside it. The figures go to $CACHE/node/agent-pod-figures.json,
which benchmarks/image_size.py prints.

It never runs beside another node cluster (they share machine-wide sysctls and mount points): it
waits, polling every 30 s, while a kubelet, containerd or a `meshready-node-*` process runs.
The cluster is always stopped.

    sudo .venv/bin/python benchmarks/agent_pod.py [--runs 5] [--idle 10]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.apiserver.cluster import HarnessError, cache_dir  # noqa: E402
from tests.node.cluster import NodeCluster  # noqa: E402
from tests.node.fixtures import AGENT_NAMESPACE, AgentImage, install  # noqa: E402
from tests.node.helpers import (  # noqa: E402
    METRICS_PORT,
    agent_pods,
    condition,
    metric_value,
    pod_ready,
)

GOAL_RSS_MB = 50.0
GOAL_READY_S = 2.0
POLL_S = 0.05
CLUSTER_PROCESSES = ("kubelet", "containerd", "kube-proxy", "kube-scheduler")
TICK = os.sysconf("SC_CLK_TCK")


def now() -> float:
    """This machine's clock, on the same base as /proc/PID/stat start times (boot time)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def wall_to_boot(wall: float) -> float:
    return wall - time.time() + now()


def api_time(stamp: str) -> float:
    """An API timestamp (RFC 3339, whole seconds in v1.20) on this machine's boot clock."""
    parsed = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return wall_to_boot(parsed.timestamp())


# --------------------------------------------------------------------------------------------------
# Not beside another node cluster


def other_node_clusters() -> list[str]:
    """Processes of a running node cluster (a kubelet, containerd, or a meshready-node-* one)."""
    found = []
    own = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        if not words:
            continue
        if Path(words[0]).name in CLUSTER_PROCESSES or any("meshready-node-" in w for w in words):
            found.append(f"{entry.name} {' '.join(words)[:120]}")
    return found


def wait_alone(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        others = other_node_clusters()
        if not others:
            return
        if time.monotonic() >= deadline:
            raise SystemExit(
                f"agent_pod.py: another node cluster still runs after {timeout:.0f} s:\n"
                + "\n".join(others[:5])
            )
        print(f"waiting: another node cluster runs ({others[0][:80]} ...)", flush=True)
        time.sleep(30)


# --------------------------------------------------------------------------------------------------
# The image


def agent_record() -> dict[str, Any]:
    """This machine's agent image as scripts/image/build records it (warm: about a second)."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "image" / "build"), "--image", "agent", "--json"],
        capture_output=True,
        text=True,
        timeout=3600,
    )
    if result.returncode != 0:
        raise SystemExit(f"scripts/image/build failed:\n{result.stderr[-2000:]}")
    records = [r for r in json.loads(result.stdout) if r["image"] == "agent"]
    if not records:
        raise SystemExit("scripts/image/build --json listed no agent image")
    return dict(records[0])


# --------------------------------------------------------------------------------------------------
# One pod's start, read for real


@dataclass
class Run:
    pod: str
    seen_after_create_s: float  # creationTimestamp -> first seen (rounding of the API's seconds)
    create_to_ready_api_s: float  # creationTimestamp -> published 1 (+-1 s)
    seen_to_ready_s: float  # first seen in the LIST poll -> published 1 (this clock)
    process_to_ready_s: float  # the container's main process start (/proc) -> published 1
    started_to_ready_api_s: float  # containerStatuses startedAt -> published 1 (+-1 s)
    readyz_after_published_s: float  # /readyz 200 first seen, relative to published 1
    seen_to_process_s: float  # first seen -> the main process's start (sandbox, init container)
    cpu_s: float  # the main process's CPU time (user + system) when it was found, just after ready
    throttled: str  # the container's CFS throttling by then (its 250m CPU limit)
    rss_mb: float
    cgroup: str
    condition_rewritten: bool


def proxy(cluster: NodeCluster, pod: str, path: str) -> str:
    return cluster.api.request_text(
        "GET",
        f"/api/v1/namespaces/{AGENT_NAMESPACE}/pods/{pod}:{METRICS_PORT}/proxy{path}",
        timeout=5,
    )


def published(cluster: NodeCluster, pod: str) -> bool:
    with contextlib.suppress(HarnessError, OSError):
        return metric_value(proxy(cluster, pod, "/metrics"), "meshready_published") == 1.0
    return False


def readyz(cluster: NodeCluster, pod: str) -> bool:
    with contextlib.suppress(HarnessError, OSError):
        proxy(cluster, pod, "/readyz")
        return True
    return False


def settled(cluster: NodeCluster, timeout: float = 120) -> dict[str, Any]:
    """The one agent pod, Ready and published; the Node's condition True."""

    def one() -> dict[str, Any] | None:
        pods = agent_pods(cluster)
        if len(pods) != 1 or not pod_ready(pods[0]):
            return None
        if (condition(cluster.node()) or {}).get("status") != "True":
            return None
        return pods[0] if published(cluster, pods[0]["metadata"]["name"]) else None

    return dict(cluster.wait_for("one Ready, published agent pod", one, timeout))


def running(pod: dict[str, Any]) -> dict[str, Any] | None:
    """POD once the kubelet reports its container running (its status lags the process)."""
    statuses = pod.get("status", {}).get("containerStatuses") or []
    return pod if statuses and "running" in statuses[0].get("state", {}) else None


def main_pid(cluster: NodeCluster, container_id: str) -> int:
    """The container's main process (a host PID) from containerd's task list."""
    cid = re.sub(r"^[a-z]+://", "", container_id)
    for line in cluster.ctr("task", "ls", timeout=30).stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == cid:
            return int(fields[1])
    raise HarnessError(f"containerd lists no task {cid}")


def process_start(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[19]) / TICK


def vm_rss_mb(pid: int) -> float:
    m = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    if not m:
        raise HarnessError(f"no VmRSS for PID {pid}")
    return int(m.group(1)) / 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def cgroup_dir(pid: int, controller: str) -> Path | None:
    """PID's cgroup directory of CONTROLLER in a v1 hierarchy (None on a v2-only machine)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            for mount in (controller, ",".join(sorted(controllers.split(",")))):
                d = Path("/sys/fs/cgroup") / mount / path.lstrip("/")
                if d.is_dir():
                    return d
    return None


def cpu_throttling(pid: int) -> str:
    """CFS periods throttled so far, from cpu.stat (v1 cpu controller or v2)."""
    d = cgroup_dir(pid, "cpu")
    if d is None:
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                d = Path("/sys/fs/cgroup") / line[3:].lstrip("/")
    if d is None or not (d / "cpu.stat").is_file():
        return "no cpu.stat"
    stat = dict(x.split() for x in (d / "cpu.stat").read_text().splitlines())
    if "throttled_time" in stat:
        seconds = int(stat["throttled_time"]) / 1e9
    else:
        seconds = int(stat.get("throttled_usec", 0)) / 1e6
    return f"{stat.get('nr_throttled')} of {stat.get('nr_periods')} periods, {seconds:.2f} s"


def cgroup_memory(pid: int) -> str:
    """The container's memory cgroup, as its accounting says (v1 or v2)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            d = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            stat = dict(
                (k, int(v))
                for k, v in (x.split() for x in (d / "memory.stat").read_text().splitlines())
            )
            usage = int((d / "memory.usage_in_bytes").read_text())
            return (
                f"cgroup v1 usage {usage / 2**20:.1f} MB (rss {stat['rss'] / 2**20:.1f}, "
                f"cache {stat['cache'] / 2**20:.1f})"
            )
        if controllers == "" and (Path("/sys/fs/cgroup") / path.lstrip("/")).is_dir():
            d = Path("/sys/fs/cgroup") / path.lstrip("/")
            if (d / "memory.current").is_file():
                return f"cgroup v2 memory.current {int((d / 'memory.current').read_text()) / 2**20:.1f} MB"
    return "no memory cgroup found"


def one_run(cluster: NodeCluster, idle: float) -> Run:
    old = settled(cluster)
    old_uid = old["metadata"]["uid"]
    heartbeat = (condition(cluster.node()) or {}).get("lastHeartbeatTime")
    cluster.api.delete(f"/api/v1/namespaces/{AGENT_NAMESPACE}/pods/{old['metadata']['name']}")
    deadline = time.monotonic() + 180
    new: dict[str, Any] | None = None
    seen = 0.0
    while new is None:
        if time.monotonic() > deadline:
            raise HarnessError("the DaemonSet created no new agent pod within 180 s")
        fresh = [p for p in agent_pods(cluster) if p["metadata"]["uid"] != old_uid]
        if fresh:
            new, seen = fresh[0], now()
        else:
            time.sleep(POLL_S)
    name = new["metadata"]["name"]
    ready_at = readyz_at = None
    while ready_at is None or readyz_at is None:
        if time.monotonic() > deadline:
            raise HarnessError(f"{name} did not publish within 180 s")
        if ready_at is None and published(cluster, name):
            ready_at = now()
        if readyz_at is None and readyz(cluster, name):
            readyz_at = now()
        time.sleep(POLL_S)
    pod = cluster.wait_for(
        f"{name}'s container status",
        lambda: running(cluster.api.get(f"/api/v1/namespaces/{AGENT_NAMESPACE}/pods/{name}")),
        60,
        interval=0.2,
    )
    status = pod["status"]["containerStatuses"][0]
    pid = main_pid(cluster, status["containerID"])
    cpu, throttled = cpu_seconds(pid), cpu_throttling(pid)
    created = api_time(pod["metadata"]["creationTimestamp"])
    started = api_time(status["state"]["running"]["startedAt"])
    time.sleep(max(0.0, idle - (now() - ready_at)))
    rss = vm_rss_mb(pid)
    memory = cgroup_memory(pid)
    after = condition(cluster.node()) or {}
    if after.get("status") != "True":
        raise HarnessError(f"the condition is {after} after {name} started")
    return Run(
        pod=name,
        seen_after_create_s=seen - created,
        create_to_ready_api_s=ready_at - created,
        seen_to_ready_s=ready_at - seen,
        process_to_ready_s=ready_at - process_start(pid),
        started_to_ready_api_s=ready_at - started,
        readyz_after_published_s=readyz_at - ready_at,
        seen_to_process_s=process_start(pid) - seen,
        cpu_s=cpu,
        throttled=throttled,
        rss_mb=rss,
        cgroup=memory,
        condition_rewritten=after.get("lastHeartbeatTime") != heartbeat,
    )


# --------------------------------------------------------------------------------------------------


def spread(values: Sequence[float], unit: str, digits: int = 2) -> str:
    return (
        f"min {min(values):.{digits}f} / median {statistics.median(values):.{digits}f} / "
        f"max {max(values):.{digits}f} {unit}"
    )


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(f"signal {signum}: stopping the cluster")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="agent pods deleted and recreated")
    ap.add_argument("--idle", type=float, default=10.0, help="seconds ready and idle before RSS")
    ap.add_argument(
        "--wait", type=float, default=3600.0, help="wait this long for another node cluster"
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("agent_pod.py: needs root (the node cluster)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _terminate)
    record = agent_record()
    image = AgentImage("agent", str(record["ref"]), Path(record["docker_archive"]))
    wait_alone(args.wait)
    print(f"load before: {load()}", flush=True)
    cluster = NodeCluster()
    runs: list[Run] = []
    during = ""
    try:
        cluster.start()
        print(f"cluster up in {cluster.startup_seconds:.1f} s", flush=True)
        cluster.import_image(image.archive)
        installed = install(cluster, image)
        if installed.result.returncode != 0:
            raise HarnessError(
                f"kubectl meshready install: exit {installed.result.returncode}\n"
                f"{installed.result.stdout}\n{installed.result.stderr}"
            )
        first = settled(cluster)
        node_condition = condition(cluster.node()) or {}
        print(
            f"install (rollout complete) {installed.seconds:.1f} s; first pod created "
            f"{first['metadata']['creationTimestamp']}, condition True since "
            f"{node_condition.get('lastTransitionTime')} (the first publish, taint removed)",
            flush=True,
        )
        for i in range(args.runs):
            run = one_run(cluster, args.idle)
            runs.append(run)
            print(
                f"run {i + 1}: {run.pod}: created->published {run.create_to_ready_api_s:.2f} s "
                f"(API s), seen->published {run.seen_to_ready_s:.2f} s, process start->"
                f"published {run.process_to_ready_s:.2f} s, startedAt->published "
                f"{run.started_to_ready_api_s:.2f} s; /readyz 200 "
                f"{run.readyz_after_published_s:+.2f} s; seen->process start "
                f"{run.seen_to_process_s:.2f} s; CPU {run.cpu_s:.2f} s, throttled {run.throttled}; "
                f"idle VmRSS {run.rss_mb:.1f} MB, "
                f"{run.cgroup}; condition rewritten: {run.condition_rewritten}",
                flush=True,
            )
        during = load()
    finally:
        cluster.close()
    print(f"## agent pod ({image.ref}, {record['layers_bytes'] / 1e6:.1f} MB uncompressed)")
    print(f"load at the end of the runs: {during}")
    process = [r.process_to_ready_s for r in runs]
    seen = [r.seen_to_ready_s for r in runs]
    print(f"container process start -> meshready_published 1: {spread(process, 's')}")
    print(f"new pod first seen (50 ms LIST poll) -> published: {spread(seen, 's')}")
    print(
        "creationTimestamp -> published (API seconds, +-1 s): "
        + spread([r.create_to_ready_api_s for r in runs], "s")
    )
    print(
        "startedAt -> published (API seconds, +-1 s): "
        + spread([r.started_to_ready_api_s for r in runs], "s")
    )
    print(
        "/readyz 200 relative to published: "
        + spread([r.readyz_after_published_s for r in runs], "s")
    )
    print(
        "new pod first seen -> container process start (sandbox, init container): "
        + spread([r.seen_to_process_s for r in runs], "s")
    )
    print(
        "agent CPU time (user + system) to published: "
        + spread([r.cpu_s for r in runs], "s")
        + "; CFS throttling by then: "
        + "; ".join(r.throttled for r in runs)
    )
    rss = [r.rss_mb for r in runs]
    print(
        f"idle VmRSS of the agent's main process after {args.idle:g} s idle: {spread(rss, 'MB', 1)}"
    )
    agent_s, pod_s = statistics.median(process), statistics.median(seen)
    print(
        f"goals: the agent's start to published-ready < {GOAL_READY_S:g} s: "
        f"{'met' if agent_s < GOAL_READY_S else 'NOT met'} (median {agent_s:.2f} s from its "
        f"container's process start; {pod_s:.2f} s from the pod's creation: "
        f"{'met' if pod_s < GOAL_READY_S else 'NOT met'}); idle RSS < {GOAL_RSS_MB:g} MB: "
        f"{'met' if statistics.median(rss) < GOAL_RSS_MB else 'NOT met'}"
    )
    figures = {
        "idle_rss_mb": round(statistics.median(rss), 1),
        "start_to_published_ready_s": round(agent_s, 2),
        "pod_created_to_published_ready_s": round(pod_s, 2),
        "measured_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "how": (
            f"benchmarks/agent_pod.py: NodeCluster + kubectl meshready install --image "
            f"{image.ref} (imagePullPolicy Never); agent pod deleted {len(runs)} times; start = "
            "the new container's main process start (/proc/PID/stat, PID from ctr task ls), "
            "published-ready = meshready_published 1 on /metrics via the API server's pod proxy "
            "(50 ms poll; the node was already ready, so the condition is not rewritten); from "
            "the pod's creation (first seen in a 50 ms LIST poll) in "
            "pod_created_to_published_ready_s; medians; idle RSS = median VmRSS of that process "
            f"after {args.idle:g} s ready and idle; image "
            f"{record['layers_bytes'] / 1e6:.1f} MB uncompressed; "
            f"load average {during.split('load average:')[-1].strip()}"
        ),
        "runs": [asdict(r) for r in runs],
    }
    out = cache_dir() / "node" / "agent-pod-figures.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
