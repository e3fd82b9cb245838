"""Helpers for the scripts that run inside the test guest (Debian bookworm python3, root, PID 1's child).

The guest scripts report checks as lines the host side parses (tests/vm/harness.py):

    PASS <check-id>
    FAIL <check-id>: <reason>
        <indented detail lines>
    N passed, N failed                      (closing line)

A "pod" is a new network and mount namespace with an empty tmpfs over /usr/lib/modules, as a
container sees the node: the iptables binary cannot modprobe from there, the kernel's own module
autoload (kernel.modprobe, run in the init namespaces) still can unless it is switched off.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

MR = Path("/meshready-vm")
RULES = MR / "rules"
CASES = MR / "cases"
RELEASE = os.uname().release
MODDIR = Path("/lib/modules") / RELEASE
NOWHERE = "/nonexistent/modprobe"


# --------------------------------------------------------------------------- reporting


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.t0 = time.monotonic()

    def check(self, check_id: str, ok: bool, reason: str = "", detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"PASS {check_id}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {check_id}: {reason or 'failed'}", flush=True)
            for line in detail.rstrip().splitlines():
                print(f"    {line}", flush=True)
        return ok

    def note(self, text: str) -> None:
        print(f"# {text}", flush=True)

    def finish(self) -> int:
        self.note(f"{time.monotonic() - self.t0:.1f}s in the guest")
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        return 0 if self.failed == 0 else 1


# --------------------------------------------------------------------------- processes


def sh(argv: Sequence[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True)


_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_REC = 0x4000
MS_PRIVATE = 0x40000


def _enter_pod(root: Path | None = None) -> None:
    """In the child before exec: what `unshare --net --mount` + `mount -t tmpfs ... /usr/lib/modules`
    do, without three extra programs (each costs about 50 ms under emulation). With ROOT, then
    chroot there (another Debian release's iptables, as the mesh's image ships its own)."""
    if _libc.unshare(CLONE_NEWNET | CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare")
    if _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    if _libc.mount(b"tmpfs", b"/usr/lib/modules", b"tmpfs", 0, None) != 0:
        raise OSError(ctypes.get_errno(), "mount tmpfs /usr/lib/modules")
    if root is not None and root != Path("/"):
        if _libc.mount(b"proc", str(root / "proc").encode(), b"proc", 0, None) != 0:
            raise OSError(ctypes.get_errno(), "mount proc in the chroot")
        os.chroot(root)
        os.chdir("/")


def pod(
    argv: Sequence[str], stdin_file: Path | None = None, root: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ARGV in a pod: a new network and mount namespace with /usr/lib/modules hidden; with
    ROOT, chrooted there."""
    stdin = stdin_file.read_text() if stdin_file is not None else None
    return subprocess.run(
        list(argv),
        input=stdin,
        capture_output=True,
        text=True,
        preexec_fn=lambda: _enter_pod(root),
    )


def apply_command(rules: Path, backend: str | None = None) -> tuple[list[str], Path | None]:
    """How a rule file is applied: (argv, file on stdin). BACKEND legacy (default for .rules) or
    nft (iptables-nft-restore) for iptables rules."""
    if rules.suffix == ".nft":
        return ["nft", "-f", str(rules)], None
    if not rules.name.endswith(".rules"):
        raise ValueError(f"unknown rule file kind: {rules}")
    kind = "nft" if backend == "nft" else "legacy"
    tool = "ip6tables" if rules.name.endswith(".v6.rules") else "iptables"
    return [f"/usr/sbin/{tool}-{kind}-restore"], rules


def apply_in_pod(
    rules: Path, backend: str | None = None, iptables: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Apply RULES in a pod; IPTABLES picks the iptables version (see iptables_userlands())."""
    argv, stdin = apply_command(rules, backend)
    root = iptables_userlands()[iptables] if iptables else None
    return pod(argv, stdin, root)


def backend_of(rules: Path) -> str:
    return "nftables" if rules.suffix == ".nft" else "legacy"


_USERLANDS: dict[str, Path] = {}


def iptables_userlands() -> dict[str, Path]:
    """iptables version -> root directory: the guest's own (bookworm) at /, other Debian releases'
    under /opt/iptables/<suite> (scripts/vm/vmlib.py, build_userland)."""
    if not _USERLANDS:
        # the root filesystem's own iptables, from dpkg's database (arm64: extracted, no dpkg
        # database; ask the binary)
        status = Path("/var/lib/dpkg/status")
        text = status.read_text(errors="replace") if status.exists() else ""
        m = re.search(r"^Package: iptables\n(?:[^\n]+\n)*?Version: (\d+\.\d+\.\d+)", text, re.M)
        if m is None:
            out = sh(["/usr/sbin/xtables-legacy-multi", "iptables", "--version"])
            m = re.search(r"v(\d+\.\d+\.\d+)", out.stdout + out.stderr)
        if m:
            _USERLANDS[m.group(1)] = Path("/")
        for stamp in sorted(Path("/opt/iptables").glob("*/VERSION")):
            _USERLANDS[stamp.read_text().split()[0]] = stamp.parent
    return _USERLANDS


def set_autoload(on: bool) -> None:
    Path("/proc/sys/kernel/modprobe").write_text("/sbin/modprobe\n" if on else NOWHERE + "\n")


def autoload_on() -> bool:
    return Path("/proc/sys/kernel/modprobe").read_text().strip() != NOWHERE


# --------------------------------------------------------------------------- meshready


def meshready(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """The real CLI in its own process (as a user runs it)."""
    return sh([sys.executable, "-m", "meshready.cli.main", *args])


def meshready_inprocess(args: Sequence[str]) -> tuple[int, str, str]:
    """The CLI called in this process (saves a python start under emulation). Use only for commands
    that read nothing that changes during a run (e.g. `needs` against modules.dep)."""
    import importlib

    mod = importlib.import_module("meshready.cli.main")
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["meshready", *args]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            mod.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return code, out.getvalue(), err.getvalue()


def needs(rules: Sequence[Path], backend: str) -> dict[str, Any]:
    """`meshready needs --rules ... --backend B -o json` for the live kernel."""
    args = ["needs", "--backend", backend, "-o", "json"]
    for r in rules:
        args += ["--rules", str(r)]
    code, out, err = meshready_inprocess(args)
    if code != 0:
        raise RuntimeError(f"meshready {' '.join(args)} exited {code}: {err.strip()}")
    data = json.loads(out)
    if not isinstance(data, dict):
        raise RuntimeError(f"meshready needs: not a JSON object: {out[:200]}")
    return data


# --------------------------------------------------------------------------- modules


class Modules:
    """The guest kernel's module index and the loaded set; loads with insmod, unloads with rmmod."""

    def __init__(self) -> None:
        self.path: dict[str, str] = {}
        self.deps: dict[str, list[str]] = {}
        for line in (MODDIR / "modules.dep").read_text().splitlines():
            if ":" not in line:
                continue
            p, rest = line.split(":", 1)
            name = modname(p)
            self.path[name] = p
            self.deps[name] = [modname(d) for d in rest.split()]
        self.builtin = {
            modname(line) for line in (MODDIR / "modules.builtin").read_text().splitlines() if line
        }
        self.baseline = self.loaded()

    def exists(self, name: str) -> bool:
        n = name.replace("-", "_")
        return n in self.path or n in self.builtin

    @staticmethod
    def loaded() -> set[str]:
        return {line.split()[0] for line in Path("/proc/modules").read_text().splitlines() if line}

    def dependents(self, name: str) -> set[str]:
        """Modules that need NAME (transitively, per modules.dep)."""
        return {m for m, ds in self.deps.items() if name in ds}

    def order(self, names: Iterable[str]) -> list[str]:
        """NAMES in a load order: dependencies first."""
        want = set(names)
        out: list[str] = []
        seen: set[str] = set()

        def visit(n: str) -> None:
            if n in seen:
                return
            seen.add(n)
            for d in reversed(self.deps.get(n, [])):
                if d in want:
                    visit(d)
            out.append(n)

        for n in sorted(want):
            visit(n)
        return out

    def insmod(self, names: Sequence[str]) -> list[str]:
        """insmod NAMES in the given order (skipping loaded ones); returns failure messages."""
        errors = []
        have = self.loaded()
        for n in names:
            if n in have or n in self.builtin:
                continue
            if n not in self.path:
                errors.append(f"{n}: not in modules.dep")
                continue
            proc = sh(["insmod", str(MODDIR / self.path[n])])
            if proc.returncode != 0:
                errors.append(f"insmod {n}: {proc.stderr.strip()}")
            else:
                have.add(n)
        return errors

    def rmmod(self, names: Iterable[str], timeout: float = 20.0) -> list[str]:
        """Unload NAMES (dependents first); retries while netns cleanup still holds references."""
        todo = [n for n in names if n not in self.baseline]
        deadline = time.monotonic() + timeout
        while True:
            have = self.loaded()
            todo = [n for n in todo if n in have]
            if not todo:
                return []
            order = list(reversed(self.order(todo)))
            proc = sh(["rmmod", *order])
            if proc.returncode == 0:
                continue
            if time.monotonic() > deadline:
                left = sorted(set(todo) & self.loaded())
                return [f"rmmod {' '.join(left)}: {proc.stderr.strip()}"]
            time.sleep(0.2)

    def become(self, target: Iterable[str], order: Sequence[str] | None = None) -> list[str]:
        """Make the loaded set (beyond the baseline) exactly TARGET: unload the rest, load the
        missing ones with insmod, in ORDER if given (else dependencies first). Returns errors."""
        want = set(target) - self.builtin
        extra = self.loaded() - want - self.baseline
        errors = self.rmmod(extra)
        errors += self.insmod(list(order) if order is not None else self.order(want))
        return errors

    def unload_all(self) -> list[str]:
        return self.rmmod(self.loaded() - self.baseline)


def modname(path: str) -> str:
    return path.rsplit("/", 1)[-1].split(".ko", 1)[0].replace("-", "_")


def rule_files(kind: str) -> list[Path]:
    """kind: legacy or nft (sidecar-iptables/*.rules) or nftables (sidecar-nft/*.nft)."""
    if kind in ("legacy", "nft"):
        return sorted((RULES / "sidecar-iptables").glob("*.rules"))
    return sorted((RULES / "sidecar-nft").glob("*.nft"))


def rule_id(rules: Path) -> str:
    """dns-uid-gid.v4.rules -> dns-uid-gid.v4; dns-uid-gid.nft -> dns-uid-gid.nft"""
    return rules.name.removesuffix(".rules")


def ensure_owner_names(files: Iterable[Path]) -> list[str]:
    """Add the user and group names the rules match on (--gid-owner java, skgid ftp) to the guest's
    /etc/passwd and /etc/group, as they exist in the pods those rules were written for."""
    pattern = re.compile(r"(?:--(uid|gid)-owner|sk(uid|gid))\s+(?:!=\s*)?([A-Za-z_][\w.-]*)")
    wanted: dict[str, set[str]] = {"uid": set(), "gid": set()}
    for f in files:
        for m in pattern.finditer(f.read_text()):
            wanted[m.group(1) or m.group(2)].add(m.group(3))
    added = []
    for kind, db in (("uid", Path("/etc/passwd")), ("gid", Path("/etc/group"))):
        text = db.read_text() if db.exists() else ""
        have = {line.split(":", 1)[0] for line in text.splitlines() if line}
        for i, name in enumerate(sorted(wanted[kind] - have)):
            num = 20000 + i
            line = (
                f"{name}:x:{num}:{num}::/nonexistent:/bin/false"
                if kind == "uid"
                else f"{name}:x:{num}:"
            )
            text += line + "\n"
            added.append(f"{kind} {name}={num}")
        db.write_text(text)
        for root in iptables_userlands().values():  # the chrooted iptables read their own /etc
            if root != Path("/"):
                (root / "etc" / db.name).write_text(text)
    return added


def tail(text: str, n: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-n:])
