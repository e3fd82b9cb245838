"""One extractor per message family. Each module has ``extract(view) -> list[Signal]`` for one
logical line, ``PHRASES``: the distinctive phrases it keys on (what makes a message *known*,
as opposed to the generic failure words the runtime family reads), and ``TRIGGERS``: lower-case
words one of which a line of ASCII text must hold for ``extract`` to read anything in it
(signals.py skips the other lines; a new pattern brings its word)."""

from __future__ import annotations

from meshready.diagnose.families import (
    context,
    iptables_nft,
    libiptc,
    lsm,
    modprobe,
    nft,
    runtime,
    validation,
)

# Order matters only for readability of the evidence; every family sees every line.
SPECIFIC = (lsm, libiptc, iptables_nft, nft, modprobe, validation)

__all__ = [
    "SPECIFIC",
    "context",
    "iptables_nft",
    "libiptc",
    "lsm",
    "modprobe",
    "nft",
    "runtime",
    "validation",
]
