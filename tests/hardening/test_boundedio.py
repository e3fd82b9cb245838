"""meshready.boundedio: the one way input files are read (regular files, caps, no blocking)."""

from __future__ import annotations

import gzip
import lzma
import os
import random
import shlex
from pathlib import Path

import pytest

from meshready.boundedio import (
    decompress,
    read_bytes,
    read_maybe_compressed,
    read_text,
    read_text_or_none,
)
from meshready.errors import InputError
from meshready.rules.xt_spec import split_line


def test_regular_files_are_read(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"abc\xff")
    assert read_bytes(path) == b"abc\xff"
    assert read_text(path) == "abc\ufffd"
    with pytest.raises(InputError, match="not a text file"):
        read_text(path, errors="strict")


@pytest.mark.parametrize("kind", ["fifo", "dir", "device", "loop", "missing"])
def test_anything_but_a_regular_file_is_refused_without_blocking(tmp_path: Path, kind: str) -> None:
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
    elif kind == "device":
        path = Path("/dev/zero")
    elif kind == "loop":
        path.symlink_to(path)
    with pytest.raises(InputError) as err:
        read_bytes(path)
    assert err.value.source == str(path)
    assert read_text_or_none(path) is None


def test_size_cap(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b"x" * 1001)
    assert read_bytes(path, cap=1001) == b"x" * 1001
    with pytest.raises(InputError, match="too large"):
        read_bytes(path, cap=1000)


def test_decompression_is_capped(tmp_path: Path) -> None:
    data = b"\0" * (4 << 20)
    for kind, packed in (("gz", gzip.compress(data)), ("xz", lzma.compress(data))):
        assert decompress(packed, kind=kind, cap=4 << 20, source="s") == data
        with pytest.raises(InputError, match="decompresses to more than"):
            decompress(packed, kind=kind, cap=1 << 20, source="s")
    # several gzip members, as `cat a.gz b.gz` makes
    two = gzip.compress(b"a\n") + gzip.compress(b"b\n")
    assert decompress(two, kind="gz", cap=100, source="s") == b"a\nb\n"
    with pytest.raises(InputError, match="bad gz data"):
        decompress(gzip.compress(data)[:100], kind="gz", cap=8 << 20, source="s")
    path = tmp_path / "config.gz"
    path.write_bytes(gzip.compress(b"CONFIG_X=y\n"))
    assert read_maybe_compressed(path) == b"CONFIG_X=y\n"


def test_quoted_rule_lines_split_exactly_as_shlex() -> None:
    rng = random.Random(13)
    alphabet = ["a", " ", '"', "'", "b", "  ", "x y", "--comment", "\t"]
    for _ in range(20000):
        line = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 14)))
        try:
            expected: object = shlex.split(line, comments=False, posix=True)
        except ValueError:
            expected = InputError
        try:
            got: object = split_line(line, "s", 1)
        except InputError:
            got = InputError
        assert got == expected, repr(line)
