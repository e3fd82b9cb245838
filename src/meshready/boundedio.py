"""Bounded reads of files a user names or a host holds: the one way meshready reads input.

Every read here:

- opens without blocking (``O_NONBLOCK``), so a FIFO with no writer or a device cannot hang the
  caller, then insists on a regular file (``fstat``; the kernel's ``/proc`` and ``/sys`` files are
  regular files of size 0 and are read to their end like any other);
- stops at a size cap and raises :class:`InputError` saying so, instead of reading ``/dev/zero``
  or a multi-gigabyte file into memory;
- decompresses gzip, xz and zstd only up to a cap on the *output*, so a small bomb is refused
  after the cap, not after filling memory.

Standard input (``-``) is read with the same cap. Errors carry the path as their source.
"""

from __future__ import annotations

import errno
import io
import lzma
import os
import stat
import sys
import zlib
from pathlib import Path
from typing import BinaryIO

from meshready.errors import InputError

MiB = 1024 * 1024
# Caps sized well above real inputs: an iptables-save of a 5,000-service kube-proxy node is about
# 50 MB; a modules.alias about 1.5 MB; a kernel config about 300 kB; a module up to about 20 MB.
DEFAULT_CAP = 64 * MiB
SMALL_CAP = 1 * MiB  # kubeconfigs, one-value /proc files, modules-load.d files
CHUNK = 1 * MiB


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    if exc.errno == errno.EISDIR:
        return "is a directory"
    return exc.strerror or str(exc)


def _describe_mode(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: Path | str, source: str | None = None) -> int:
    """A read-only descriptor on PATH, which must be a regular file; never blocks on open."""
    where = source or str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as exc:
        raise InputError(where, f"cannot read ({_why(exc)})") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise InputError(where, f"cannot read: {_describe_mode(mode)}, not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_fd(fd: int, cap: int, where: str) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = os.read(fd, min(CHUNK, cap + 1 - total))
        except BlockingIOError as exc:
            raise InputError(where, "cannot read: no data without waiting") from exc
        except OSError as exc:
            raise InputError(where, f"cannot read ({_why(exc)})") from exc
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
        if total > cap:
            raise InputError(where, f"too large: more than {_size(cap)} (the limit for this input)")
    return b"".join(parts)


def _size(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB and n % MiB == 0 else f"{n} bytes"


def read_bytes(path: Path | str, *, cap: int = DEFAULT_CAP, source: str | None = None) -> bytes:
    """The whole content of regular file PATH (``-``: standard input), at most CAP bytes."""
    where = source or str(path)
    if str(path) == "-":
        return read_stream(sys.stdin.buffer, cap=cap, source=source or "-")
    fd = open_regular(path, where)
    try:
        return _read_fd(fd, cap, where)
    finally:
        os.close(fd)


def read_stream(stream: BinaryIO, *, cap: int = DEFAULT_CAP, source: str = "-") -> bytes:
    """At most CAP bytes of an already open stream (standard input)."""
    try:
        data = stream.read(cap + 1)
    except OSError as exc:
        raise InputError(source, f"cannot read ({_why(exc)})") from exc
    if len(data) > cap:
        raise InputError(source, f"too large: more than {_size(cap)} (the limit for this input)")
    return data


def read_text(
    path: Path | str,
    *,
    cap: int = DEFAULT_CAP,
    source: str | None = None,
    errors: str = "replace",
) -> str:
    """Text (UTF-8, bad bytes replaced unless ERRORS says otherwise) of a regular file."""
    data = read_bytes(path, cap=cap, source=source)
    try:
        return data.decode("utf-8", errors)
    except UnicodeDecodeError as exc:
        raise InputError(source or str(path), f"not a text file (not UTF-8: {exc.reason})") from exc


def read_text_or_none(path: Path | str, *, cap: int = SMALL_CAP) -> str | None:
    """Like :func:`read_text`, None when the file is absent or unreadable (optional host files)."""
    try:
        return read_text(path, cap=cap)
    except InputError:
        return None


def read_maybe_compressed(
    path: Path | str, *, cap: int = DEFAULT_CAP, source: str | None = None
) -> bytes:
    """The content of PATH, decompressed when it starts with a gzip, xz or zstd magic."""
    data = read_bytes(path, cap=cap, source=source)
    return decompress(data, kind=sniff(data), cap=cap, source=source or str(path))


def sniff(data: bytes) -> str | None:
    if data[:2] == b"\x1f\x8b":
        return "gz"
    if data[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if data[:4] == b"\x28\xb5\x2f\xfd":
        return "zst"
    return None


def decompress(data: bytes, *, kind: str | None, cap: int, source: str) -> bytes:
    """DATA decompressed (``gz``, ``xz``, ``zst``; None: as it is), refused past CAP bytes out."""
    if kind is None:
        return data
    try:
        if kind == "gz":
            return _capped_zlib(data, cap, source)
        if kind == "xz":
            return _capped_lzma(data, cap, source)
        if kind == "zst":
            return _capped_zstd(data, cap, source)
    except (lzma.LZMAError, zlib.error, OSError, EOFError, ValueError) as exc:
        raise InputError(source, f"bad {kind} data ({exc})") from exc
    raise ValueError(f"unknown compression {kind!r}")


def _too_big(source: str, cap: int) -> InputError:
    return InputError(source, f"decompresses to more than {_size(cap)} (the limit for this input)")


def _capped_zlib(data: bytes, cap: int, source: str) -> bytes:
    out: list[bytes] = []
    total = 0
    rest = data
    # gzip files may hold several members; each is decompressed in turn
    while rest:
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        chunk = d.decompress(rest, cap + 1 - total)
        while True:
            out.append(chunk)
            total += len(chunk)
            if total > cap:
                raise _too_big(source, cap)
            if d.eof or not d.unconsumed_tail:
                break
            chunk = d.decompress(d.unconsumed_tail, cap + 1 - total)
        if not d.eof:
            raise EOFError("compressed data ended before the end-of-stream marker")
        rest = d.unused_data.lstrip(b"\0")
    return b"".join(out)


def _capped_lzma(data: bytes, cap: int, source: str) -> bytes:
    d = lzma.LZMADecompressor()
    out = d.decompress(data, max_length=cap + 1)
    if len(out) > cap:
        raise _too_big(source, cap)
    if not d.eof:
        if d.needs_input:
            raise EOFError("compressed data ended before the end-of-stream marker")
        raise _too_big(source, cap)
    return out


def _capped_zstd(data: bytes, cap: int, source: str) -> bytes:
    """zstd: the standard library from Python 3.14, or the ``zstandard`` package."""
    import importlib

    try:
        zstd = importlib.import_module("compression.zstd")
    except ImportError:
        zstd = None
    if zstd is not None:
        d = zstd.ZstdDecompressor()
        out: bytes = d.decompress(data, max_length=cap + 1)
        if len(out) > cap or not d.eof:
            if not d.eof and d.needs_input:
                raise EOFError("compressed data ended before the end-of-stream marker")
            raise _too_big(source, cap)
        return out
    try:
        zstandard = importlib.import_module("zstandard")
    except ImportError as exc:
        raise InputError(
            source, "zstd data: needs Python 3.14 or the zstandard package to decompress"
        ) from exc
    pieces: list[bytes] = []
    total = 0
    reader = zstandard.ZstdDecompressor().read_to_iter(io.BytesIO(data), write_size=CHUNK)
    for piece in reader:
        total += len(piece)
        if total > cap:
            raise _too_big(source, cap)
        pieces.append(piece)
    return b"".join(pieces)


def is_regular(path: Path | str) -> bool:
    """PATH is (a link to) a regular file; False for FIFOs, devices, directories, loops."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False
