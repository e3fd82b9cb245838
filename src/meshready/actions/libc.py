"""The C library, loaded once, for the few syscalls the standard library does not wrap."""

from __future__ import annotations

import ctypes
from functools import cache


@cache
def libc() -> ctypes.CDLL:
    """The process's libc with ``use_errno=True`` so ``ctypes.get_errno()`` reports a call's errno.

    ``syscall()`` returns a C ``long`` (``man 2 syscall``); ctypes would truncate it to ``int``.
    """
    lib = ctypes.CDLL(None, use_errno=True)
    lib.syscall.restype = ctypes.c_long
    return lib
