"""The running kernel's own state under ``/proc`` and ``/sys``: its release, what is loaded, and
whether it accepts modules at all.

The one reader of each of these files; ``actions`` asks here before and after it loads. Read through
:class:`HostRoot`: ``/proc`` and ``/sys`` are the running kernel's from a pod too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from meshready.boundedio import SMALL_CAP, read_text_or_none
from meshready.host.loaded import LoadedModules, parse_proc_modules
from meshready.host.modindex import MODULE_NAME
from meshready.host.root import HostRoot


def read_optional(path: Path) -> str | None:
    """An optional host file: None when absent, unreadable, not a regular file, or oversized."""
    return read_text_or_none(path, cap=4 * SMALL_CAP)


def _read(root: HostRoot, host_path: str) -> str | None:
    return read_optional(root.path(host_path))


def running_release(root: HostRoot) -> str:
    text = _read(root, "/proc/sys/kernel/osrelease")
    return text.strip() if text else os.uname().release


def read_proc_modules(root: HostRoot) -> LoadedModules | None:
    """``/proc/modules``; None when the kernel has no module support or it is unreadable."""
    path = root.path("/proc/modules")
    text = read_optional(path)
    return parse_proc_modules(text, str(path)) if text is not None else None


def loaded_modules(root: HostRoot) -> frozenset[str] | None:
    """Names in ``/proc/modules`` (None when the kernel has no module support or it is unreadable)."""
    loaded = read_proc_modules(root)
    return loaded.names if loaded is not None else None


def sysfs_modules(root: HostRoot) -> frozenset[str] | None:
    """Names under ``/sys/module``: loaded modules, and built-in ones with a parameter or a
    version (Documentation/ABI/stable/sysfs-module)."""
    try:
        return frozenset(p.name for p in root.path("/sys/module").iterdir())
    except OSError:
        return None


def module_refcount(root: HostRoot, module: str) -> int | None:
    """``/sys/module/NAME/refcnt``: how many users hold ``module``; None when unknown."""
    if not MODULE_NAME.fullmatch(module):
        return None  # not a module name: it would be a path
    text = _read(root, f"/sys/module/{module}/refcnt")
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None


def modprobe_helper(root: HostRoot) -> str | None:
    """``/proc/sys/kernel/modprobe``: the program the kernel runs for ``request_module()``."""
    text = _read(root, "/proc/sys/kernel/modprobe")
    return text.strip() if text else None


def modules_disabled(root: HostRoot) -> bool | None:
    """``/proc/sys/kernel/modules_disabled``: True once set, the kernel loads no more modules."""
    text = _read(root, "/proc/sys/kernel/modules_disabled")
    return (text.strip() == "1") if text else None


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
    # securityfs lists every mode and brackets the active one (security/lockdown/lockdown.c)
    lockdown_text = _read(root, "/sys/kernel/security/lockdown")
    lockdown = None
    if lockdown_text is not None:
        match = re.search(r"\[(\w+)\]", lockdown_text)
        lockdown = match.group(1) if match else None
    enforce = _read(root, "/sys/module/module/parameters/sig_enforce")
    return KernelGuard(
        modules_disabled=modules_disabled(root),
        lockdown=lockdown,
        sig_enforce=(enforce.strip() in ("Y", "1")) if enforce is not None else None,
    )
