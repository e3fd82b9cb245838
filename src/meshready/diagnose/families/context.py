"""Context, never findings on their own: which backend the tools speak, which kernel runs."""

from __future__ import annotations

import re

from meshready.diagnose.families.common import legacy_or_nft
from meshready.diagnose.kinds import Kind, LineView, Signal
from meshready.knowledge.requests import Backend

_VERSION = re.compile(
    r"\b(?P<bin>ip6?tables(?:-nft|-legacy)?(?:-restore|-save)?)\s+v(?P<ver>\d+\.\d+(?:\.\d+)?)"
    r"(?:\s*\((?P<mode>legacy|nf_tables)\))?",
    re.IGNORECASE,
)
_BINARY = re.compile(
    r"\b(?P<bin>ip6?tables-(?:nft|legacy)(?:-restore|-save)?|nft\s+-[fjc]|nft\s+(?:add|insert|"
    r"list|flush|delete)|nftables (?:run|configuration)|native[- ]nftables)\b",
    re.IGNORECASE,
)
_LIB_MODULES = re.compile(r"/lib/modules/(?P<rel>\d[\w.+~-]*)")
_UNAME = re.compile(r"\bLinux\s+\S+\s+(?P<rel>\d+\.\d+\.\d+[\w.+~-]*)")

# In a line of ASCII text, every reading below needs one of these (signals.py skips lines with
# none of them).
TRIGGERS = ("/lib/modules/", "linux ", "tables", "nft")

PHRASES: tuple[re.Pattern[str], ...] = ()


def extract(view: LineView) -> list[Signal]:
    text = view.text
    low = view.low
    out: list[Signal] = []
    if "/lib/modules/" in text:
        for rm in _LIB_MODULES.finditer(text):
            out.append(view.signal(Kind.KERNEL, name=rm.group("rel")))
    if "linux " in low:
        um = _UNAME.search(text)
        if um:
            out.append(view.signal(Kind.KERNEL, name=um.group("rel")))
    if "tables" not in low and "nft" not in low:
        return out
    vm = _VERSION.search(text)
    if vm:
        mode = vm.group("mode")
        backend = (
            Backend.NFT if mode == "nf_tables" else Backend.LEGACY if mode == "legacy" else None
        )
        backend = backend or legacy_or_nft(vm.group("bin"))
        if backend:
            out.append(
                view.signal(
                    Kind.BACKEND, backend=backend, detail=f"{vm.group('bin')} v{vm.group('ver')}"
                )
            )
    bm = _BINARY.search(text)
    if bm:
        b = bm.group("bin").lower()
        named = (
            Backend.NFT if "-nft" in b else Backend.LEGACY if "-legacy" in b else Backend.NFTABLES
        )
        out.append(view.signal(Kind.BACKEND, backend=named, detail=bm.group("bin")))
    return out
