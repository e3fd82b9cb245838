"""The netns mode: the rules applied in a throwaway network namespace, in a forked child.

The child enters a new network namespace, brings ``lo`` up, makes a veth pair (``mr0``
192.0.2.1/24, peer ``mr1``) so that outbound traffic leaves through a real interface as it does in
a pod, applies the rules, and checks the connections. The namespace, and with it every rule,
disappears with the child; the child's process group is killed on timeout.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import select
import signal
import subprocess
import time
from typing import NoReturn

from meshready.actions.libc import libc
from meshready.actions.probe.connect import check_connections, listen
from meshready.actions.probe.result import ModeReport, ProbeFailure
from meshready.actions.probe.rules import RuleText, candidate_ports
from meshready.actions.probe.tools import apply_command, find_binary, run_apply
from meshready.actions.probe_targets import ProbeTarget
from meshready.knowledge.requests import Backend

CLONE_NEWNET = 0x40000000  # include/uapi/linux/sched.h

APP_ADDR = "192.0.2.2"  # TEST-NET-1, on-link through mr0 (never a local address)
VETH_SETUP = """link set lo up
link add mr0 type veth peer name mr1
addr add 192.0.2.1/24 dev mr0
link set mr1 up
link set mr0 up
"""


def _unshare_net() -> None:
    if libc().unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise ProbeFailure(
            f"cannot create a network namespace: {os.strerror(err)} (netns mode needs root with "
            "CAP_SYS_ADMIN; use --mode inplace with only CAP_NET_ADMIN)"
        )


def _netns_child(
    texts: list[RuleText],
    backend: Backend,
    target: ProbeTarget,
    ports: list[int],
    timeout: float,
    wfd: int,
) -> NoReturn:  # pragma: no cover - runs in the forked child (measured by tests/netns)
    out = ModeReport()
    try:
        os.setpgid(0, 0)
        _unshare_net()
        ip = find_binary("ip")
        proc = subprocess.run(
            [ip, "-batch", "-"], input=VETH_SETUP, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            raise ProbeFailure(
                "cannot set up the probe namespace (lo and a veth pair): "
                + " ".join(proc.stderr.split())[:300]
            )
        out.steps.append("namespace: lo up, veth mr0 192.0.2.1/24")
        for rt in texts:
            run_apply(apply_command(rt, backend), rt.text, rt.source)
            out.applied.append(rt.source)
        out.steps.append(f"applied {len(texts)} rule file(s) with {backend.value}")
        listeners = {port: listen(port) for port in ports}
        dports = [target.dport, *(p for p in candidate_ports(texts) if p != target.dport)]
        check = check_connections(
            listeners,
            [(APP_ADDR, p) for p in dports[:8]],
            target,
            (target.app_uid, target.app_gid),
            timeout,
        )
        out.record(check)
    except ProbeFailure as exc:
        out.error = str(exc)
    except BaseException as exc:
        out.error = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(BaseException):
            os.write(wfd, out.to_json().encode())
        os._exit(0)


def run_netns(
    texts: list[RuleText], backend: Backend, target: ProbeTarget, ports: list[int], timeout: float
) -> ModeReport:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        _netns_child(texts, backend, target, ports, min(timeout / 3, 8.0), w)
    os.close(w)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)
    deadline = time.monotonic() + timeout
    data = b""
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([r], [], [], left)
            if not ready:
                timed_out = True
                break
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    if timed_out:
        return ModeReport(error=f"the probe did not finish within {timeout:.0f} s (killed)")
    try:
        report = json.loads(data.decode() or "{}")
    except ValueError:
        return ModeReport(error="the probe child reported nothing readable")
    if not report:
        return ModeReport(error="the probe child exited without a report")
    if not isinstance(report, dict):
        return ModeReport(error="the probe child reported nothing readable")
    return ModeReport.from_json(report)
