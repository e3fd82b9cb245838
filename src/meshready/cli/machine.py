"""Which machine a local ``check`` looked at, and whether it is a Kubernetes node at all.

A workstation with a kernel that has netfilter built in says READY about itself; that is true and
useless for a cluster. So the report names the machine, and warns when nothing on it looks like a
kubelet (its state directory, its config, or a running kubelet process).
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from meshready.host.root import HostRoot

# Where kubelets keep their state and configuration: kubeadm, EKS/OKE/GKE/AKS images
# (/var/lib/kubelet), k3s/RKE2 (/var/lib/rancher/*/agent), kubeadm configs (/etc/kubernetes).
KUBELET_PATHS = (
    "/var/lib/kubelet/config.yaml",
    "/var/lib/kubelet/kubeconfig",
    "/etc/kubernetes/kubelet.conf",
    "/etc/kubernetes/kubelet/kubelet-config.json",
    "/var/lib/rancher/k3s/agent",
    "/var/lib/rancher/rke2/agent",
    "/var/lib/kubelet/pods",
)
# Set by `check node/NAME`'s pod (cluster.node_pod) to the node's name (the downward API).
ON_NODE_ENV = "MESHREADY_NODE_NAME"
# uname -r suffixes that name the architecture: Red Hat family (.x86_64, .aarch64, el8uek.aarch64
# on Oracle Linux's UEK), Debian (-amd64, -arm64), SUSE and others (.ppc64le, .s390x).
_ARCH_SUFFIX = re.compile(
    r"[.-](?P<arch>x86_64|aarch64|amd64|arm64|ppc64le|s390x|armv7hl|i686)(\+\S*)?$"
)
_ARCH_NAME = {"amd64": "x86_64", "arm64": "aarch64"}


def arch_from_release(release: str | None) -> str | None:
    """The architecture a kernel release names (``5.15.0-100.el8uek.aarch64`` -> aarch64)."""
    if not release:
        return None
    m = _ARCH_SUFFIX.search(release.strip())
    return _ARCH_NAME.get(m["arch"], m["arch"]) if m else None


class Where(StrEnum):
    """Where a check looked (the JSON's ``machine.how``); the next steps depend on it."""

    LIVE = "live"  # this machine's running kernel
    HOST_ROOT = "host-root"  # a root filesystem mounted here (--host-root)
    OFFLINE = "offline"  # files copied from a node (--lsmod, --kernel-release ...)
    NODE = "node"  # a cluster's node, from a workstation (check node/NAME)


@dataclass(frozen=True)
class Machine:
    how: Where  # live | host-root | offline
    name: str  # hostname, host root path, or the lsmod file
    kubernetes_node: bool | None  # None: cannot tell (offline)
    evidence: str  # why we think so

    def title(self) -> str:
        if self.how is Where.LIVE:
            return f"this machine ({self.name})"
        if self.how is Where.HOST_ROOT:
            return f"the host root at {self.name}"
        return f"offline data ({self.name})"

    def to_dict(self) -> dict[str, object]:
        return {
            "how": self.how.value,
            "name": self.name,
            "kubernetes_node": self.kubernetes_node,
            "evidence": self.evidence,
        }


def _kubelet_running() -> bool:
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text(errors="replace").strip() in ("kubelet", "k3s-agent", "k3s-server"):
                return True
        except OSError:
            continue
    return False


def kubelet_evidence(root: HostRoot, live: bool) -> str | None:
    for path in KUBELET_PATHS:
        if root.path(path).exists():
            return path
    if live and _kubelet_running():
        return "a kubelet process"
    return None


def describe_machine(host_root: Path | None, offline_source: str | None) -> Machine:
    if offline_source is not None:
        return Machine(Where.OFFLINE, offline_source, None, "offline data")
    # In a pod (the agent's, or the one `check node/NAME` starts): the kubelet sets this in every
    # container, whatever the pod's enableServiceLinks says.
    in_pod = bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
    node = os.environ.get(ON_NODE_ENV, "")
    if host_root is not None:
        if node:
            return Machine(
                Where.HOST_ROOT, f"{host_root} of node {node}", True, "a pod on the node"
            )
        if in_pod:
            return Machine(Where.HOST_ROOT, str(host_root), True, "a pod on the node")
        found = kubelet_evidence(HostRoot(host_root), live=False)
        return Machine(
            Where.HOST_ROOT, str(host_root), found is not None, found or "no kubelet files"
        )
    found = kubelet_evidence(HostRoot(), live=True)
    name = socket.gethostname()
    return Machine(Where.LIVE, name, found is not None, found or "no kubelet files or process")
