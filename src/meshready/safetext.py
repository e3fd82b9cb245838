"""Values from input that end up in a generated file or script: one line, nothing that ends it.

A file name or a kernel release written into a comment header must not break out of the comment:
a newline there would start a line that systemd-modules-load reads as a module, or that a shell
runs. Control characters (C0, DEL, C1) and the Unicode line and paragraph separators are refused,
since Python's ``str.splitlines`` splits on them too.
"""

from __future__ import annotations

import unicodedata

from meshready.errors import InputError

MAX_LENGTH = 4096


def bad_character(value: str) -> str | None:
    """The first character of VALUE that may not appear in one line of generated text."""
    for char in value:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
            return char
    return None


def one_line(value: str, source: str, what: str = "value") -> str:
    """VALUE unchanged, or InputError(SOURCE) if it holds a control character or is huge."""
    char = bad_character(value)
    if char is not None:
        raise InputError(
            source, f"{what} {value[:60]!r} holds a control character ({char!a}): refused"
        )
    if len(value) > MAX_LENGTH:
        raise InputError(source, f"{what} is longer than {MAX_LENGTH} characters")
    return value
