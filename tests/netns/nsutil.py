"""Helpers for the netns tests: run a function in a throwaway network namespace, snapshot rules."""

from __future__ import annotations

import contextlib
import ctypes
import os
import pickle
import re
import shutil
import subprocess
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
BINARIES = (
    "iptables-legacy-restore", "iptables-legacy-save", "ip6tables-legacy-restore",
    "ip6tables-legacy-save", "iptables-nft-restore", "iptables-nft-save",
    "ip6tables-nft-restore", "ip6tables-nft-save", "nft", "ip",
)  # fmt: skip


def require_root_and_binaries() -> None:
    """These tests need root and the real binaries: fail loudly without them, never skip."""
    assert os.geteuid() == 0, "tests/netns need root (network namespaces, real iptables and nft)"
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [b for b in BINARIES if shutil.which(b, path=path) is None]
    assert not missing, (
        f"missing binaries for tests/netns: {missing} (apt-get install iptables nftables iproute2)"
    )


def in_netns(func: Callable[[], T], timeout: float = 60) -> T:
    """``func()`` in a forked child inside a new network namespace (lo up); its result or error."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
            payload = pickle.dumps(("ok", func()))
        except BaseException:
            payload = pickle.dumps(("error", traceback.format_exc()))
        with contextlib.suppress(OSError):
            os.write(w, payload)
        os._exit(0)
    os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as fh:
        while chunk := fh.read(65536):
            chunks.append(chunk)
    os.waitpid(pid, 0)
    status, value = pickle.loads(b"".join(chunks))
    if status != "ok":
        raise AssertionError(f"in the test namespace:\n{value}")
    return value  # type: ignore[no-any-return]


def snapshot() -> dict[str, str]:
    """Every ruleset of this namespace, counters zeroed, comments dropped."""
    out = {}
    for argv in (
        ["iptables-legacy-save"], ["ip6tables-legacy-save"], ["iptables-nft-save"],
        ["ip6tables-nft-save"], ["nft", "list", "ruleset"],
    ):  # fmt: skip
        proc = subprocess.run(argv, capture_output=True, text=True, check=True)
        text = "\n".join(ln for ln in proc.stdout.splitlines() if not ln.startswith("#"))
        text = re.sub(r"\[\d+:\d+\]", "[0:0]", text)
        text = re.sub(r"counter packets \d+ bytes \d+", "counter", text)
        out[argv[0]] = text
    return out


def apply(argv: list[str], text: str) -> None:
    subprocess.run(argv, input=text, text=True, check=True, capture_output=True)


def descendants_of(pgid: int, settle: float = 2.0) -> list[int]:
    """Live (not zombie) processes in process group ``pgid``, after up to ``settle`` seconds."""
    deadline = time.monotonic() + settle
    while True:
        found = _group(pgid)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _group(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
                pids.append(int(entry))
    return pids


def children_of(pid: int) -> set[int]:
    """Child processes of ``pid``, zombies included (from /proc/*/stat's parent field)."""
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses; split after the last ")".
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            out.add(int(entry))
    return out
