#!/usr/bin/env python3
"""The agent image: its size, and the agent's start-to-ready time and idle memory run from it.

Goals (issue 15): image under 150 MB uncompressed; agent idle RSS under 50 MB; start to
published-ready under 2 s on a ready node.

- Sizes come from the images scripts/image/build made (cached; this script builds nothing):
  uncompressed = the sum of the image's layer tars (what `docker images` shows), the compressed
  oci-archive, the base's share, and the largest Python distributions.
- The agent is run from the image's own root filesystem (unpacked), the way its container runs
  it: chroot, new network, mount and PID namespaces with loopback up, read-only host module tree
  at /host, the DaemonSet's main-container arguments plus --no-cluster. This machine's kernel has
  netfilter built in and no loadable modules, so the node is ready without loading; the in-place
  probe runs for real. Start to ready = spawning the process until `--once` has its verdict.
  Idle RSS = VmRSS of the long-running agent 3 s after its first check reported ready.
  What publishing adds (the API round trips) is measured against the real apiserver by
  benchmarks/agent_targets.py, and in a real pod by the node suite, which writes its figures to
  $CACHE/node/agent-pod-figures.json (printed here when present).

    .venv/bin/python benchmarks/image_size.py [--arch amd64] [--runs 5] [--warm-build]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts" / "image"))
import imagelib  # noqa: E402

GOAL_MB = 150
GOAL_RSS_MB = 50
GOAL_READY_S = 2.0
ARGS = [
    "agent", "--no-cluster", "--host-root=/host", "--loader=none", "--probe-mode=inplace",
    "--metrics-addr=127.0.0.1:9808",
]  # fmt: skip
# Inside the new namespaces: the container's mounts, then the image's own PATH and environment.
SETUP = """set -e
R=$1; shift
mount --make-rprivate /
mkdir -p "$R/host"
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount --rbind /dev "$R/dev"
for d in run tmp host; do mount -t tmpfs tmpfs "$R/$d"; done
mkdir -p "$R/host/lib/modules" "$R/host/etc/modules-load.d"
[ -d /lib/modules ] && mount --bind -o ro /lib/modules "$R/host/lib/modules"
mount -o remount,bind,ro "$R" 2>/dev/null || true
ip link set lo up
exec chroot "$R" /usr/bin/env -i PATH=/opt/meshready/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 "$@"
"""


def latest(image: str, arch: str) -> imagelib.Built | None:
    path = imagelib.images_dir() / f"{image}-{arch}.json"
    if not path.exists():
        return None
    return imagelib.Built(**json.loads(path.read_text()))


def sizes(arch: str) -> list[str]:
    lines = []
    base = imagelib.images_dir() / "base"
    for image in imagelib.IMAGES:
        b = latest(image, arch)
        if b is None:
            lines.append(f"{image:<10} {arch:<6} not built: run scripts/image/build --arch {arch}")
            continue
        tf, layers = imagelib.docker_layers(b.docker_path)
        with tf:
            layer_sizes = [tf.getmember(name).size for name in layers]
        oci = Path(b.oci_archive).stat().st_size
        stale = "" if imagelib.cached(image, arch) else "  (older than this tree)"
        lines.append(
            f"{image:<10} {arch:<6} {b.layers_bytes / 1e6:6.1f} MB uncompressed "
            f"(base {layer_sizes[0] / 1e6:.1f} + {sum(layer_sizes[1:]) / 1e6:.1f}), "
            f"{oci / 1e6:5.1f} MB compressed, {len(b.packages)} Debian packages, "
            f"built in {b.build_seconds:.0f} s{stale}"
        )
        if image == "agent":
            verdict = "met" if b.layers_bytes < GOAL_MB * 1e6 else "NOT met"
            lines.append(f"  goal < {GOAL_MB} MB uncompressed: {verdict}")
    del base
    return lines


def site_packages(root: Path) -> list[str]:
    site = root / "opt/meshready/lib/python3.11/site-packages"
    totals: dict[str, int] = {}
    for p in site.rglob("*"):
        if p.is_file():
            top = (
                p.relative_to(site).parts[0].split("-")[0].removesuffix(".pyc").removesuffix(".py")
            )
            totals[top] = totals.get(top, 0) + p.stat().st_size
    biggest = sorted(totals.items(), key=lambda kv: -kv[1])[:8]
    return [
        f"  /opt/meshready {sum(totals.values()) / 1e6:.1f} MB; largest: "
        + ", ".join(f"{k} {v / 1e6:.1f}" for k, v in biggest)
    ]


def in_namespaces(root: Path, argv: list[str], script: Path) -> list[str]:
    return ["unshare", "--net", "--mount", "--pid", "--fork", "sh", str(script), str(root), *argv]


def start_to_ready(root: Path, script: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.monotonic()
        proc = subprocess.run(
            in_namespaces(root, ["meshready", *ARGS, "--once", "-o", "json"], script),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        elapsed = time.monotonic() - t0
        text = proc.stdout[proc.stdout.find("{") :]
        try:
            ready = json.loads(text).get("ready") is True
        except ValueError:
            ready = False
        if proc.returncode != 0 or not ready:
            raise SystemExit(f"the agent from the image was not ready:\n{proc.stderr[-2000:]}")
        times.append(elapsed)
    return times


def descendants(pid: int) -> list[int]:
    out = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        out += [int(k) for k in kids]
        todo += [int(k) for k in kids]
    return out


def idle_rss(root: Path, script: Path) -> tuple[float, float]:
    """(VmRSS MB 3 s after the first ready check, seconds to that check's log line)."""
    with tempfile.TemporaryFile(mode="w+") as log:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            in_namespaces(root, ["meshready", *ARGS], script),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            ready_at = None
            deadline = time.monotonic() + 60
            while ready_at is None and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.05)
                log.seek(0)
                if re.search(r"check \(start\) in [\d.]+ s: ready", log.read()):
                    ready_at = time.monotonic() - t0
            if ready_at is None:
                log.seek(0)
                raise SystemExit(
                    f"the long-running agent never reported ready:\n{log.read()[-2000:]}"
                )
            time.sleep(3)
            for pid in descendants(proc.pid):
                try:
                    argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                if any(b"meshready" in a for a in argv0) and b"python" in argv0[0]:
                    m = re.search(r"VmRSS:\s+(\d+) kB", status)
                    if m:
                        return int(m.group(1)) / 1024, ready_at
            raise SystemExit("could not find the agent's process")
        finally:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(timeout=15)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default=imagelib.host_arch(), choices=imagelib.ARCHES)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument(
        "--warm-build", action="store_true", help="also time a warm scripts/image/build"
    )
    args = ap.parse_args()
    print("## sizes")
    for line in sizes(args.arch):
        print(line)
    if args.warm_build:
        t0 = time.monotonic()
        subprocess.run(
            [sys.executable, str(REPO / "scripts/image/build"), "--arch", args.arch],
            check=True, capture_output=True, timeout=3600,
        )  # fmt: skip
        print(f"warm scripts/image/build --arch {args.arch}: {time.monotonic() - t0:.2f} s")
    agent = latest("agent", args.arch)
    if agent is None:
        return 1
    if args.arch != imagelib.host_arch():
        print("(the agent is run only for this machine's arch)")
        return 0
    if shutil.which("unshare") is None or os.geteuid() != 0:
        print("running the agent from the image needs root and unshare")
        return 1
    with tempfile.TemporaryDirectory(prefix=".bench.", dir=imagelib.images_dir()) as tmp:
        root = Path(tmp) / "rootfs"
        imagelib.unpack(agent.docker_path, root)
        for line in site_packages(root):
            print(line)
        script = Path(tmp) / "setup.sh"
        script.write_text(SETUP)
        print("## the agent run from the image (here: nothing to load, in-place probe)")
        once = start_to_ready(root, script, 1)[0]
        print(f"--once: verdict ready, probe ok; the process exited after {once:.2f} s")
        runs = [idle_rss(root, script) for _ in range(args.runs)]
        ready = [r for _, r in runs]
        rss = runs[-1][0]
        print(
            f"start to ready (spawn to the first check's 'ready' line): median "
            f"{statistics.median(ready):.2f} s, min {min(ready):.2f} s of {len(ready)} "
            f"(goal < {GOAL_READY_S} s to published-ready)"
        )
        verdict = "met" if rss < GOAL_RSS_MB else "NOT met"
        print(f"idle RSS 3 s after ready: {rss:.1f} MB (goal < {GOAL_RSS_MB} MB: {verdict})")
    pod = imagelib.images_dir().parent / "node" / "agent-pod-figures.json"
    print("## in a real pod (node suite)")
    print(pod.read_text().strip() if pod.exists() else f"no figures yet ({pod})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
