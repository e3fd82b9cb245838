"""Issue 15 item 4 in the guest: the real agent image, run as containers with runc and the
DaemonSet's security contexts, makes the node ready for a mesh's pod.

Run by tests/vm/test_image_container_vm.py with autoload off. The extra initramfs piece
(scripts/image/vmpiece.py) holds the image's root filesystem at /meshready-vm/image/rootfs and
Debian's runc; the payload (the working directory) holds OCI configs the host made from
containerd's own spec and `meshready render manifests`, and scenario.json:

  agent_pod   {"init": [container...], "main": container}: the DaemonSet's pod, its init
              containers in order (each must exit 0), then the agent with --once --no-cluster
  nocap       the container that holds CAP_SYS_MODULE, without it (and containerd's profile for that)
  mesh_init   a mesh's init container (istio-init's context), the rules at /rules
  container = {"name", "config": "configs/NAME.json", "cap_eff": "<hex>"}

A pod is a network namespace with loopback up (the sandbox) and one directory per emptyDir
volume, shared by its containers; each container runs with `runc run --no-pivot` (the guest's root
is the initramfs, where pivot_root cannot work).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mrguest import Report, sh, tail

WORK = Path.cwd()
IMAGE_ROOT = Path("/meshready-vm/image/rootfs")
BUNDLES = Path("/run/bundles")
PODS = Path("/run/pods")
MODULES_LOAD = Path("/etc/modules-load.d")
PERSISTED = MODULES_LOAD / "meshready.conf"


def loaded() -> set[str]:
    return {line.split()[0] for line in Path("/proc/modules").read_text().splitlines()}


class Pod:
    """A pod sandbox: a network namespace with loopback up and its emptyDir directories."""

    count = 0

    def __init__(self, name: str) -> None:
        Pod.count += 1
        self.name = f"{name}-{Pod.count}"
        self.netns = f"pod{Pod.count}"
        self.dir = PODS / self.name
        self.dir.mkdir(parents=True)
        sh(["ip", "netns", "add", self.netns])
        sh(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        self.n = 0

    def run(
        self, container: dict[str, Any], args: list[str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run CONTAINER (its own argv unless ARGS) in this pod; runc's result is the
        container's."""
        self.n += 1
        cid = f"{self.name}-{container['name']}-{self.n}"
        spec: dict[str, Any] = json.loads((WORK / container["config"]).read_text())
        if args is not None:
            spec["process"]["args"] = args
        spec["root"] = {"path": str(IMAGE_ROOT), "readonly": spec["root"].get("readonly", True)}
        spec["linux"]["cgroupsPath"] = f"/meshready/{cid}"
        spec["linux"]["namespaces"] = [
            {"type": "network", "path": f"/run/netns/{self.netns}"}
            if ns["type"] == "network"
            else ns
            for ns in spec["linux"]["namespaces"]
        ]
        for m in spec["mounts"]:
            if m.get("source", "").startswith("emptydir:"):
                d = self.dir / "volumes" / m["source"].split(":", 1)[1]
                d.mkdir(parents=True, exist_ok=True)
                m["source"] = str(d)
        bundle = BUNDLES / cid
        bundle.mkdir(parents=True)
        (bundle / "config.json").write_text(json.dumps(spec))
        t0 = time.monotonic()
        try:
            return subprocess.run(
                ["runc", "--root", "/run/runc", "run", "--no-pivot", "--bundle", str(bundle), cid],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        finally:
            sh(["runc", "--root", "/run/runc", "delete", "--force", cid])
            print(f"# {cid}: {time.monotonic() - t0:.1f}s", flush=True)

    def close(self) -> None:
        sh(["ip", "netns", "delete", self.netns])


def one_container(
    container: dict[str, Any], args: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    pod = Pod(container["name"])
    try:
        return pod.run(container, args)
    finally:
        pod.close()


STATUS = (
    "grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status;"
    " touch /written 2>&1 && echo ROOT-WRITABLE; true"
)


def check_context(r: Report, container: dict[str, Any]) -> None:
    """The container really runs with its securityContext."""
    res = one_container(container, ["sh", "-c", STATUS])
    fields = {
        k: v.strip()
        for k, v in (line.split(":", 1) for line in res.stdout.splitlines() if ":\t" in line)
    }
    name = container["name"]
    want = container["cap_eff"]
    r.check(
        f"context/{name}/capabilities",
        all(fields.get(k) == want for k in ("CapEff", "CapBnd", "CapPrm")),
        f"expected CapEff/CapBnd/CapPrm {want}",
        describe(res),
    )
    r.check(f"context/{name}/seccomp-filter", fields.get("Seccomp") == "2", "no seccomp filter",
            describe(res))  # fmt: skip
    r.check(f"context/{name}/no-new-privs", fields.get("NoNewPrivs") == "1", "NoNewPrivs unset",
            describe(res))  # fmt: skip
    r.check(
        f"context/{name}/read-only-root",
        "ROOT-WRITABLE" not in res.stdout and "Read-only file system" in res.stdout,
        "the root filesystem is writable",
        describe(res),
    )


def describe(res: subprocess.CompletedProcess[str]) -> str:
    return f"exit {res.returncode}\n--- stdout ---\n{tail(res.stdout, 30)}\n--- stderr ---\n{tail(res.stderr, 30)}"


def main() -> int:
    r = Report()
    scenario: dict[str, Any] = json.loads((WORK / "scenario.json").read_text())
    rules = f"/rules/{scenario['rules']}"
    agent_pod = scenario["agent_pod"]
    mesh_init = scenario["mesh_init"]
    os.makedirs("/sys/fs/cgroup", exist_ok=True)
    if not Path("/sys/fs/cgroup/cgroup.controllers").exists():
        sh(["mount", "-t", "cgroup2", "cgroup2", "/sys/fs/cgroup"])
    MODULES_LOAD.mkdir(parents=True, exist_ok=True)
    PERSISTED.unlink(missing_ok=True)
    r.check("setup/runc", sh(["runc", "--version"]).returncode == 0, "runc does not run")
    r.check(
        "setup/autoload-off",
        Path("/proc/sys/kernel/modprobe").read_text().strip() == "/nonexistent/modprobe",
        "kernel.modprobe is not switched off",
    )
    base = loaded()
    r.note(f"modules loaded at start: {len(base)}")

    # Before: the mesh's init container cannot install its rules.
    before = one_container(mesh_init, ["iptables-legacy-restore", rules])
    r.check(
        "before/pod-legacy-fails",
        before.returncode != 0 and "unable to initialize table 'nat'" in before.stderr,
        "expected iptables-legacy-restore to fail with: unable to initialize table 'nat'",
        describe(before),
    )

    for container in [*agent_pod["init"], agent_pod["main"]]:
        check_context(r, container)

    # Without CAP_SYS_MODULE (and containerd's profile for that) nothing can be loaded.
    nocap = one_container(scenario["nocap"])
    # (The init container exits 0 either way, so that the pod starts and the agent reports.)
    r.check(
        "nocap/nothing-loaded",
        "operation not permitted" in nocap.stdout + nocap.stderr
        and loaded() == base
        and not PERSISTED.exists(),
        "expected EPERM ('operation not permitted'), no module loaded, nothing persisted",
        describe(nocap) + f"\nnewly loaded: {sorted(loaded() - base)}",
    )

    # The DaemonSet's pod: init containers (the loader: finit_module, persist), then the agent
    # (--once --no-cluster: the in-place probe, the verdict).
    pod = Pod("meshready-agent")
    try:
        for init in agent_pod["init"]:
            res = pod.run(init)
            r.check(f"agent/init/{init['name']}", res.returncode == 0,
                    "the init container failed", describe(res))  # fmt: skip
        agent = pod.run(agent_pod["main"])
    finally:
        pod.close()
    result: dict[str, Any] = {}
    with contextlib.suppress(ValueError):
        result = json.loads(agent.stdout)
    r.check(
        "agent/exit-0", agent.returncode == 0, "the agent did not report ready", describe(agent)
    )
    r.check("agent/ready", result.get("ready") is True, "the result is not ready",
            json.dumps(result, indent=1)[:3000])  # fmt: skip
    new = loaded() - base
    r.note(f"modules loaded in the pod: {' '.join(sorted(new))}")
    r.check(
        "agent/loaded",
        {"ip_tables", "iptable_nat", "xt_REDIRECT"} <= new,
        f"modules newly loaded: {sorted(new)}",
    )
    text = PERSISTED.read_text() if PERSISTED.exists() else ""
    persisted = {w for line in text.splitlines() if not line.startswith("#") for w in line.split()}
    r.check(
        "agent/persisted",
        {"ip_tables", "iptable_nat", "xt_REDIRECT"} <= persisted,
        f"{PERSISTED}: {text or 'missing'}",
    )
    probe = result.get("probe")
    r.check("agent/probe", isinstance(probe, dict) and probe.get("ok") is True,
            "the in-place probe did not pass", json.dumps(probe, indent=1)[:2000])  # fmt: skip

    # After: the same init container installs the mesh's rules.
    after = one_container(
        mesh_init, ["sh", "-c", f"iptables-legacy-restore {rules} && iptables-legacy-save -t nat"]
    )
    r.check(
        "after/pod-legacy-applies",
        after.returncode == 0 and "REDIRECT" in after.stdout,
        "iptables-legacy-restore still fails",
        describe(after),
    )
    return r.finish()


if __name__ == "__main__":
    sys.exit(main())
