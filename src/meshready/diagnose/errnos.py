"""Read the errno a tool printed, the way the tool produced it (knowledge.log_causes.ERRNO_TEXTS).

libiptc and iptables-nft print some errnos with their own words ("Permission denied (you must be
root)" is EPERM, "iptables who? (do you need to insmod?)" is ENOPROTOOPT) and the rest with
strerror(), where a bare "Permission denied" is EACCES. So the longest known wording wins.
"""

from __future__ import annotations

import re

from meshready.knowledge.log_causes import ERRNO_TEXTS, Errno

_PATTERN = re.compile(
    "|".join(
        re.escape(t.text).replace(r"\ ", r"\s+")
        for t in sorted(ERRNO_TEXTS, key=lambda t: -len(t.text))
    ),
    re.IGNORECASE,
)
_BY_TEXT = {t.text: t.errno for t in ERRNO_TEXTS}


def read_errno(text: str) -> tuple[Errno | None, str]:
    """(errno, the words as printed) for the first errno wording in ``text``."""
    m = _PATTERN.search(text)
    if not m:
        return None, ""
    words = " ".join(m.group(0).split()).lower()
    return _BY_TEXT.get(words, Errno.OTHER), m.group(0)


def is_permission(errno: Errno | None) -> bool:
    return errno in (Errno.EPERM, Errno.EACCES)
