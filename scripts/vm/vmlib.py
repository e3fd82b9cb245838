"""Shared code for scripts/vm/*: cache layout, cached kernels, guest pieces, running qemu.

Python 3 standard library only. The guest is booted from an initramfs made of uncompressed newc cpio
pieces concatenated in this order (uncompressed pieces can be concatenated; compressed ones panic):

  rootfs-<arch>-<key>.cpio       Debian bookworm userland (mmdebstrap), built by build_rootfs()
  modules-<release>-<key>.cpio   the kernel's netfilter module tree + depmod output, build_modules()
  iptables-<suite>-<arch>-<key>.cpio   another Debian release's iptables and the libraries it needs
                                 under /opt/iptables/<suite>/, run chrooted; build_userland()
  payload (per run)              /init, run.conf, the command, tests/vm/guest, shared rules and
                                 cases, meshready from the working tree (pip install --target)

Results come back over a serial port written to a file: on x86 the console is ttyS0 and the
command's output goes to ttyS1; arm64 (virt) has one UART, shared with the console. Every output
line is `@@MR@@ <line>`; the last line is `@@MR-EXIT@@ <code>`.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VM_DIR = REPO / "scripts" / "vm"
GUEST_TESTS = REPO / "tests" / "vm" / "guest"
BUILD_HINT = (
    "run scripts/build-test-artifacts (or scripts/vm/fetch-kernels && scripts/vm/build-guest)"
)

OUT_PREFIX = "@@MR@@ "
EXIT_MARK = "@@MR-EXIT@@"

# Userland of the guest. Bump ROOTFS_RECIPE when changing how the root filesystem is made.
ROOTFS_RECIPE = "5"
GUEST_PACKAGES = ["python3", "iptables", "nftables", "kmod", "iproute2", "mount", "util-linux"]
# --variant=extract installs no Essential packages by itself: name the ones the guest uses.
EXTRACT_ESSENTIALS = [
    "base-files", "base-passwd", "bash", "dash", "coreutils", "diffutils", "findutils", "grep",
    "gzip", "hostname", "libc-bin", "sed", "tar", "procps", "usr-is-merged",
]  # fmt: skip
STRIP = [
    "usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
    "usr/share/bash-completion", "usr/share/common-licenses", "usr/share/zoneinfo",
    "var/lib/apt/lists", "var/cache/apt", "var/cache/debconf", "var/log",
    "usr/lib/python3.11/test", "usr/lib/python3.11/idlelib", "usr/lib/python3.11/tkinter",
    "usr/lib/python3.11/lib2to3", "usr/lib/python3.11/ensurepip", "usr/lib/python3.11/pydoc_data",
    "usr/lib/python3.11/turtledemo", "usr/lib/python3.11/unittest/test",
    "usr/lib/x86_64-linux-gnu/gconv", "usr/lib/aarch64-linux-gnu/gconv",
]  # fmt: skip

# Kernel modules in the guest: the netfilter part of kernel/net plus everything it depends on.
MODULES_RECIPE = "2"
MODULE_DIRS = re.compile(r"kernel/net/(netfilter/|[^/]+/netfilter/|bridge/|sched/)")

QEMU = {"amd64": "qemu-system-x86_64", "arm64": "qemu-system-aarch64"}

# iptables userspace versions besides the root filesystem's own (bookworm 1.8.9): the mesh's image
# ships its own iptables, so the guest carries the releases around it. Each is the suite's iptables
# package with its dependencies (mmdebstrap --variant=extract), run with chroot.
USERLAND_RECIPE = "1"
USERLAND_SUITES = ("bullseye", "trixie")  # iptables 1.8.7 and 1.8.11
USERLAND_STRIP = ["usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
                  "usr/share/lintian", "usr/lib/x86_64-linux-gnu/gconv",
                  "usr/lib/aarch64-linux-gnu/gconv", "var/cache/apt", "var/lib/apt"]  # fmt: skip


class VmError(Exception):
    """A prerequisite is missing or the guest could not be run."""


def log(msg: str) -> None:
    print(f"vm: {msg}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    if os.environ.get("MESHREADY_CACHE"):
        return Path(os.environ["MESHREADY_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "meshready"
    return Path.home() / ".cache" / "meshready"


def shared_dir() -> Path:
    """The project's shared/ directory: $MESHREADY_SHARED, else beside the repository."""
    env = os.environ.get("MESHREADY_SHARED")
    return Path(env) if env else REPO.parent / "shared"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def sha(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- kernels


@dataclass(frozen=True)
class Kernel:
    alias: str
    release: str
    arch: str
    version: str
    module_suffix: str
    dir: Path

    @property
    def vmlinuz(self) -> Path:
        return self.dir / "vmlinuz"

    @property
    def moddir(self) -> Path:
        return self.dir / "lib" / "modules" / self.release


def kernels() -> list[Kernel]:
    index = cache_dir() / "kernels" / "index.json"
    try:
        entries = json.loads(index.read_text())["kernels"]
    except (OSError, ValueError, KeyError) as exc:
        raise VmError(f"no cached kernels ({index}: {exc}); {BUILD_HINT}") from exc
    out = []
    for e in entries:
        d = cache_dir() / "kernels" / e["release"]
        out.append(Kernel(e["alias"], e["release"], e["arch"], e["version"], e["module_suffix"], d))
    return out


def find_kernel(name: str) -> Kernel:
    """A kernel by alias (6.1-amd64, 6.12-amd64, 6.1-arm64, 5.10-amd64) or release."""
    found = [k for k in kernels() if name in (k.alias, k.release)]
    if not found:
        known = ", ".join(f"{k.alias} ({k.release})" for k in kernels())
        raise VmError(f"kernel {name!r} is not cached (cached: {known or 'none'}); {BUILD_HINT}")
    k = found[0]
    for f in (k.vmlinuz, k.moddir / "modules.dep"):
        if not f.is_file():
            raise VmError(f"{k.alias}: {f} missing; {BUILD_HINT}")
    return k


# --------------------------------------------------------------------------- cpio


def write_cpio(root: Path, out: Path) -> None:
    """Pack ROOT into an uncompressed newc cpio at OUT, owned by root (entries sorted)."""
    tmp = out.with_name(out.name + ".tmp")
    names = subprocess.run(
        ["find", ".", "-mindepth", "1", "-print0"], cwd=root, check=True, capture_output=True
    ).stdout
    listing = b"\0".join(sorted(n for n in names.split(b"\0") if n)) + b"\0"
    with open(tmp, "wb") as fh:
        subprocess.run(
            ["cpio", "--quiet", "--null", "-o", "-H", "newc", "-R", "0:0"],
            cwd=root,
            input=listing,
            stdout=fh,
            check=True,
        )
    tmp.rename(out)


def add_parents(root: Path, rel: str) -> None:
    (root / rel).mkdir(parents=True, exist_ok=True)


# --------------------------------------------------------------------------- rootfs


def guest_dir() -> Path:
    d = cache_dir() / "guest"
    d.mkdir(parents=True, exist_ok=True)
    return d


def host_debian_sources(dest: Path) -> Path:
    """Write the host's Debian bookworm apt sources (deb822) to DEST, for mmdebstrap."""
    stanzas: list[str] = []
    apt = Path("/etc/apt")
    files = [apt / "sources.list"] if (apt / "sources.list").is_file() else []
    files += sorted((apt / "sources.list.d").glob("*.list"))
    files += sorted((apt / "sources.list.d").glob("*.sources"))
    for f in files:
        text = f.read_text()
        if f.suffix == ".sources":
            for block in re.split(r"\n\s*\n", text):
                lines = [ln for ln in block.splitlines() if ln.strip() and not ln.startswith("#")]
                fields = {ln.split(":", 1)[0].strip().lower(): ln for ln in lines if ":" in ln}
                suites = fields.get("suites", "").split(":", 1)[-1].split()
                types = fields.get("types", ":").split(":", 1)[1].split()
                if any(s.startswith("bookworm") for s in suites) and "deb" in types:
                    keep = [ln for ln in lines if not ln.lower().startswith("types:")]
                    stanzas.append("\n".join(["Types: deb", *keep]))
        else:
            for ln in text.splitlines():
                parts = ln.split("#", 1)[0].split()
                if len(parts) >= 4 and parts[0] == "deb":
                    opts = ""
                    if parts[1].startswith("["):
                        end = next(i for i, p in enumerate(parts) if p.endswith("]"))
                        opts = " ".join(parts[1 : end + 1])
                        parts = [parts[0], *parts[end + 1 :]]
                    if parts[2].startswith("bookworm"):
                        stanza = [
                            "Types: deb",
                            f"URIs: {parts[1]}",
                            f"Suites: {parts[2]}",
                            f"Components: {' '.join(parts[3:])}",
                        ]
                        m = re.search(r"signed-by=(\S+?)\]?(\s|$)", opts)
                        if m:
                            stanza.append(f"Signed-By: {m.group(1)}")
                        stanzas.append("\n".join(stanza))
    if not stanzas:
        raise VmError("no Debian bookworm apt sources found on this host (/etc/apt)")
    dest.write_text("\n\n".join(stanzas) + "\n")
    return dest


def rootfs_path(arch: str) -> Path:
    key = sha(ROOTFS_RECIPE, arch, *GUEST_PACKAGES, *EXTRACT_ESSENTIALS, *STRIP)
    return guest_dir() / f"rootfs-{arch}-{key}.cpio"


def build_rootfs(arch: str, force: bool = False) -> Path:
    out = rootfs_path(arch)
    with locked(guest_dir() / f".rootfs-{arch}.lock"):
        if out.exists() and not force:
            return out
        for tool in ("mmdebstrap", "cpio"):
            if not shutil.which(tool):
                raise VmError(f"{tool} not found (scripts/install-test-deps installs it)")
        t0 = time.monotonic()
        log(f"building the {arch} guest root filesystem (mmdebstrap)")
        with tempfile.TemporaryDirectory(prefix=f".rootfs-{arch}.", dir=guest_dir()) as tmp:
            root = Path(tmp) / "root"
            sources = host_debian_sources(Path(tmp) / "debian.sources")
            cmd = ["mmdebstrap", "--quiet", f"--architectures={arch}"]
            if arch == "amd64":
                cmd += [
                    "--variant=essential",
                    f"--include={','.join(GUEST_PACKAGES)}",
                    # merged /usr by links, without the usrmerge package (which pulls in perl)
                    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
                ]
            else:
                # No maintainer scripts for a foreign architecture (no binfmt needed): extract only,
                # with the merged-/usr links made before unpacking.
                links = 'for d in bin sbin lib; do mkdir -p "$1/usr/$d"; ln -s usr/$d "$1/$d"; done'
                cmd += [
                    "--variant=extract",
                    f"--include={','.join(EXTRACT_ESSENTIALS + GUEST_PACKAGES)}",
                    f"--setup-hook={links}",
                ]
            cmd += ["bookworm", str(root), str(sources)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise VmError(f"mmdebstrap failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
            finish_rootfs(root, arch)
            write_cpio(root, out)
        for old in guest_dir().glob(f"rootfs-{arch}-*.cpio"):
            if old != out:
                old.unlink()
        size = out.stat().st_size >> 20
        log(f"{arch} root filesystem: {out.name} ({size} MiB) in {time.monotonic() - t0:.0f}s")
        return out


def finish_rootfs(root: Path, arch: str) -> None:
    for rel in STRIP:
        p = root / rel
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
            p.mkdir()
    for rel in ("proc", "sys", "dev", "run", "tmp", "root", "usr/lib/modules", "usr/local/bin"):
        (root / rel).mkdir(parents=True, exist_ok=True)
    if arch != "amd64":
        # What base-passwd's and python3's maintainer scripts would have done.
        etc = root / "etc"
        for name in ("passwd", "group"):
            master = root / "usr/share/base-passwd" / f"{name}.master"
            if master.exists() and not (etc / name).exists():
                shutil.copyfile(master, etc / name)
        # .pyc files: the host's CPython 3.11 writes the same format as the guest's.
        if sys.version_info[:2] == (3, 11):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "compileall",
                    "-q",
                    "-j0",
                    "-s",
                    str(root),
                    "-p",
                    "/",
                    str(root / "usr/lib/python3.11"),
                ],
                check=False,
                capture_output=True,
            )
        for tool in ("iptables", "ip6tables"):
            for suffix in ("", "-restore", "-save"):
                link = root / "usr/sbin" / f"{tool}{suffix}"
                if not link.exists() and not link.is_symlink():
                    link.symlink_to(f"{tool}-legacy{suffix}")


# --------------------------------------------------------------------------- other iptables versions


def debian_mirror() -> tuple[str, str]:
    """(URI, Signed-By keyring) of the host's Debian archive source."""
    with tempfile.TemporaryDirectory() as tmp:
        text = host_debian_sources(Path(tmp) / "s").read_text()
    for block in text.split("\n\n"):
        fields = dict(ln.split(":", 1) for ln in block.splitlines() if ":" in ln)
        uri = fields.get("URIs", "").split()
        if uri and "security" not in uri[0]:
            key = fields.get("Signed-By", "").strip()
            return uri[0], key or "/usr/share/keyrings/debian-archive-keyring.gpg"
    raise VmError("no Debian archive URI in the host's apt sources")


def userland_path(suite: str, arch: str) -> Path:
    key = sha(USERLAND_RECIPE, suite, arch, *USERLAND_STRIP)
    return guest_dir() / f"iptables-{suite}-{arch}-{key}.cpio"


def build_userland(suite: str, arch: str, force: bool = False) -> Path:
    """SUITE's iptables for ARCH under /opt/iptables/SUITE/ (with a VERSION file), as a cpio."""
    out = userland_path(suite, arch)
    with locked(guest_dir() / f".iptables-{suite}-{arch}.lock"):
        if out.exists() and not force:
            return out
        t0 = time.monotonic()
        uri, keyring = debian_mirror()
        with tempfile.TemporaryDirectory(prefix=f".ipt-{suite}.", dir=guest_dir()) as tmp:
            root = Path(tmp)
            tree = root / "opt/iptables" / suite
            tree.parent.mkdir(parents=True)
            # merged /usr (trixie ships only /usr paths): make the links before unpacking
            links = (
                'for d in bin sbin lib lib64; do mkdir -p "$1/usr/$d"; ln -s usr/$d "$1/$d"; done'
            )
            cmd = [
                "mmdebstrap", "--quiet", "--variant=extract", "--include=iptables",
                f"--architectures={arch}",
                *([f"--setup-hook={links}"] if suite != "bullseye" else []),
                suite, str(tree), f"deb [signed-by={keyring}] {uri} {suite} main",
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise VmError(
                    f"mmdebstrap {suite} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
                )
            changelog = tree / "usr/share/doc/iptables/changelog.Debian.gz"
            m = re.match(
                rb"iptables \(([^)]+)\)",
                subprocess.run(["zcat", str(changelog)], capture_output=True, check=True).stdout,
            )
            if not m:
                raise VmError(f"{suite}: cannot read the iptables version from {changelog}")
            deb_version = m.group(1).decode()
            for rel in USERLAND_STRIP:
                shutil.rmtree(tree / rel, ignore_errors=True)
            for rel in ("proc", "run", "tmp", "etc"):
                (tree / rel).mkdir(exist_ok=True)
            (tree / "VERSION").write_text(
                f"{deb_version.split('-')[0].split(':')[-1]} {deb_version} {suite}\n"
            )
            write_cpio(root, out)
        for old in guest_dir().glob(f"iptables-{suite}-{arch}-*.cpio"):
            if old != out:
                old.unlink()
        log(
            f"iptables {deb_version} ({suite}, {arch}): {out.name} "
            f"({out.stat().st_size >> 20} MiB) in {time.monotonic() - t0:.0f}s"
        )
        return out


# --------------------------------------------------------------------------- modules


def _modname(path: str) -> str:
    return path.rsplit("/", 1)[-1].split(".ko", 1)[0].replace("-", "_")


def module_selection(moddir: Path) -> list[str]:
    """Relative paths of the modules the guest gets: MODULE_DIRS + hard and soft dependencies."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        if ":" in line:
            path, rest = line.split(":", 1)
            deps[path] = rest.split()
            by_name[_modname(path)] = path
    aliases = []
    for line in (moddir / "modules.alias").read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "alias":
            aliases.append((parts[1], parts[2]))
    soft: dict[str, list[str]] = {}
    for line in (moddir / "modules.softdep").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "softdep":
            soft.setdefault(parts[1].replace("-", "_"), []).extend(
                p for p in parts[2:] if not p.endswith(":")
            )

    def resolve(req: str) -> list[str]:
        if req.replace("-", "_") in by_name:
            return [by_name[req.replace("-", "_")]]
        return [by_name[m] for pat, m in aliases if fnmatch.fnmatchcase(req, pat) and m in by_name]

    keep: set[str] = set()
    todo = [p for p in deps if MODULE_DIRS.match(p)]
    while todo:
        p = todo.pop()
        if p in keep:
            continue
        keep.add(p)
        todo.extend(deps[p])
        for req in soft.get(_modname(p), []):
            todo.extend(resolve(req))
    return sorted(keep)


def modules_path(k: Kernel) -> Path:
    return guest_dir() / f"modules-{k.release}-{sha(MODULES_RECIPE, k.version)}.cpio"


def build_modules(k: Kernel, force: bool = False) -> Path:
    out = modules_path(k)
    with locked(guest_dir() / f".modules-{k.release}.lock"):
        if out.exists() and not force:
            return out
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f".modules-{k.release}.", dir=guest_dir()) as tmp:
            root = Path(tmp)
            dest = root / "usr/lib/modules" / k.release
            dest.mkdir(parents=True)
            selected = module_selection(k.moddir)
            for rel in selected:
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(k.moddir / rel, dest / rel)
            for name in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
                if (k.moddir / name).exists():
                    shutil.copy2(k.moddir / name, dest / name)
            # depmod wants DIR/lib/modules: point it there through a link
            (root / "lib").symlink_to("usr/lib")
            subprocess.run(["depmod", "-b", str(root), k.release], check=True)
            (root / "lib").unlink()
            write_cpio(root, out)
        for old in guest_dir().glob(f"modules-{k.release}-*.cpio"):
            if old != out:
                old.unlink()
        log(
            f"{k.alias}: module piece {out.name}: {len(selected)} modules, "
            f"{out.stat().st_size >> 20} MiB in {time.monotonic() - t0:.1f}s"
        )
        return out


# --------------------------------------------------------------------------- meshready payload


def _pip_python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def _tree_hash(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for base in paths:
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for f in files:
            if "__pycache__" in f.parts or f.suffix == ".pyc":
                continue
            if any(part.endswith(".egg-info") for part in f.parts):  # written by the build itself
                continue
            h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _pip(args: list[str]) -> None:
    cmd = [_pip_python(), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise VmError(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}")


def python_payload() -> tuple[Path, Path]:
    """(deps dir, meshready dir): `pip install --target` of the working tree and its deps."""
    pyproject = REPO / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text())["project"].get("dependencies", [])
    base = guest_dir() / "py"
    deps_dir = base / f"deps-{sha('1', *deps)}"
    site_dir = base / f"meshready-{_tree_hash([pyproject, REPO / 'src'])}"
    with locked(base / ".lock"):
        if not deps_dir.exists():
            log(f"pip install --target for the guest: {' '.join(deps)}")
            tmp = Path(tempfile.mkdtemp(prefix=".deps.", dir=base))
            try:
                _pip(["--target", str(tmp), "--only-binary=:all:", *deps])
                # The same files must work on arm64: drop compiled extensions. PyYAML falls back to
                # pure Python; the cluster client's msgspec is not used by the guest scenarios.
                for binary in [p for p in tmp.rglob("*") if p.suffix in (".so", ".pyd")]:
                    binary.unlink()
                shutil.rmtree(tmp / "bin", ignore_errors=True)
                tmp.rename(deps_dir)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        if not site_dir.exists():
            log("pip install --target of the working tree for the guest")
            tmp = Path(tempfile.mkdtemp(prefix=".site.", dir=base))
            try:
                _pip(["--target", str(tmp), "--no-deps", str(REPO)])
                shutil.rmtree(tmp / "bin", ignore_errors=True)
                tmp.rename(site_dir)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        for old in base.glob("meshready-*"):  # keep a few recent builds
            if old != site_dir and time.time() - old.stat().st_mtime > 3600:
                shutil.rmtree(old, ignore_errors=True)
        os.utime(site_dir)
    return deps_dir, site_dir


# --------------------------------------------------------------------------- run


@dataclass
class GuestResult:
    exit_code: int
    output: str
    console: str
    seconds: float


def build_payload(
    root: Path,
    k: Kernel,
    argv: Sequence[str],
    autoload: str,
    payload: Path | None,
    with_meshready: bool,
    env: dict[str, str],
) -> None:
    mr = root / "meshready-vm"
    mr.mkdir()
    shutil.copy2(VM_DIR / "guest-init", root / "init")
    (root / "init").chmod(0o755)
    out_dev = "/dev/ttyS1" if k.arch == "amd64" else "/dev/console"
    conf = {
        "MR_AUTOLOAD": autoload,
        "MR_OUT": out_dev,
        "MR_KERNEL_ALIAS": k.alias,
        "MR_KERNEL_RELEASE": k.release,
        **env,
    }
    (mr / "run.conf").write_text("".join(f"{n}={shlex.quote(v)}\n" for n, v in conf.items()))
    (mr / "cmd").write_text("#!/bin/sh\n" + shlex.join(argv) + "\n")
    (mr / "cmd").chmod(0o755)
    bindir = mr / "bin"
    bindir.mkdir()
    (bindir / "modprobe-log").write_text(
        '#!/bin/sh\necho "$*" >> /run/modprobe.log\nexec /sbin/modprobe "$@"\n'
    )
    (bindir / "modprobe-log").chmod(0o755)
    if GUEST_TESTS.is_dir():
        shutil.copytree(GUEST_TESTS, mr / "guest", ignore=shutil.ignore_patterns("__pycache__"))
    shared = shared_dir()
    for sub in ("rules", "cases"):
        if (shared / sub).is_dir():
            shutil.copytree(shared / sub, mr / sub)
    work = mr / "work"
    if payload is not None:
        shutil.copytree(payload, work, symlinks=True)
    else:
        work.mkdir()
    if with_meshready:
        deps_dir, site_dir = python_payload()
        opt = root / "opt/meshready"
        opt.mkdir(parents=True)
        shutil.copytree(deps_dir, opt / "deps", symlinks=True)
        shutil.copytree(site_dir, opt / "site", symlinks=True)
        paths = ["/opt/meshready/site", "/opt/meshready/deps"]
        # A debugging aid: more pure-Python directories for the guest's sys.path.
        extra = os.environ.get("MESHREADY_VM_EXTRA_PYTHONPATH", "")
        for i, d in enumerate(p for p in extra.split(":") if p):
            shutil.copytree(d, opt / f"extra{i}", symlinks=True)
            paths.append(f"/opt/meshready/extra{i}")
        pth = root / "usr/lib/python3/dist-packages"
        pth.mkdir(parents=True)
        (pth / "meshready-vm.pth").write_text("".join(p + "\n" for p in paths))
        wrapper = root / "usr/local/bin/meshready"
        wrapper.parent.mkdir(parents=True)
        wrapper.write_text('#!/bin/sh\nexec python3 -m meshready.cli.main "$@"\n')
        wrapper.chmod(0o755)


def parse_output(text: str) -> tuple[str, int | None]:
    """Guest output lines and exit code from the results channel."""
    out: list[str] = []
    code: int | None = None
    for raw in text.replace("\r", "").split("\n"):
        pos = raw.find(OUT_PREFIX)
        mark = raw.find(EXIT_MARK)
        if mark >= 0:
            m = re.match(r"\s*(-?\d+)", raw[mark + len(EXIT_MARK) :])
            if m:
                code = int(m.group(1))
            continue
        if pos >= 0:
            out.append(raw[pos + len(OUT_PREFIX) :])
        elif raw.startswith(OUT_PREFIX.rstrip()):
            out.append("")
    return "".join(line + "\n" for line in out), code


def qemu_command(k: Kernel, initrd: Path, console: Path, results: Path, mem: int) -> list[str]:
    if k.arch == "amd64":
        return [
            QEMU["amd64"], "-accel", "tcg", "-cpu", "max", "-m", str(mem), "-smp", "1",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", str(k.vmlinuz), "-initrd", str(initrd),
            "-append", "console=ttyS0 panic=-1 quiet",
            "-serial", f"file:{console}", "-serial", f"file:{results}",
        ]  # fmt: skip
    return [
        QEMU["arm64"], "-accel", "tcg", "-machine", "virt", "-cpu", "max,pauth-impdef=on",
        "-m", str(mem), "-smp", "1",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", str(k.vmlinuz), "-initrd", str(initrd),
        "-append", "console=ttyAMA0 panic=-1 quiet",
        "-serial", f"file:{console}",
    ]  # fmt: skip


def run_guest(
    kernel: str,
    argv: Sequence[str],
    *,
    autoload: str = "on",
    timeout: float = 300,
    payload: Path | None = None,
    with_meshready: bool = True,
    env: dict[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
    keep: Path | None = None,
    extra_pieces: Sequence[Path] = (),
) -> GuestResult:
    """Boot KERNEL, run ARGV as root in the guest, return its exit code and output.

    Raises VmError when a prerequisite is missing, the guest does not finish within TIMEOUT
    seconds, or it stops without reporting an exit code.
    """
    if autoload not in ("on", "off", "log"):
        raise VmError(f"autoload must be on, off or log, not {autoload!r}")
    k = find_kernel(kernel)
    qemu = QEMU[k.arch]
    if not shutil.which(qemu):
        raise VmError(f"{qemu} not found; scripts/install-test-deps installs it")
    pieces = [build_rootfs(k.arch), build_modules(k)]
    pieces += [build_userland(suite, k.arch) for suite in USERLAND_SUITES]
    pieces += list(extra_pieces)  # e.g. a built image and runc (scripts/image/vmpiece.py)
    tmpbase = cache_dir() / "tmp"
    tmpbase.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="run.", dir=tmpbase) as tmp:
        work = Path(tmp)
        proot = work / "payload"
        proot.mkdir()
        build_payload(proot, k, argv, autoload, payload, with_meshready, env or {})
        write_cpio(proot, work / "payload.cpio")
        initrd = work / "initrd.cpio"
        with open(initrd, "wb") as out:
            for piece in [*pieces, work / "payload.cpio"]:
                with open(piece, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
        console, results = work / "console.log", work / "results.log"
        console.touch()
        results.touch()
        cmd = [
            "timeout",
            "--kill-after=5",
            str(int(timeout)),
            *qemu_command(k, initrd, console, results, 1024),
        ]
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        channel = results if k.arch == "amd64" else console
        seen = 0
        partial = ""
        while True:
            done = proc.poll() is not None
            if on_line is not None:
                data = channel.read_bytes()[seen:]
                seen += len(data)
                partial += data.decode(errors="replace")
                *lines, partial = partial.split("\n")
                for line in lines:
                    text, _ = parse_output(line)
                    if text:
                        on_line(text[:-1])
            if done:
                break
            time.sleep(0.1)
        seconds = time.monotonic() - t0
        qemu_out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        console_text = console.read_text(errors="replace").replace("\r", "")
        output, code = parse_output(channel.read_text(errors="replace"))
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for f in (console, results):
                shutil.copy2(f, keep / f.name)
    if proc.returncode == 124 or proc.returncode == 137:
        raise VmError(
            f"{k.alias}: guest did not finish within {timeout:.0f}s\n"
            f"--- guest output ---\n{output[-6000:]}\n"
            f"--- console (tail) ---\n{console_text[-3000:]}"
        )
    if code is None:
        raise VmError(
            f"{k.alias}: guest stopped without an exit code (qemu exit {proc.returncode}) "
            f"{qemu_out[-2000:]}\n--- guest output ---\n{output[-6000:]}\n"
            f"--- console (tail) ---\n{console_text[-3000:]}"
        )
    return GuestResult(code, output, console_text, seconds)
