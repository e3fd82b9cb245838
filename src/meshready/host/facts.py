"""HostFacts: everything assessment needs to know about one kernel, from one of three sources."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field, replace
from pathlib import Path

from meshready.boundedio import SMALL_CAP, read_text
from meshready.errors import InputError
from meshready.host.kconfig import KernelConfig, find_config, read_config_file
from meshready.host.kernel_state import (
    modprobe_helper,
    modules_disabled,
    read_optional,
    read_proc_modules,
    running_release,
    sysfs_modules,
)
from meshready.host.loaded import LoadedModules, parse_lsmod
from meshready.host.modindex import ModuleIndex, find_modules_dir, load_index
from meshready.host.root import HostRoot
from meshready.safetext import one_line


@dataclass(frozen=True)
class HostFacts:
    source: str  # "live", "host-root:/host", "offline"
    release: str | None
    arch: str | None
    loaded: LoadedModules | None  # None: not known (offline without lsmod)
    index: ModuleIndex | None
    config: KernelConfig | None
    # False: the kernel has no loadable module support (no /proc/modules, CONFIG_MODULES unset)
    module_support: bool | None
    sysfs_modules: frozenset[str] | None = None
    modprobe_path: str | None = None  # /proc/sys/kernel/modprobe: the helper the kernel runs
    modules_disabled: bool | None = None  # /proc/sys/kernel/modules_disabled
    # /etc/modules-load.d and friends: file -> module names listed (what loads at boot)
    boot_modules: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.source != "offline"

    def kernel_only(self) -> HostFacts:
        """The same kernel with what happens to be loaded now forgotten (what it needs, not has).

        /sys/module lists loaded modules too; only those not in /proc/modules show a built-in.
        """
        loaded = self.loaded.names if self.loaded is not None else frozenset()
        sysfs = self.sysfs_modules - loaded if self.sysfs_modules is not None else None
        return replace(self, loaded=None, sysfs_modules=sysfs)


# systemd-modules-load's search path (modules-load.d(5)); later directories lose on equal names.
MODULES_LOAD_DIRS = ("/etc/modules-load.d", "/run/modules-load.d", "/usr/lib/modules-load.d")


def read_boot_modules(root: HostRoot) -> dict[str, tuple[str, ...]]:
    """Module names each modules-load.d file lists (``#`` and ``;`` start comments)."""
    out: dict[str, tuple[str, ...]] = {}
    for directory in MODULES_LOAD_DIRS:
        try:
            files = sorted(p for p in root.path(directory).iterdir() if p.name.endswith(".conf"))
        except OSError:
            continue
        for path in files:
            text = read_optional(path)
            if text is None:
                continue
            names = []
            for line in text.splitlines():
                word = line.split("#", 1)[0].split(";", 1)[0].strip()
                if word:
                    names.append(word.replace("-", "_"))
            out[f"{directory}/{path.name}"] = tuple(names)
    return out


def gather_live(root: HostRoot | None = None, modules_dir: Path | None = None) -> HostFacts:
    """The running kernel, with the module tree and config from ``root`` (``/`` on the node)."""
    root = root or HostRoot()
    if not root.is_live and not root.root.is_dir():  # missing, a file, a symbolic link loop
        raise InputError("--host-root", f"{root.root}: not a directory (the node's root mounted)")
    release = running_release(root)
    loaded = read_proc_modules(root)
    module_support: bool | None = loaded is not None

    index: ModuleIndex | None = None
    if modules_dir is not None:
        index = load_index(find_modules_dir(modules_dir, release))
    else:
        for base in ("/lib/modules", "/usr/lib/modules"):
            candidate = root.path(f"{base}/{release}")
            if (candidate / "modules.dep").is_file():
                index = load_index(candidate)
                break

    config_path = find_config(root, release)
    config = read_config_file(config_path) if config_path else None
    if config is not None and loaded is None:
        module_support = config.modules_supported

    return HostFacts(
        source=root.describe(),
        release=release,
        arch=platform.machine() or None,
        loaded=loaded,
        index=index,
        config=config,
        module_support=module_support,
        sysfs_modules=sysfs_modules(root),
        modprobe_path=modprobe_helper(root),
        modules_disabled=modules_disabled(root),
        boot_modules=read_boot_modules(root),
    )


def gather_offline(
    lsmod: Path | None,
    release: str | None,
    modules_dir: Path | None = None,
    config: Path | None = None,
    arch: str | None = None,
) -> HostFacts:
    """A kernel described by files: ``lsmod`` output, a release, optionally its module tree and config."""
    if release is not None:
        # used in paths (<modules-dir>/<release>) and written into generated headers
        one_line(release, "--kernel-release", "kernel release")
        if "/" in release or release in (".", ".."):
            raise InputError("--kernel-release", f"not a kernel release: {release!r}")
    loaded = None
    if lsmod is not None:
        text = read_text(lsmod, cap=16 * SMALL_CAP) if str(lsmod) != "-" else ""
        loaded = parse_lsmod(text, str(lsmod))
    index = load_index(find_modules_dir(modules_dir, release)) if modules_dir else None
    if config is None and index is not None and (Path(index.directory) / "config").is_file():
        config = Path(index.directory) / "config"  # /lib/modules/R/config, as some distros ship
    kconfig = read_config_file(config) if config else None
    if release is None and index is not None:
        release = Path(index.directory).name
    return HostFacts(
        source="offline",
        release=release,
        arch=arch,
        loaded=loaded,
        index=index,
        config=kconfig,
        module_support=kconfig.modules_supported if kconfig else (True if loaded else None),
    )
