"""What the running kernel says about loading modules: the reads and the three module syscalls.

Reads go through :class:`HostRoot` (``/proc`` and ``/sys`` are the running kernel's, from a pod too).
The syscalls are made through ctypes with the numbers of each architecture's syscall table
(``arch/x86/entry/syscalls/syscall_64.tbl``, ``include/uapi/asm-generic/unistd.h`` for arm64).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from dataclasses import dataclass
from functools import cache

from meshready.boundedio import SMALL_CAP, read_text_or_none
from meshready.errors import ActionError
from meshready.host.root import HostRoot

# module names as the kernel and kmod write them; never a path, never an option
MODULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")

SYSCALLS: dict[str, dict[str, int]] = {
    "x86_64": {"finit_module": 313, "init_module": 175, "delete_module": 176},
    "aarch64": {"finit_module": 273, "init_module": 105, "delete_module": 106},
}
_MACHINE_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}

MODULE_INIT_COMPRESSED_FILE = 4  # include/uapi/linux/module.h (5.17+)
O_NONBLOCK = os.O_NONBLOCK  # delete_module: fail instead of waiting for users to go
MODULE_SIG_MAGIC = b"~Module signature appended~\n"  # include/linux/module_signature.h


def valid_module_name(name: str) -> str:
    """``name`` normalized like kmod (``-`` -> ``_``), or ActionError if it is not a module name."""
    if not isinstance(name, str) or not MODULE_NAME.fullmatch(name) or len(name) > 55:
        raise ActionError(f"refusing {name!r}: not a kernel module name ([A-Za-z0-9_-]+)")
    return name.replace("-", "_")


def syscall_numbers(machine: str | None = None) -> dict[str, int]:
    arch = machine or os.uname().machine
    arch = _MACHINE_ALIASES.get(arch, arch)
    try:
        return SYSCALLS[arch]
    except KeyError:
        raise ActionError(
            f"the python loader knows the module syscalls of x86_64 and aarch64, not {arch} "
            "(use --loader modprobe)"
        ) from None


@cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


def _check(result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def finit_module(fd: int, flags: int = 0) -> None:
    nr = syscall_numbers()["finit_module"]
    _check(
        _libc().syscall(
            ctypes.c_long(nr), ctypes.c_int(fd), ctypes.c_char_p(b""), ctypes.c_int(flags)
        )
    )


def init_module(image: bytes) -> None:
    nr = syscall_numbers()["init_module"]
    buf = ctypes.create_string_buffer(image, len(image))
    _check(
        _libc().syscall(ctypes.c_long(nr), buf, ctypes.c_ulong(len(image)), ctypes.c_char_p(b""))
    )


def delete_module(name: str) -> None:
    nr = syscall_numbers()["delete_module"]
    _check(
        _libc().syscall(
            ctypes.c_long(nr), ctypes.c_char_p(name.encode()), ctypes.c_uint(O_NONBLOCK)
        )
    )


# --------------------------------------------------------------------------- reads


def _read(root: HostRoot, host_path: str) -> str | None:
    return read_text_or_none(root.path(host_path), cap=4 * SMALL_CAP)


def loaded_modules(root: HostRoot) -> frozenset[str] | None:
    """Names in /proc/modules (None when the kernel has no module support or it is unreadable)."""
    text = _read(root, "/proc/modules")
    if text is None:
        return None
    return frozenset(
        line.split()[0].replace("-", "_") for line in text.splitlines() if line.strip()
    )


def refcount(module: str, root: HostRoot) -> int | None:
    text = _read(root, f"/sys/module/{valid_module_name(module)}/refcnt")
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


@dataclass(frozen=True)
class KernelGuard:
    """Kernel settings that decide whether modules can be loaded at all, and which."""

    modules_disabled: bool | None  # /proc/sys/kernel/modules_disabled
    lockdown: str | None  # "none", "integrity", "confidentiality"; None: unknown (no securityfs)
    sig_enforce: bool | None  # /sys/module/module/parameters/sig_enforce

    @property
    def needs_signed(self) -> bool:
        """True when the kernel refuses modules without a valid signature."""
        return bool(self.sig_enforce) or self.lockdown in ("integrity", "confidentiality")

    def why_signed(self) -> str:
        if self.lockdown in ("integrity", "confidentiality"):
            return f"kernel lockdown ({self.lockdown})"
        return "module signature enforcement (module.sig_enforce)"


def kernel_guard(root: HostRoot) -> KernelGuard:
    disabled = _read(root, "/proc/sys/kernel/modules_disabled")
    lockdown_text = _read(root, "/sys/kernel/security/lockdown")
    lockdown = None
    if lockdown_text is not None:
        match = re.search(r"\[(\w+)\]", lockdown_text)
        lockdown = match.group(1) if match else None
    enforce = _read(root, "/sys/module/module/parameters/sig_enforce")
    return KernelGuard(
        modules_disabled=(disabled.strip() == "1") if disabled is not None else None,
        lockdown=lockdown,
        sig_enforce=(enforce.strip() in ("Y", "1")) if enforce is not None else None,
    )


def has_signature(image: bytes) -> bool:
    return image.endswith(MODULE_SIG_MAGIC)


# --------------------------------------------------------------------------- errors


def explain(module: str, err: int, root: HostRoot, path: str | None = None) -> str:
    """One line saying why the kernel refused ``module`` with ``err``."""
    where = f" ({path})" if path else ""
    if err == errno.ENOENT:
        return (
            f"cannot load {module}: the kernel reports an unknown symbol (a module it needs is "
            f"not loaded, or {module}{where} was built for another kernel)"
        )
    if err in (errno.EKEYREJECTED, errno.EBADMSG, errno.ENOKEY, errno.EKEYEXPIRED):
        return (
            f"cannot load {module}: the kernel rejected its signature ({os.strerror(err)}): "
            f"{module}{where} has a signature this kernel cannot verify (corrupt, or made with a "
            "key it does not trust), or none while signatures are enforced"
        )
    if err == errno.EPERM:
        guard = kernel_guard(root)
        if guard.modules_disabled:
            return (
                f"cannot load {module}: kernel.modules_disabled=1, this kernel accepts no more "
                "modules until it reboots (load them at boot: meshready render bootstrap)"
            )
        if guard.lockdown in ("integrity", "confidentiality"):
            return (
                f"cannot load {module}: kernel lockdown ({guard.lockdown}) refuses it "
                f"(lockdown loads only modules signed with a trusted key; {module}{where} is not)"
            )
        return (
            f"cannot load {module}: operation not permitted (needs CAP_SYS_MODULE in the host's "
            "initial user namespace: run as root on the node or in a privileged pod)"
        )
    if err == errno.EACCES:
        return (
            f"cannot load {module}: permission denied by a security module (SELinux, AppArmor, "
            "LoadPin or an IMA policy refuses module loading here; see the audit log)"
        )
    if err == errno.ENOEXEC:
        return (
            f"cannot load {module}: invalid module format ({module}{where} does not match the "
            "running kernel)"
        )
    if err == errno.ENOSYS:
        return f"cannot load {module}: this kernel has no loadable module support"
    if err == errno.EBUSY:
        return f"cannot load {module}: the kernel is busy loading or unloading it; try again"
    return f"cannot load {module}: {os.strerror(err)} (errno {errno.errorcode.get(err, err)})"
