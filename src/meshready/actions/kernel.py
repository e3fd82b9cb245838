"""The three module syscalls, and what the kernel means when it refuses one.

What the kernel says about its state (loaded modules, modules_disabled, lockdown, sig_enforce) is
read by ``meshready.host.kernel_state``. The syscalls are made through ctypes with the numbers of
each architecture's syscall table (``arch/x86/entry/syscalls/syscall_64.tbl``,
``include/uapi/asm-generic/unistd.h`` for arm64).
"""

from __future__ import annotations

import ctypes
import errno
import os

from meshready.actions.libc import libc
from meshready.errors import ActionError
from meshready.host.kernel_state import kernel_guard, module_refcount
from meshready.host.modindex import MODULE_NAME
from meshready.host.root import HostRoot

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
    except KeyError as exc:
        raise ActionError(
            f"the python loader knows the module syscalls of x86_64 and aarch64, not {arch} "
            "(use --loader modprobe)"
        ) from exc


def _check(result: int) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def finit_module(fd: int, flags: int = 0) -> None:
    nr = syscall_numbers()["finit_module"]
    _check(
        libc().syscall(
            ctypes.c_long(nr), ctypes.c_int(fd), ctypes.c_char_p(b""), ctypes.c_int(flags)
        )
    )


def init_module(image: bytes) -> None:
    nr = syscall_numbers()["init_module"]
    buf = ctypes.create_string_buffer(image, len(image))
    _check(libc().syscall(ctypes.c_long(nr), buf, ctypes.c_ulong(len(image)), ctypes.c_char_p(b"")))


def delete_module(name: str) -> None:
    nr = syscall_numbers()["delete_module"]
    _check(
        libc().syscall(ctypes.c_long(nr), ctypes.c_char_p(name.encode()), ctypes.c_uint(O_NONBLOCK))
    )


# --------------------------------------------------------------------------- reads


def refcount(module: str, root: HostRoot) -> int | None:
    """How many users hold ``module`` (a module name, checked: it becomes a /sys path)."""
    return module_refcount(root, valid_module_name(module))


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
