"""Paste what the CLI printed into a real shell, in a temporary root, and see what it did.

The root is a directory with Debian's /bin/sh (dash, with the libraries it links) and a static
busybox for the utilities (tee, cat, base64, ...), run with chroot (as root, or in a user
namespace otherwise), so a fix that writes /etc/modules-load.d/meshready.conf writes the root's
copy. (busybox's own sh is not used: it runs its applets before PATH, so shims would not work.) ``sudo`` runs its arguments; ``modprobe``, ``kubectl``, ``meshready``, ``curl``
and ``bash`` are recording shims (modprobe appends its arguments to /var/log/calls).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

BUSYBOX = Path("/bin/busybox")
DASH = Path("/bin/dash")
SHIMS = {
    "sudo": 'exec "$@"\n',
    "modprobe": 'echo "modprobe $*" >> /var/log/calls\n',
    "kubectl": 'echo "kubectl $*" >> /var/log/calls\n',
    "meshready": 'echo "meshready $*" >> /var/log/calls\n',
    # The OKE bootstrap fetches Oracle's init script: here, one that records that it ran.
    "curl": 'echo "curl $*" >> /var/log/calls; echo "echo oke-init ran >> /var/log/calls" | base64\n',
    "bash": 'exec /bin/sh "$@"\n',
    # GNU spelling (OKE nodes run Oracle Linux's coreutils) on busybox's applet.
    "base64": '[ "$1" = --decode ] && { shift; exec busybox base64 -d "$@"; }\nexec busybox base64 "$@"\n',
}


@dataclass
class Root:
    path: Path

    def file(self, name: str) -> bytes:
        return (self.path / name.lstrip("/")).read_bytes()

    def calls(self) -> list[str]:
        log = self.path / "var/log/calls"
        return log.read_text().splitlines() if log.exists() else []

    def run(self, text: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """TEXT on the standard input of `sh -e`, as a paste into a terminal is."""
        chroot = shutil.which("chroot") or "/usr/sbin/chroot"
        unshare = shutil.which("unshare") or "/usr/bin/unshare"
        prefix = [] if os.geteuid() == 0 else [unshare, "--user", "--map-root-user"]
        argv = [*prefix, chroot, str(self.path), "/bin/sh", "-e"]
        shell_env = {"PATH": "/shims:/bin", "HOME": "/root", **(env or {})}
        return subprocess.run(
            argv, input=text, capture_output=True, text=True, env=shell_env, timeout=30, check=False
        )


def make_root(tmp: Path) -> Root:
    if not BUSYBOX.is_file():
        pytest.fail(f"{BUSYBOX} missing: bash scripts/install-test-deps (busybox-static)")
    if not DASH.is_file():
        pytest.fail(f"{DASH} missing (Debian's dash package)")
    for d in ("bin", "shims", "etc/modules-load.d", "var/log", "var/run", "tmp", "root", "dev"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, tmp / "bin/busybox")
    shutil.copy2(DASH, tmp / "bin/sh")
    for lib in _libraries(DASH):
        target = tmp / str(lib).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(lib, target)
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = tmp / "bin" / applet
        if applet not in ("busybox", "sh", *SHIMS) and not link.exists():
            link.symlink_to("busybox")
    (tmp / "dev/null").write_bytes(b"")  # no device nodes in a user namespace: a plain file
    for name, body in SHIMS.items():
        shim = tmp / "shims" / name
        shim.write_text("#!/bin/sh\n" + body)
        shim.chmod(0o755)
    return Root(tmp)


def _libraries(binary: Path) -> list[Path]:
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True).stdout
    return [Path(p) for p in re.findall(r"(/\S+) \(0x", out)]


_HEADING = re.compile(r":$")


def command_blocks(text: str) -> list[str]:
    """Every pasteable block: after a line ending in ':' and a blank line, the lines up to the
    next blank line (the layout of cli.output.print_commands)."""
    lines = text.split("\n")
    blocks = []
    i = 0
    while i < len(lines) - 2:
        if _HEADING.search(lines[i]) and lines[i + 1] == "" and lines[i + 2].strip():
            j = i + 2
            while j < len(lines) and lines[j] != "":
                j += 1
            blocks.append("\n".join(lines[i + 2 : j]) + "\n")
            i = j
        else:
            i += 1
    return blocks
