"""Where host paths are resolved: the one place that joins a host root and a host path.

Files on disk (``/lib/modules``, ``/etc``, ``/boot``) come from the host root, which is ``/`` on the
node itself and e.g. ``/host`` in the agent's pod. The kernel's own views (``/proc``, ``/sys``) are
the running kernel's in either case: a pod shares the node's kernel, and ``/proc/modules`` is not
namespaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HostRoot:
    root: Path = Path("/")
    proc: Path = Path("/proc")
    sys: Path = Path("/sys")

    def path(self, host_path: str) -> Path:
        """A host filesystem path (absolute, as on the node) under the root."""
        if not host_path.startswith("/"):
            raise ValueError(f"host paths are absolute: {host_path!r}")
        if host_path.startswith(("/proc/", "/sys/")) or host_path in ("/proc", "/sys"):
            base = self.proc if host_path.startswith("/proc") else self.sys
            rest = host_path.split("/", 2)[2] if host_path.count("/") >= 2 else ""
            return base / rest
        return self.root / host_path.lstrip("/")

    @property
    def is_live(self) -> bool:
        return self.root == Path("/")

    def describe(self) -> str:
        return "live" if self.is_live else f"host-root:{self.root}"
