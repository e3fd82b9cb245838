"""Loaders: the host's own modprobe, or the module syscalls called from Python.

Either loader loads one module at a time by *name*; the file, when one is read, is the path the
kernel's own ``modules.dep`` gives for that name. Nothing from input is ever used as a path or passed
to a shell, and a name must look like a module name (``[A-Za-z0-9_-]+``) and be in the index.

- :class:`ModprobeLoader` runs the host's ``modprobe -b`` (blacklists and ``modprobe.d`` apply), on the
  node itself, or from a pod under ``--host-root`` through ``chroot`` into the host root, or
  ``nsenter`` into PID 1's mount namespace (``hostPID``).
- :class:`PythonLoader` needs no kmod: ``finit_module`` on the file; for ``.ko.xz/.zst/.gz`` it asks
  the kernel to decompress (``MODULE_INIT_COMPRESSED_FILE``, kernels built with
  ``CONFIG_MODULE_DECOMPRESS``) and, where the kernel cannot, decompresses in Python and calls
  ``init_module`` with the image.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path, PurePosixPath

from meshready.actions.kernel import (
    MODULE_INIT_COMPRESSED_FILE,
    delete_module,
    explain,
    finit_module,
    init_module,
    syscall_numbers,
    valid_module_name,
)
from meshready.boundedio import MiB, decompress, open_regular, read_bytes
from meshready.errors import ActionError, InputError
from meshready.host.kernel_state import loaded_modules
from meshready.host.modindex import MODULE_SUFFIXES, ModuleIndex, module_name_from_path
from meshready.host.root import HostRoot


class LoaderKind(StrEnum):
    """Which loader loads: chosen on the command line (``--loader``) and by the agent."""

    AUTO = "auto"  # the host's modprobe when it has one, else the Python loader
    MODPROBE = "modprobe"
    PYTHON = "python"


MODPROBE_PATHS = ("/usr/sbin/modprobe", "/sbin/modprobe", "/usr/bin/modprobe", "/bin/modprobe")
_CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "LANG": "C"}


def module_file(module: str, index: ModuleIndex, root: HostRoot) -> Path:
    """The file of ``module`` as the kernel's modules.dep names it, checked to be that module's."""
    name = valid_module_name(module)
    rel = index.paths.get(name)
    if rel is None:
        raise ActionError(
            f"refusing {name}: not in this kernel's modules.dep ({index.directory}); "
            "meshready loads only modules of the kernel's own module tree"
        )
    pure = PurePosixPath(rel)
    if ".." in pure.parts or module_name_from_path(rel) != name:
        raise ActionError(f"refusing {name}: modules.dep gives an unexpected path {rel!r}")
    directory = Path(index.directory)
    if pure.is_absolute():
        # Old depmod wrote absolute paths, always into the tree itself: /lib/modules/RELEASE/...
        # Anything else (a crafted /etc/shadow.ko) names a file outside the module directory.
        release = directory.name
        for base in (f"/lib/modules/{release}", f"/usr/lib/modules/{release}"):
            if pure.is_relative_to(base):
                pure = pure.relative_to(base)
                break
        else:
            raise ActionError(
                f"refusing {name}: modules.dep gives {rel!r}, outside the module directory"
            )
    path = directory / pure
    # A symbolic link in the tree must not lead out of it either.
    real_dir = os.path.realpath(directory)
    real = os.path.realpath(path)
    if os.path.commonpath([real_dir, real]) != real_dir:
        raise ActionError(
            f"refusing {name}: {path} leads outside the module directory ({real_dir})"
        )
    return path


def compression_of(path: Path) -> str | None:
    """``"xz"``, ``"zst"``, ``"gz"`` or None for a plain ``.ko``."""
    name = path.name
    for suffix in MODULE_SUFFIXES[1:]:
        if name.endswith(suffix):
            return suffix.rsplit(".", 1)[-1]
    return None


# The largest in-tree modules are about 20 MB uncompressed (amdgpu with debug info stripped).
MODULE_CAP = 256 * MiB


def read_module_image(path: Path) -> bytes:
    """The module's ELF image, decompressed in Python when the file is compressed (capped)."""
    if not os.path.lexists(path):
        raise ActionError(f"module file {path} is missing")
    try:
        data = read_bytes(path, cap=MODULE_CAP)
    except InputError as exc:
        raise ActionError(f"cannot read module file {exc.one_line()}") from exc
    kind = compression_of(path)
    if kind == "zst" and not _zstd_in_python():
        return _unzstd_binary(path)
    try:
        return decompress(data, kind=kind, cap=MODULE_CAP, source=str(path))
    except InputError as exc:
        raise ActionError(f"cannot decompress {path}: {exc.message}") from exc


def _zstd_in_python() -> bool:
    import importlib.util

    return any(importlib.util.find_spec(name) is not None for name in ("compression", "zstandard"))


def _unzstd_binary(path: Path) -> bytes:
    """zstd without Python support: the zstd binary, its output capped, with a timeout."""
    binary = shutil.which("zstd")
    if binary is None:
        raise ActionError(
            f"cannot decompress {path}: this Python has no zstd support and no zstd binary "
            "is installed (the kernel could not decompress it either)"
        )
    with subprocess.Popen(
        [binary, "-dc", "--", str(path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as proc:
        assert proc.stdout is not None
        data = proc.stdout.read(MODULE_CAP + 1)
        if len(data) > MODULE_CAP:
            proc.kill()
            raise ActionError(f"cannot decompress {path}: more than {MODULE_CAP // MiB} MiB")
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            raise ActionError(f"cannot decompress {path}: zstd did not finish") from exc
    if code != 0:
        raise ActionError(f"cannot decompress {path}: zstd exit {code}")
    return data


class Loader(ABC):
    """Loads one module of the running kernel by name."""

    name: str = "loader"

    @abstractmethod
    def load(self, module: str, index: ModuleIndex, root: HostRoot) -> None:
        """Load ``module`` (its dependencies must be loaded already). Already loaded is fine.

        Raises ActionError with one line naming the cause (absent, signature, modules_disabled,
        lockdown, LSM denial, ...).
        """

    def unload(self, module: str, root: HostRoot) -> None:
        """Unload ``module`` if nothing uses it (``delete_module`` with O_NONBLOCK)."""
        name = valid_module_name(module)
        try:
            delete_module(name)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return  # not loaded
            raise ActionError(f"cannot unload {name}: {exc.strerror}") from exc

    def describe(self) -> str:
        return self.name


class PythonLoader(Loader):
    """``finit_module``/``init_module`` through ctypes; no kmod needed."""

    name = "python"

    def __init__(self, machine: str | None = None) -> None:
        self.syscalls = syscall_numbers(machine)  # ActionError on an unknown architecture
        self.kernel_decompress: bool | None = None  # learnt on the first compressed file
        self.used_init_module = False

    def describe(self) -> str:
        return "python (finit_module/init_module)"

    def load(self, module: str, index: ModuleIndex, root: HostRoot) -> None:
        name = valid_module_name(module)
        if name in (loaded_modules(root) or frozenset()):
            return
        path = module_file(name, index, root)
        if not os.path.lexists(path):
            raise ActionError(
                f"cannot load {name}: module file {path} is absent on disk "
                "(modules.dep lists it; the module tree is incomplete)"
            )
        try:
            fd = open_regular(path)  # a FIFO or device in the tree must not block or be loaded
        except InputError as exc:
            raise ActionError(f"cannot load {name}: {exc.one_line()}") from exc
        try:
            if compression_of(path) is None:
                self._call(name, path, root, lambda: finit_module(fd, 0))
                return
            if self.kernel_decompress is not False:
                try:
                    finit_module(fd, MODULE_INIT_COMPRESSED_FILE)
                    self.kernel_decompress = True
                    return
                except OSError as exc:
                    if exc.errno == errno.EEXIST:
                        return
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise ActionError(explain(name, exc.errno or 0, root, str(path))) from exc
                    if exc.errno == errno.EOPNOTSUPP:
                        self.kernel_decompress = False
            image = read_module_image(path)
            self.used_init_module = True
            self._call(name, path, root, lambda: init_module(image))
        finally:
            os.close(fd)

    @staticmethod
    def _call(name: str, path: Path, root: HostRoot, call: Callable[[], None]) -> None:
        try:
            call()
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                return
            raise ActionError(explain(name, exc.errno or 0, root, str(path))) from exc


# modprobe prints strerror(); map the texts back to errno values
_ERRNO_BY_TEXT = {
    os.strerror(e): e
    for e in (
        errno.EKEYREJECTED,
        errno.EBADMSG,
        errno.ENOKEY,
        errno.EKEYEXPIRED,
        errno.EPERM,
        errno.EACCES,
        errno.ENOEXEC,
        errno.ENOSYS,
        errno.EBUSY,
        errno.EINVAL,
    )
}


def find_modprobe(root: HostRoot) -> str | None:
    """The host path of the host's modprobe (a link to kmod counts; it resolves in the host)."""
    for candidate in MODPROBE_PATHS:
        if os.path.lexists(root.path(candidate)):
            return candidate
    return None


class ModprobeLoader(Loader):
    """The host's ``modprobe -b NAME``: its modprobe.d configuration and blacklists apply.

    ``method``: ``direct`` (on the node), ``chroot`` (into the host root, from a pod with the host's
    filesystem mounted), ``nsenter`` (into PID 1's mount namespace; needs hostPID and nsenter), or
    ``auto``: direct on the node, chroot under a host root.
    """

    name = "modprobe"

    def __init__(self, root: HostRoot, method: str = "auto") -> None:
        binary = find_modprobe(root)
        if binary is None:
            raise ActionError(
                f"no modprobe on the host ({', '.join(MODPROBE_PATHS)} under {root.root}): "
                "use --loader python"
            )
        self.binary = binary
        if method == "auto":
            method = "direct" if root.is_live else "chroot"
        if method not in ("direct", "chroot", "nsenter"):
            raise InputError("--modprobe-method", f"unknown method {method!r}")
        self.method = method
        self.root = root

    def describe(self) -> str:
        how = {"direct": "", "chroot": f" via chroot {self.root.root}", "nsenter": " via nsenter"}
        return f"modprobe ({self.binary}{how[self.method]})"

    def _argv(self, name: str) -> tuple[list[str], Callable[[], None] | None]:
        argv = [self.binary, "-b", "--", name]
        if self.method == "direct":
            return argv, None
        if self.method == "nsenter":
            nsenter = shutil.which("nsenter")
            if nsenter is None:
                raise ActionError("nsenter not found in this container (install util-linux)")
            return [nsenter, "--target", "1", "--mount", "--", *argv], None
        new_root = str(self.root.root)

        def enter() -> None:
            os.chroot(new_root)
            os.chdir("/")

        return argv, enter

    def load(self, module: str, index: ModuleIndex, root: HostRoot) -> None:
        name = valid_module_name(module)
        if name in (loaded_modules(root) or frozenset()):
            return
        if not index.has(name):
            module_file(name, index, root)  # raises: not in modules.dep
        argv, preexec = self._argv(name)
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                env=_CLEAN_ENV,
                preexec_fn=preexec,
                timeout=120,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ActionError(f"cannot load {name}: modprobe did not finish in 120 s") from exc
        except OSError as exc:
            raise ActionError(f"cannot run {self.describe()}: {exc.strerror}") from exc
        if proc.returncode != 0:
            raise ActionError(self._explain_failure(name, proc.returncode, proc.stderr, root))
        if name not in (loaded_modules(root) or frozenset()):
            raise ActionError(
                f"cannot load {name}: modprobe succeeded but {name} is not loaded (the host's "
                "modprobe.d blacklists it or replaces it with an install rule)"
            )

    def _explain_failure(self, name: str, code: int, stderr: str, root: HostRoot) -> str:
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        text = " ".join(lines)
        if "not found in directory" in text:
            return (
                f"cannot load {name}: the host's modprobe does not find it ({lines[-1]}); "
                "the module is absent from the host's module tree"
            )
        for message, err in _ERRNO_BY_TEXT.items():
            if message in text:
                return explain(name, err, root)
        if "Unknown symbol" in text or os.strerror(errno.ENOENT) in text:
            return explain(name, errno.ENOENT, root)
        last = lines[-1] if lines else "no message"
        return f"cannot load {name}: modprobe exit {code}: {last}"


def choose_loader(kind: LoaderKind, root: HostRoot) -> Loader:
    """``auto``: the host's modprobe when it has one, else the Python loader."""
    if kind is LoaderKind.PYTHON:
        return PythonLoader()
    if kind is LoaderKind.MODPROBE:
        return ModprobeLoader(root)
    if find_modprobe(root) is not None:
        return ModprobeLoader(root)
    return PythonLoader()
