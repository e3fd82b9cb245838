"""The probe: apply the rules for real and prove that interception works. The ground truth for ready.

Two modes (docs/fix.md has the design):

``netns`` (root with CAP_SYS_ADMIN, e.g. ``meshready probe`` on a node): a forked child enters a new
network namespace, brings ``lo`` up, makes a veth pair (``mr0`` 192.0.2.1/24, peer ``mr1``) so that
outbound traffic leaves through a real interface as it does in a pod, and applies the rules with
the mesh's backend binary (``iptables-legacy-restore``, ``iptables-nft-restore`` and their ip6
twins, or ``nft -f``). The iptables binaries get ``--modprobe`` pointing nowhere, as in a pod where
modprobe cannot work: only the kernel's own autoload may help, exactly as for the mesh's init
container. It then listens on every port the rules REDIRECT to, connects as an application uid to
192.0.2.2:PORT and reads ``SO_ORIGINAL_DST`` on the accepted socket (redirected), and connects as
the proxy (its uid, or its mark) and checks that no listener gets that connection (bypassed). The
namespace, and with it every rule, disappears with the child; the child's process group is killed
on timeout.

``inplace`` (CAP_NET_ADMIN only, e.g. the agent in its pod): never disturbs the namespace's traffic.
The rules are loaded into chains (iptables) or tables (nft) renamed with a unique prefix and hooked
to nothing: the kernel still resolves and validates every table, match, target and expression at
insertion, which proves the modules. A live check adds one REDIRECT hooked first in nat OUTPUT but
scoped to loopback and a port the probe itself holds (and, where the rules use owner matching, to
the probe's own uid), then connects to it as above. Everything with the prefix is removed at the end
(and stale leftovers of an earlier probe at the start).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

from meshready.actions.probe_targets import ProbeTarget, target_for
from meshready.assess.plan import NeedsSpec
from meshready.boundedio import read_text
from meshready.errors import ActionError, InputError
from meshready.knowledge.iptables import BUILTIN_CHAINS
from meshready.knowledge.nftables import CHANGE_VERBS, FAMILY_NAMES, OBJECT_KINDS
from meshready.knowledge.requests import Backend, Family
from meshready.rules.load import get_profile
from meshready.rules.model import NftRuleset, XtRuleset

Mode = Literal["netns", "inplace"]
RuleKind = Literal["iptables", "ip6tables", "nft"]

SO_ORIGINAL_DST = 80  # include/uapi/linux/netfilter_ipv4.h, at level SOL_IP
SOL_IP = 0
SO_MARK = 36
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
NO_MODPROBE = "/nonexistent/meshready-probe-no-modprobe"

APP_ADDR = "192.0.2.2"  # TEST-NET-1, on-link through mr0 (never a local address)
VETH_SETUP = """link set lo up
link add mr0 type veth peer name mr1
addr add 192.0.2.1/24 dev mr0
link set mr1 up
link set mr0 up
"""
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
XT_BINARIES: dict[tuple[Backend, str], tuple[str, str]] = {
    (Backend.LEGACY, "iptables"): ("iptables-legacy-restore", "iptables-legacy-save"),
    (Backend.LEGACY, "ip6tables"): ("ip6tables-legacy-restore", "ip6tables-legacy-save"),
    (Backend.NFT, "iptables"): ("iptables-nft-restore", "iptables-nft-save"),
    (Backend.NFT, "ip6tables"): ("ip6tables-nft-restore", "ip6tables-nft-save"),
}
_INPLACE_PREFIX = re.compile(r"^MRP[0-9a-f]{4}_")
_NFT_INPLACE_PREFIX = re.compile(r"^meshready-probe-[0-9a-f]{4}")


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    redirected: bool  # an application connection was redirected (SO_ORIGINAL_DST checked)
    proxy_bypassed: bool | None  # the proxy's connection was not redirected; None: not checked
    backend: str
    duration_s: float
    detail: str
    error: str | None = None
    mode: str = "netns"
    applied: tuple[str, ...] = ()  # rule sources the kernel accepted
    original_dst: str | None = None  # what SO_ORIGINAL_DST gave on the redirected connection
    redirect_port: int | None = None  # the listener that got it
    proxy: str | None = None  # the proxy identity checked ("uid 1337", "mark 0x3/0xfff")
    steps: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration_s"] = round(self.duration_s, 3)
        return data


@dataclass(frozen=True)
class RuleText:
    source: str
    kind: RuleKind
    text: str  # iptables-restore input or an nft script


class ProbeFailure(Exception):
    """A step of the probe failed; the message is one line for the user."""


# --------------------------------------------------------------------------- rules


def rule_texts(spec: NeedsSpec) -> list[RuleText]:
    """The rules behind ``spec`` as text, each with the syntax to apply it with."""
    texts: list[str] = []
    if spec.profile is not None:
        profile = get_profile(spec.profile)
        texts = [profile.read(f) for f in profile.files]
    else:
        for source in spec.rules:
            texts.append(read_text(source, errors="strict"))
    out: list[RuleText] = []
    for ruleset, text in zip(spec.rulesets, texts, strict=True):
        if isinstance(ruleset, NftRuleset):
            out.append(RuleText(ruleset.source, "nft", text))
        else:
            kind: RuleKind = "ip6tables" if ruleset.family is Family.IPV6 else "iptables"
            out.append(RuleText(ruleset.source, kind, to_restore(text, ruleset)))
    return out


_XT_PROGRAMS = (
    "iptables",
    "ip6tables",
    "iptables-legacy",
    "ip6tables-legacy",
    "iptables-nft",
    "ip6tables-nft",
)


def _quote(token: str) -> str:
    """Quote a token the way iptables-restore reads it (double quotes only)."""
    if token and not re.search(r'[\s"\'\\]', token):
        return token
    return '"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _join(tokens: Sequence[str]) -> str:
    return " ".join(_quote(t) for t in tokens)


def to_restore(text: str, ruleset: XtRuleset | None = None) -> str:
    """iptables-restore input from ``text``; ``iptables ...`` command lines are converted."""
    lines = [ln.strip() for ln in text.splitlines()]
    commands = [ln for ln in lines if ln and not ln.startswith("#")]
    if not any(ln.split(None, 1)[0] in _XT_PROGRAMS for ln in commands):
        return text
    tables: dict[str, tuple[list[str], list[str]]] = {}
    for line in commands:
        tokens = shlex.split(line)
        if not tokens or tokens[0] not in _XT_PROGRAMS:
            source = ruleset.source if ruleset else "rules"
            raise InputError(source, f"mixes iptables commands with other lines: {line[:60]!r}")
        tokens = tokens[1:]
        table = "filter"
        cleaned: list[str] = []
        it = iter(range(len(tokens)))
        for i in it:
            tok = tokens[i]
            if tok in ("-t", "--table") and i + 1 < len(tokens):
                table = tokens[i + 1]
                next(it, None)
            elif tok in ("-w", "--wait", "-W", "--wait-interval"):
                if i + 1 < len(tokens) and tokens[i + 1].isdigit():
                    next(it, None)
            else:
                cleaned.append(tok)
        decls, rules = tables.setdefault(table, ([], []))
        if not cleaned:
            continue
        if cleaned[0] in ("-N", "--new-chain") and len(cleaned) > 1:
            decls.append(f":{cleaned[1]} - [0:0]")
        elif cleaned[0] in ("-P", "--policy"):
            continue
        else:
            rules.append(_join(cleaned))
    out: list[str] = []
    for table, (decls, rules) in tables.items():
        out += [f"*{table}", *decls, *rules, "COMMIT"]
    return "\n".join(out) + "\n"


_XT_REDIRECT = re.compile(r"-j\s+REDIRECT\b.*?--to-ports?\s+(\d+)")
_NFT_REDIRECT = re.compile(r"\bredirect\s+to\s+:?(\d+)")


def redirect_ports(texts: Sequence[RuleText]) -> list[int]:
    """Ports the rules REDIRECT to (iptables ``--to-ports``, nft ``redirect to :PORT``)."""
    ports: list[int] = []
    for rt in texts:
        pattern = _NFT_REDIRECT if rt.kind == "nft" else _XT_REDIRECT
        for line in rt.text.splitlines():
            if line.lstrip().startswith("#"):
                continue
            for match in pattern.finditer(line):
                port = int(match.group(1))
                if 0 < port < 65536 and port not in ports:
                    ports.append(port)
    return ports


_XT_DPORTS = re.compile(r"(?<![!-])--(?:dport|dports|destination-ports?)\s+([0-9,:]+)")
_NFT_DPORTS = re.compile(r"\bdport\s+(?:\{\s*([0-9,\s]+)\}|([0-9]+))")


def candidate_ports(texts: Sequence[RuleText]) -> list[int]:
    """Destination ports the rules name (``--dport``, ``--dports``, nft ``dport``): some rules
    capture only those. Ports the rules redirect to are left out."""
    targets = set(redirect_ports(texts))
    found: list[int] = []
    for rt in texts:
        for line in rt.text.splitlines():
            if line.lstrip().startswith("#") or "! --dport" in line or "dport !=" in line:
                continue
            groups: list[str] = []
            if rt.kind == "nft":
                groups = [a or b for a, b in _NFT_DPORTS.findall(line)]
            else:
                groups = _XT_DPORTS.findall(line)
            for group in groups:
                for part in re.split(r"[,\s]+", group.strip()):
                    first = part.split(":", 1)[0]
                    if first.isdigit() and 0 < int(first) < 65536:
                        port = int(first)
                        if port not in targets and port not in found:
                            found.append(port)
    return found


# --------------------------------------------------------------------------- binaries


def find_binary(name: str) -> str:
    found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:{SBIN_PATH}")
    if found is not None:
        return found
    # Some systems ship only iptables-restore; accept it when it is the variant asked for.
    if name.endswith(("-legacy-restore", "-nft-restore", "-legacy-save", "-nft-save")):
        base, variant, tail = name.rsplit("-", 2)
        plain = shutil.which(f"{base}-{tail}", path=f"{os.environ.get('PATH', '')}:{SBIN_PATH}")
        if plain is not None:
            proc = subprocess.run([plain, "--version"], capture_output=True, text=True, check=False)
            marker = "(legacy)" if variant == "legacy" else "(nf_tables)"
            if marker in proc.stdout + proc.stderr:
                return plain
    raise ProbeFailure(f"{name} not found (install the iptables/nftables package)")


def apply_command(rt: RuleText, backend: Backend, noflush: bool = False) -> list[str]:
    if rt.kind == "nft":
        return [find_binary("nft"), "-f", "-"]
    if backend is Backend.NFTABLES:
        raise ProbeFailure(f"{rt.source}: iptables rules cannot be applied with native nftables")
    restore, _ = XT_BINARIES[(backend, rt.kind)]
    argv = [find_binary(restore), "-w", "10", "-M", NO_MODPROBE]
    return [*argv, "--noflush"] if noflush else argv


def run_apply(argv: list[str], text: str, what: str) -> None:
    try:
        proc = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise ProbeFailure(f"{what}: {Path(argv[0]).name} did not finish in 60 s") from None
    if proc.returncode != 0:
        msg = " ".join((proc.stderr or proc.stdout).split()) or f"exit {proc.returncode}"
        raise ProbeFailure(f"{what}: {Path(argv[0]).name} failed: {msg[:400]}")


# --------------------------------------------------------------------------- sockets


def original_dst(conn: socket.socket) -> tuple[str, int]:
    raw = conn.getsockopt(SOL_IP, SO_ORIGINAL_DST, 16)
    port, addr = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(addr), port


def _listen(port: int, host: str = "0.0.0.0") -> socket.socket:
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


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


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
            _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
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


@dataclass
class _Check:
    redirected: bool = False
    proxy_bypassed: bool | None = None
    original_dst: str | None = None
    redirect_port: int | None = None
    notes: list[str] = field(default_factory=list)


def _check_connections(
    listeners: dict[int, socket.socket],
    app_addrs: Sequence[tuple[str, int]],
    target: ProbeTarget,
    app_ids: tuple[int | None, int | None],
    timeout: float,
    proxy_dest: dict[int, socket.socket] | None = None,
) -> _Check:
    """An application connection must land on a listener with SO_ORIGINAL_DST equal to where it
    went; the proxy's, to the same place, must not.

    ``app_addrs``: destinations tried at once, the preferred first (rules may capture only some
    ports). ``proxy_dest``: a listener standing for the real destination (inplace mode), which the
    proxy's connection must reach; without it (netns mode), "not redirected" means no listener got it.
    """
    result = _Check()
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


# --------------------------------------------------------------------------- netns mode


def _unshare_net() -> None:
    if _libc().unshare(CLONE_NEWNET) != 0:
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
    out: dict[str, Any] = {"applied": [], "steps": []}
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
        out["steps"].append("namespace: lo up, veth mr0 192.0.2.1/24")
        for rt in texts:
            run_apply(apply_command(rt, backend), rt.text, rt.source)
            out["applied"].append(rt.source)
        out["steps"].append(f"applied {len(texts)} rule file(s) with {backend.value}")
        listeners = {port: _listen(port) for port in ports}
        dports = [target.dport, *(p for p in candidate_ports(texts) if p != target.dport)]
        check = _check_connections(
            listeners,
            [(APP_ADDR, p) for p in dports[:8]],
            target,
            (target.app_uid, target.app_gid),
            timeout,
        )
        out.update(
            redirected=check.redirected,
            proxy_bypassed=check.proxy_bypassed,
            original_dst=check.original_dst,
            redirect_port=check.redirect_port,
            notes=check.notes,
        )
    except ProbeFailure as exc:
        out["error"] = str(exc)
    except BaseException as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(BaseException):
            os.write(wfd, json.dumps(out).encode())
        os._exit(0)


def _probe_netns(
    texts: list[RuleText], backend: Backend, target: ProbeTarget, ports: list[int], timeout: float
) -> dict[str, Any]:
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
        return {"error": f"the probe did not finish within {timeout:.0f} s (killed)"}
    try:
        result: dict[str, Any] = json.loads(data.decode() or "{}")
    except ValueError:
        return {"error": "the probe child reported nothing readable"}
    if not result:
        return {"error": "the probe child exited without a report"}
    return result


# --------------------------------------------------------------------------- inplace mode


def _chain_name(prefix: str, name: str) -> str:
    full = f"{prefix}_{name}"
    if len(full) <= 28:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:4]
    return f"{prefix}_{name[: 28 - len(prefix) - 6]}_{digest}"


def hide_xt(text: str, prefix: str) -> tuple[str, dict[str, list[str]]]:
    """The rules with every chain renamed under ``prefix`` and no built-in chain touched.

    Returns the restore input (for ``--noflush``) and, per table, the chains it creates.
    """
    out: list[str] = []
    created: dict[str, list[str]] = {}
    blocks: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = []
            blocks.append((line[1:].strip(), current))
        elif line == "COMMIT":
            current = None
        elif current is not None:
            current.append(line)
    for table, lines in blocks:
        declared = {ln[1:].split()[0] for ln in lines if ln.startswith(":")}
        for ln in lines:
            tokens = shlex.split(ln) if not ln.startswith(":") else []
            if len(tokens) > 1 and tokens[0] in (
                "-A",
                "--append",
                "-I",
                "--insert",
                "-N",
                "--new-chain",
            ):
                declared.add(tokens[1])
        known = declared | set(BUILTIN_CHAINS.get(table, ()))
        names = {c: _chain_name(prefix, c) for c in sorted(known)}
        chains = [names[c] for c in sorted(declared)]
        created.setdefault(table, [])
        created[table] += [c for c in chains if c not in created[table]]
        body = [f"*{table}", *(f":{c} - [0:0]" for c in chains)]
        for ln in lines:
            if ln.startswith(":"):
                continue
            tokens = shlex.split(ln)
            if not tokens or tokens[0] in (
                "-N",
                "--new-chain",
                "-P",
                "--policy",
                "-F",
                "--flush",
                "-X",
                "--delete-chain",
                "-Z",
                "--zero",
                "-E",
                "--rename-chain",
            ):
                continue
            if len(tokens) > 1 and tokens[0] in (
                "-A",
                "--append",
                "-I",
                "--insert",
                "-R",
                "--replace",
                "-D",
                "--delete",
            ):
                tokens[1] = names.get(tokens[1], tokens[1])
            for i, tok in enumerate(tokens[:-1]):
                if tok in ("-j", "--jump", "-g", "--goto") and tokens[i + 1] in names:
                    tokens[i + 1] = names[tokens[i + 1]]
            body.append(_join(tokens))
        body.append("COMMIT")
        out += body
    return "\n".join(out) + "\n", created


def hide_nft(text: str, prefix: str) -> tuple[str, list[tuple[str, str]]]:
    """The nft script with every table renamed under ``prefix`` and base chains made regular."""
    out: list[str] = []
    tables: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        tokens = line.split()
        if tokens[0] == "define":
            out.append(line)
            continue
        if tokens[0] == "table" or (line.endswith("{") and tokens[0] not in CHANGE_VERBS):
            raise ProbeFailure(
                "inplace mode takes line-oriented nft scripts (add table/chain/rule ...), "
                "not table blocks"
            )
        if len(tokens) < 3 or tokens[0] not in CHANGE_VERBS or tokens[1] not in OBJECT_KINDS:
            raise ProbeFailure(f"inplace mode cannot rewrite this nft line: {line[:60]!r}")
        pos = 3 if tokens[2] in FAMILY_NAMES else 2
        family = tokens[2] if pos == 3 else "ip"
        if len(tokens) <= pos:
            raise ProbeFailure(f"inplace mode cannot rewrite this nft line: {line[:60]!r}")
        name = f"{prefix}-{tokens[pos]}"
        tokens[pos] = name
        if pos == 2:
            tokens.insert(2, family)
        if tokens[0] in ("delete", "destroy") and tokens[1] == "table":
            continue
        if (family, name) not in tables:
            tables.append((family, name))
        rewritten = " ".join(tokens)
        if tokens[1] == "chain":
            rewritten = re.sub(r"\s*\{[^}]*\}\s*;?\s*$", "", rewritten)
        out.append(rewritten)
    return "\n".join(out) + "\n", tables


def _save_command(backend: Backend, kind: RuleKind) -> list[str]:
    _, save = XT_BINARIES[(backend, kind)]
    return [find_binary(save)]


def _xt_cleanup(backend: Backend, kind: RuleKind, pattern: re.Pattern[str]) -> list[str]:
    """Remove every chain matching ``pattern`` (and rules jumping to it) from all tables."""
    leftovers: list[str] = []
    proc = subprocess.run(_save_command(backend, kind), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return [f"{kind}-save failed: {' '.join(proc.stderr.split())[:200]}"]
    blocks: dict[str, list[str]] = {}
    table = None
    for line in proc.stdout.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            blocks[table] = []
        elif table is not None and line.strip() and line != "COMMIT" and not line.startswith("#"):
            blocks[table].append(line)
    restore = apply_command(RuleText("cleanup", kind, ""), backend, noflush=True)
    for table, lines in blocks.items():
        ours = [ln[1:].split()[0] for ln in lines if ln.startswith(":") and pattern.match(ln[1:])]
        if not ours:
            continue
        hooks = []
        for ln in lines:
            tokens = shlex.split(ln) if ln.startswith("-A") else []
            if len(tokens) > 1 and not pattern.match(tokens[1]):
                jumps = [tokens[i + 1] for i, t in enumerate(tokens[:-1]) if t in ("-j", "-g")]
                if any(pattern.match(j) for j in jumps):
                    hooks.append(_join(["-D", *tokens[1:]]))
        body = [
            f"*{table}",
            *hooks,
            *(f"-F {c}" for c in ours),
            *(f"-X {c}" for c in ours),
            "COMMIT",
        ]
        try:
            run_apply(restore, "\n".join(body) + "\n", f"cleanup of {table}")
        except ProbeFailure as exc:
            leftovers.append(str(exc))
    return leftovers


def _nft_cleanup(pattern: re.Pattern[str]) -> list[str]:
    nft = find_binary("nft")
    proc = subprocess.run([nft, "list", "tables"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return [f"nft list tables failed: {' '.join(proc.stderr.split())[:200]}"]
    leftovers = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table" and pattern.match(parts[2]):
            res = subprocess.run(
                [nft, "delete", "table", parts[1], parts[2]],
                capture_output=True,
                text=True,
                check=False,
            )
            if res.returncode != 0:
                leftovers.append(f"nft delete table {parts[1]} {parts[2]}: {res.stderr.strip()}")
    return leftovers


@contextlib.contextmanager
def _inplace_cleanup(
    backend: Backend, kinds: set[RuleKind], token: str, notes: list[str]
) -> Iterator[None]:
    mine_xt = re.compile(rf"^MRP{token}_")
    mine_nft = re.compile(rf"^meshready-probe-{token}")

    def clean(xt: re.Pattern[str], nft: re.Pattern[str]) -> list[str]:
        left: list[str] = []
        for kind in ("iptables", "ip6tables"):
            if kind in kinds:
                left += _xt_cleanup(backend, kind, xt)
        if "nft" in kinds:
            left += _nft_cleanup(nft)
        return left

    stale = clean(_INPLACE_PREFIX, _NFT_INPLACE_PREFIX)  # leftovers of a killed earlier probe
    if stale:
        notes.append("stale cleanup: " + "; ".join(stale))
    tables_before = _nft_tables() if backend is not Backend.LEGACY else None
    try:
        yield
    finally:
        left = clean(mine_xt, mine_nft)
        if tables_before is not None:
            left += _drop_new_empty_tables(tables_before)
        if left:
            notes.append("cleanup incomplete: " + "; ".join(left))


def _nft_tables() -> set[tuple[str, str]] | None:
    """(family, name) of every nf_tables table here; None without the nft binary."""
    try:
        nft = find_binary("nft")
    except ProbeFailure:
        return None
    proc = subprocess.run([nft, "list", "tables"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    return {
        (parts[1], parts[2])
        for parts in (line.split() for line in proc.stdout.splitlines())
        if len(parts) == 3 and parts[0] == "table"
    }


def _drop_new_empty_tables(before: set[tuple[str, str]]) -> list[str]:
    """Delete tables the probe made appear (iptables-nft creates them on use) that hold no rule."""
    now = _nft_tables()
    if now is None:
        return []
    nft = find_binary("nft")
    left = []
    for family, name in sorted(now - before):
        proc = subprocess.run(
            [nft, "-j", "list", "table", family, name], capture_output=True, text=True, check=False
        )
        try:
            items = json.loads(proc.stdout).get("nftables", [])
        except ValueError:
            continue
        if any(set(item) & {"rule", "set", "map", "element"} for item in items):
            continue  # someone else's rules appeared meanwhile: not ours to remove
        res = subprocess.run(
            [nft, "delete", "table", family, name], capture_output=True, text=True, check=False
        )
        if res.returncode != 0:
            left.append(f"nft delete table {family} {name}: {' '.join(res.stderr.split())}")
    return left


def _probe_inplace(
    texts: list[RuleText], backend: Backend, target: ProbeTarget, timeout: float
) -> dict[str, Any]:
    token = secrets.token_hex(2)
    xt_prefix = f"MRP{token}"
    nft_prefix = f"meshready-probe-{token}"
    out: dict[str, Any] = {"applied": [], "steps": [], "notes": []}
    live_kind: RuleKind = "nft" if backend is Backend.NFTABLES else "iptables"
    kinds: set[RuleKind] = {rt.kind for rt in texts} | {live_kind}
    uses_owner = any("--uid-owner" in rt.text or "skuid" in rt.text for rt in texts)
    try:
        with _inplace_cleanup(backend, kinds, token, out["notes"]):
            for rt in texts:
                if rt.kind == "nft":
                    script, _ = hide_nft(rt.text, nft_prefix)
                else:
                    script, _ = hide_xt(rt.text, xt_prefix)
                run_apply(apply_command(rt, backend, noflush=True), script, rt.source)
                out["applied"].append(rt.source)
            out["steps"].append(
                f"loaded {len(texts)} rule file(s) into unhooked chains with {backend.value}"
            )
            redirect_to = _listen(0, "127.0.0.1")
            real_dest = _listen(0, "127.0.0.1")
            with redirect_to, real_dest:
                lport = redirect_to.getsockname()[1]
                tport = real_dest.getsockname()[1]
                uid = os.geteuid()
                script = _live_rules(
                    backend, xt_prefix, nft_prefix, target, uid, uses_owner, tport, lport
                )
                live_rt = RuleText("live check", live_kind, script)
                run_apply(apply_command(live_rt, backend, noflush=True), script, "live check")
                out["steps"].append(f"live REDIRECT 127.0.0.1:{tport} -> :{lport} (uid {uid})")
                check_target = target
                if target.proxy_uid is not None and not _can_setuid():
                    check_target = ProbeTarget(app_uid=uid, dport=tport)
                    out["notes"].append("cannot change uid here: the proxy bypass was not checked")
                check = _check_connections(
                    {lport: redirect_to},
                    [("127.0.0.1", tport)],
                    check_target,
                    (None, None),
                    timeout,
                    proxy_dest={tport: real_dest},
                )
            out.update(
                redirected=check.redirected,
                proxy_bypassed=check.proxy_bypassed,
                original_dst=check.original_dst,
                redirect_port=check.redirect_port,
            )
            out["notes"] += check.notes
    except ProbeFailure as exc:
        out["error"] = str(exc)
    if any(n.startswith("cleanup incomplete") for n in out["notes"]) and "error" not in out:
        out["error"] = next(n for n in out["notes"] if n.startswith("cleanup incomplete"))
    return out


def _can_setuid() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return True
    match = re.search(r"^CapEff:\s*([0-9a-f]+)", status, re.M)
    return bool(match and int(match.group(1), 16) & (1 << 7))  # CAP_SETUID


def _live_rules(
    backend: Backend,
    xt_prefix: str,
    nft_prefix: str,
    target: ProbeTarget,
    uid: int,
    uses_owner: bool,
    tport: int,
    lport: int,
) -> str:
    if backend is Backend.NFTABLES:
        table = f"{nft_prefix}-live"
        scope = f"ip daddr 127.0.0.1 tcp dport {tport}"
        lines = [
            f"add table inet {table}",
            f"add chain inet {table} out {{ type nat hook output priority -150 ; }}",
        ]
        if target.proxy_uid is not None:
            lines.append(f"add rule inet {table} out {scope} meta skuid {target.proxy_uid} return")
        if target.proxy_mark is not None:
            lines.append(
                f"add rule inet {table} out {scope} meta mark & {target.proxy_mark_mask:#x} "
                f"== {target.proxy_mark:#x} return"
            )
        owner = f" meta skuid {uid}" if uses_owner else ""
        lines.append(f"add rule inet {table} out {scope}{owner} redirect to :{lport}")
        return "\n".join(lines) + "\n"
    chain = f"{xt_prefix}_LIVE"
    lines = ["*nat", f":{chain} - [0:0]"]
    if target.proxy_uid is not None:
        lines.append(f"-A {chain} -m owner --uid-owner {target.proxy_uid} -j RETURN")
    if target.proxy_mark is not None:
        lines.append(
            f"-A {chain} -m mark --mark {target.proxy_mark:#x}/{target.proxy_mark_mask:#x} -j RETURN"
        )
    owner = f" -m owner --uid-owner {uid}" if uses_owner else ""
    lines.append(f"-A {chain} -p tcp{owner} -j REDIRECT --to-ports {lport}")
    lines.append(f"-I OUTPUT 1 -o lo -d 127.0.0.1/32 -p tcp -m tcp --dport {tport} -j {chain}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- entry point


def probe(
    spec: NeedsSpec,
    backend: Backend | str | None = None,
    mode: Mode = "netns",
    *,
    timeout: float = 30.0,
    proxy_uid: int | None = None,
    target: ProbeTarget | None = None,
) -> ProbeResult:
    """Apply ``spec``'s rules for real with ``backend`` (default: the spec's) and check redirection.

    Never raises for a failing check: the result says what failed (``ok`` False, ``error``).
    Raises InputError for unusable input (unknown mode, rules that cannot be applied this way).
    """
    started = time.monotonic()
    chosen = Backend(backend) if backend is not None else spec.backend
    if mode not in ("netns", "inplace"):
        raise InputError("--mode", f"unknown probe mode {mode!r} (netns or inplace)")
    texts = rule_texts(spec)
    tgt = target or target_for(spec.profile, [t.text for t in texts], proxy_uid)
    ports = redirect_ports(texts)
    if not ports and mode == "netns":
        return ProbeResult(
            ok=False,
            redirected=False,
            proxy_bypassed=None,
            backend=chosen.value,
            duration_s=time.monotonic() - started,
            detail="the rules REDIRECT no TCP port: the probe checks outbound redirection",
            error="nothing to check: no REDIRECT in the rules",
            mode=mode,
            proxy=tgt.describe_proxy(),
        )
    try:
        if mode == "netns":
            raw = _probe_netns(texts, chosen, tgt, ports, timeout)
        else:
            raw = _probe_inplace(texts, chosen, tgt, min(timeout / 3, 8.0))
    except ProbeFailure as exc:
        raw = {"error": str(exc)}
    redirected = bool(raw.get("redirected"))
    bypassed = raw.get("proxy_bypassed")
    error = raw.get("error")
    ok = error is None and redirected and (bypassed is True or not tgt.has_proxy)
    if mode == "inplace" and bypassed is None and error is None:
        ok = redirected  # the probe could not act as the proxy here; said in the notes
    notes = list(raw.get("notes", []))
    if ok:
        detail = (
            f"rules applied with {chosen.value}; a connection from uid "
            f"{tgt.app_uid if mode == 'netns' else os.geteuid()} was redirected to "
            f":{raw.get('redirect_port')} (SO_ORIGINAL_DST {raw.get('original_dst')})"
        )
        if bypassed:
            detail += f"; the proxy's ({tgt.describe_proxy()}) was not"
    else:
        detail = error or "; ".join(notes) or "interception did not work"
    if notes and ok:
        detail += " (" + "; ".join(notes) + ")"
    return ProbeResult(
        ok=ok,
        redirected=redirected,
        proxy_bypassed=bypassed if isinstance(bypassed, bool) else None,
        duration_s=time.monotonic() - started,
        detail=detail,
        error=error,
        applied=tuple(raw.get("applied", ())),
        original_dst=raw.get("original_dst"),
        redirect_port=raw.get("redirect_port"),
        steps=tuple(raw.get("steps", ())),
        backend=chosen.value,
        mode=mode,
        proxy=tgt.describe_proxy(),
    )


def probe_or_raise(
    spec: NeedsSpec, backend: Backend | str | None = None, mode: Mode = "netns"
) -> ProbeResult:
    """Like :func:`probe`, raising ActionError when the probe does not pass."""
    result = probe(spec, backend, mode)
    if not result.ok:
        raise ActionError(f"probe failed ({result.mode}, {result.backend}): {result.detail}")
    return result
