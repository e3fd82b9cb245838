"""The kernel's build configuration: ``/proc/config.gz``, ``/boot/config-R`` or
``/lib/modules/R/config`` (the order node-feature-discovery uses)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from meshready.boundedio import MiB, read_maybe_compressed
from meshready.errors import InputError
from meshready.host.root import HostRoot

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


@dataclass(frozen=True)
class KernelConfig:
    source: str
    values: dict[str, str]  # symbol -> value ("y", "m", or a string/number); unset symbols absent

    def state(self, symbol: str) -> str | None:
        """'y', 'm' or None (not set)."""
        value = self.values.get(symbol)
        return value if value in ("y", "m") else None

    @property
    def modules_supported(self) -> bool:
        return self.values.get("CONFIG_MODULES") == "y"


def parse_config(text: str, source: str) -> KernelConfig:
    values: dict[str, str] = {}
    seen_config = False
    for lineno, line in enumerate(text.splitlines(), start=1):
        line = line.rstrip()
        if not line:
            continue
        match = _SET.match(line)
        if match:
            values[match.group(1)] = match.group(2).strip('"')
            seen_config = True
            continue
        if _UNSET.match(line):
            seen_config = True
            continue
        if line.startswith("#"):
            continue
        raise InputError(source, f"not a kernel config line: {line[:60]!r}", lineno)
    if not seen_config:
        raise InputError(source, "no CONFIG_ lines: not a kernel config")
    return KernelConfig(source=source, values=values)


# A kernel config is about 300 kB; /proc/config.gz about 60 kB.
CONFIG_CAP = 16 * MiB


def read_config_file(path: Path) -> KernelConfig:
    raw = read_maybe_compressed(path, cap=CONFIG_CAP)
    return parse_config(raw.decode("utf-8", "replace"), str(path))


def find_config(root: HostRoot, release: str) -> Path | None:
    candidates = [
        root.path("/proc/config.gz") if root.is_live else None,
        root.path(f"/boot/config-{release}"),
        root.path(f"/lib/modules/{release}/config"),
        root.path(f"/usr/lib/modules/{release}/config"),
    ]
    if not root.is_live:
        # The pod shares the node's kernel, so /proc/config.gz is the node's too; keep it last.
        candidates.append(root.path("/proc/config.gz"))
    for path in candidates:
        if path is not None and path.is_file():
            return path
    return None
