"""This process as the kernel sees it: the capabilities it runs with (``/proc/self/status``)."""

from __future__ import annotations

import re

from meshready.boundedio import SMALL_CAP, read_text_or_none

STATUS = "/proc/self/status"

# include/uapi/linux/capability.h: "#define CAP_SETUID 7"
CAP_SETUID = 7

# proc(5), /proc/pid/status: "CapEff: Mask of capabilities enabled in the effective set", in hex.
_CAP_EFF = re.compile(r"^CapEff:\s*([0-9a-f]+)", re.M)


def parse_effective_capabilities(status: str) -> int:
    """The effective capability set in a ``/proc/PID/status`` text; 0 when it names none."""
    match = _CAP_EFF.search(status)
    return int(match.group(1), 16) if match else 0


def effective_capabilities(status_path: str = STATUS) -> int | None:
    """This process's effective capability set (bit N is capability N); None when unreadable."""
    status = read_text_or_none(status_path, cap=SMALL_CAP)
    return parse_effective_capabilities(status) if status is not None else None
