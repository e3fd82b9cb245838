"""Test connections: listeners, connections made as another uid or mark, SO_ORIGINAL_DST."""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import socket
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

from meshready.actions.libc import libc
from meshready.actions.probe.result import ConnectionCheck
from meshready.actions.probe_targets import ProbeTarget

SO_ORIGINAL_DST = 80  # include/uapi/linux/netfilter_ipv4.h, at level SOL_IP
SOL_IP = 0
SO_MARK = 36  # include/uapi/asm-generic/socket.h
PR_SET_PDEATHSIG = 1  # include/uapi/linux/prctl.h


def original_dst(conn: socket.socket) -> tuple[str, int]:
    raw = conn.getsockopt(SOL_IP, SO_ORIGINAL_DST, 16)
    port, addr = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(addr), port


def listen(port: int, host: str = "0.0.0.0") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(16)
    sock.setblocking(False)
    return sock


@dataclass
class _Attempt:
    pid: int
    fd: int


def _start_connect(
    addr: tuple[str, int],
    timeout: float,
    uid: int | None = None,
    gid: int | None = None,
    mark: int | None = None,
) -> _Attempt:
    """Connect from a forked child as ``uid``/``gid`` (and/or with SO_MARK); it reports one line."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        report = "error"
        try:
            libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            sock_mark = None
            if gid is not None:
                os.setgroups([])
                os.setgid(gid)
            if uid is not None:
                os.setuid(uid)  # before socket(): owner matching uses the socket's creator
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if mark is not None:
                sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
                sock_mark = mark
            sock.settimeout(timeout)
            try:
                sock.connect(addr)
                report = f"connected {sock.getsockname()[1]} {sock_mark}"
            except TimeoutError:
                report = "timeout"
            except OSError as exc:
                report = f"refused {errno.errorcode.get(exc.errno or 0, exc.errno)}"
            os.write(w, report.encode())
            time.sleep(0.05)
            sock.close()
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.write(w, f"error {type(exc).__name__}: {exc}".encode())
        finally:
            os._exit(0)
    os.close(w)
    return _Attempt(pid, r)


def _finish(attempt: _Attempt, deadline: float) -> str:
    report = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([attempt.fd], [], [], left)
        if not ready:
            break
        chunk = os.read(attempt.fd, 4096)
        if not chunk:
            break
        report += chunk
    os.close(attempt.fd)
    with contextlib.suppress(ProcessLookupError):
        os.kill(attempt.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(attempt.pid, 0)
    return report.decode(errors="replace") or "no report"


def _accept_any(
    listeners: dict[int, socket.socket], deadline: float
) -> tuple[int, socket.socket] | None:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select(list(listeners.values()), [], [], left)
        for sock in ready:
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                continue
            port = next(p for p, s in listeners.items() if s is sock)
            return port, conn


def check_connections(
    listeners: dict[int, socket.socket],
    app_addrs: Sequence[tuple[str, int]],
    target: ProbeTarget,
    app_ids: tuple[int | None, int | None],
    timeout: float,
    proxy_dest: dict[int, socket.socket] | None = None,
) -> ConnectionCheck:
    """An application connection must land on a listener with SO_ORIGINAL_DST equal to where it
    went; the proxy's, to the same place, must not.

    ``app_addrs``: destinations tried at once, the preferred first (rules may capture only some
    ports). ``proxy_dest``: a listener standing for the real destination (inplace mode), which the
    proxy's connection must reach; without it (netns mode), "not redirected" means no listener got it.
    """
    result = ConnectionCheck()
    started = time.monotonic()
    attempts = [_start_connect(a, timeout, uid=app_ids[0], gid=app_ids[1]) for a in app_addrs]
    deadline = started + timeout
    seen: list[tuple[int, tuple[str, int]]] = []  # (listener port, original destination)
    latency = timeout
    while len(seen) < len(app_addrs):
        got = _accept_any(listeners, deadline)
        if got is None:
            break
        port, conn = got
        with conn:
            seen.append((port, original_dst(conn)))
        if seen[-1][1] == app_addrs[0]:
            break
        if len(seen) == 1:
            # the preferred destination, if redirected at all, arrives about as fast as this one
            latency = time.monotonic() - started
            deadline = min(deadline, time.monotonic() + max(0.3, 10 * latency))
    if seen:
        latency = min(latency, time.monotonic() - started)
    reports = [_finish(a, time.monotonic() + 1.0) for a in attempts]
    matched = [(p, d) for p, d in seen if d in app_addrs]
    matched.sort(key=lambda pd: app_addrs.index(pd[1]))
    app_addr = matched[0][1] if matched else app_addrs[0]
    if matched:
        port, (dst_ip, dst_port) = matched[0]
        result.redirected = True
        result.original_dst = f"{dst_ip}:{dst_port}"
        result.redirect_port = port
    elif seen:
        port, (dst_ip, dst_port) = seen[0]
        result.original_dst = f"{dst_ip}:{dst_port}"
        result.notes.append(
            f"a connection reached :{port} with original destination {result.original_dst}, "
            "not where it was sent"
        )
    else:
        tried = ", ".join(f"{a}:{p} ({r})" for (a, p), r in zip(app_addrs, reports, strict=True))
        result.notes.append(f"no application connection was redirected: {tried}")
        return result
    if not target.has_proxy:
        result.notes.append("no proxy identity known: the bypass was not checked (--proxy-uid)")
        return result
    # A redirected connection completes on loopback about as fast as the application's did; one
    # that is not redirected leaves through mr0 to an address nobody answers. Wait well beyond the
    # application's latency, bounded.
    proxy_timeout = min(timeout, 1.5, max(0.3, 10 * latency))
    _drain(listeners)  # application connections that arrived late must not count as the proxy's
    proxy = _start_connect(
        app_addr,
        proxy_timeout,
        uid=target.proxy_uid,
        gid=target.proxy_gid,
        mark=target.proxy_mark if target.proxy_uid is None else None,
    )
    if proxy_dest is not None:
        reached = _accept_any(proxy_dest, time.monotonic() + proxy_timeout)
        if reached is not None:
            reached[1].close()
        redirected = _redirected_to(listeners, app_addr, time.monotonic() + 0.05)
        report = _finish(proxy, time.monotonic() + 1.0)
        result.proxy_bypassed = reached is not None and not redirected
        if not result.proxy_bypassed:
            result.notes.append(f"proxy ({target.describe_proxy()}) connection: {report}")
        return result
    redirected = _redirected_to(listeners, app_addr, time.monotonic() + proxy_timeout)
    report = _finish(proxy, time.monotonic() + 1.0)
    if report.startswith("error"):
        result.notes.append(f"proxy ({target.describe_proxy()}) connection: {report}")
        result.proxy_bypassed = None
    elif redirected or report.startswith("connected"):
        result.proxy_bypassed = False
        result.notes.append(f"the proxy's ({target.describe_proxy()}) connection was redirected")
    else:
        result.proxy_bypassed = True
    return result


def _drain(listeners: dict[int, socket.socket]) -> None:
    while (got := _accept_any(listeners, time.monotonic() + 0.01)) is not None:
        got[1].close()


def _redirected_to(
    listeners: dict[int, socket.socket], addr: tuple[str, int], deadline: float
) -> bool:
    """Whether a connection originally sent to ``addr`` reaches a listener before ``deadline``."""
    while (got := _accept_any(listeners, deadline)) is not None:
        with got[1] as conn:
            if original_dst(conn) == addr:
                return True
    return False
