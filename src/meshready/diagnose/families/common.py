"""Small readings shared by the extractors."""

from __future__ import annotations

import re
from typing import TypeAlias

from meshready.diagnose.errnos import is_permission
from meshready.diagnose.kinds import Kind, LineView, Signal, Step
from meshready.knowledge.log_causes import Errno
from meshready.knowledge.requests import Backend, Family

Q = r"[`'\"‘’]?"
NAME = r"[\w.+-]+"

_CLEANUP = re.compile(
    r"(?:^|\s)(?:-[DFXZCLS]|-[nvx]*L[nvx]*|--(?:delete|flush|delete-chain|zero|check|list|"
    r"list-rules))(?:\s|$)|\b(?:ip6?tables(?:-legacy|-nft)?-save)\b|"
    r"^(?:sudo\s+)?nft\s+(?:-\w+\s+)*(?:delete|flush|destroy|list)\b",
    re.IGNORECASE,
)
_SETUP = re.compile(
    r"(?:^|\s)(?:-[AINRP]|--(?:append|insert|new-chain|new|replace|policy))(?:\s|$)|-restore\b|"
    r"^(?:sudo\s+)?nft\s+(?:-\w+\s+)*(?:add|insert|create|replace|-f)\b|'add |\"add ",
    re.IGNORECASE,
)


_Trie: TypeAlias = "dict[str, _Trie]"


def any_of(words: tuple[str, ...]) -> re.Pattern[str]:
    """A pattern whose ``search`` tells whether any of ``words`` is in a text (literally,
    case-sensitively; what it matched is not meant to be read). Built as a trie: the engine tries
    one branch per next character rather than one per word, several times faster."""
    tree: _Trie = {}
    for word in words:
        node = tree
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}
    return re.compile(_trie(tree))


def _trie(node: _Trie) -> str:
    if "" in node:
        return ""  # a word ends here: longer ones starting with it add nothing to a yes/no test
    alts = [re.escape(ch) + _trie(child) for ch, child in sorted(node.items())]
    return alts[0] if len(alts) == 1 else f"(?:{'|'.join(alts)})"


def step_of(command: str) -> Step:
    """Is ``command`` tearing down / inspecting (failures expected) or setting up?"""
    if _CLEANUP.search(command):
        return Step.CLEANUP
    if _SETUP.search(command):
        return Step.SETUP
    return Step.UNKNOWN


def permission_denied(
    view: LineView,
    errno: Errno | None,
    words: str,
    *,
    table: str | None = None,
    family: Family | None = None,
    name: str | None = None,
    ext_kind: str | None = None,
    backend: Backend | None = None,
    detail: str = "",
) -> Signal | None:
    """The PERMISSION signal when the errno a tool printed is EPERM or EACCES (whatever it was
    doing: every family reads such a line the same way); None for any other errno."""
    if not is_permission(errno):
        return None
    return view.signal(
        Kind.PERMISSION,
        errno=errno,
        errno_text=words,
        table=table,
        family=family,
        name=name,
        ext_kind=ext_kind,
        backend=backend,
        detail=detail,
    )


def family_of(text: str) -> Family:
    return Family.IPV6 if re.search(r"\bip6", text, re.IGNORECASE) else Family.IPV4


def legacy_or_nft(text: str) -> Backend | None:
    if "(nf_tables)" in text or "-nft" in text:
        return Backend.NFT
    if "(legacy)" in text or "-legacy" in text:
        return Backend.LEGACY
    return None


def looks_like_chain(name: str) -> bool:
    """Extension targets are upper-case words without separators (REDIRECT, CT, TPROXY);
    user chains carry an underscore or dash (ISTIO_OUTPUT, PROXY_INIT_REDIRECT, KUBE-MARK-DROP)."""
    return ("_" in name or "-" in name) and name.upper() == name


def module_name(name: str | None) -> str | None:
    """``xt_owner.ko.xz`` or ``xt-owner`` -> ``xt_owner``."""
    if not name:
        return None
    base = re.sub(r"\.ko(?:\.(?:xz|zst|gz))?$", "", name.rsplit("/", 1)[-1])
    return base.replace("-", "_")
