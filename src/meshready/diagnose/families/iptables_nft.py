"""iptables-nft (the nf_tables backend of iptables) messages.

iptables/nft.c prints "Could not fetch rule set generation id: ERRNO" when the first nfnetlink
query fails: EINVAL is the kernel's answer when the nf_tables subsystem is absent
(net/netfilter/nfnetlink.c nfnetlink_rcv_msg), EPROTONOSUPPORT when there is no nfnetlink at all
(net/netlink/af_netlink.c netlink_create), EPERM ("Permission denied (you must be root)",
nft_strerror) when the caller lacks CAP_NET_ADMIN in the namespace's owning user namespace.
"""

from __future__ import annotations

import re

from meshready.diagnose.errnos import read_errno
from meshready.diagnose.families.common import (
    NAME,
    Q,
    family_of,
    looks_like_chain,
    permission_denied,
)
from meshready.diagnose.kinds import Kind, LineView, Signal
from meshready.knowledge.log_causes import Errno
from meshready.knowledge.requests import Backend

_EXT_REVISION = re.compile(
    rf"extension\s+{Q}(?P<name>{NAME}){Q}\s+revision\s+(?P<rev>\d+)\s+not\s+supported",
    re.IGNORECASE,
)
_GENID = re.compile(r"could not fetch rule ?set generation id:?\s*(?P<errno>[^.\n]*)", re.I)
_OBJECT_ADD = re.compile(
    r"(?P<op>TABLE_ADD|CHAIN_ADD|CHAIN_USER_ADD|TABLE_NEW)\s+failed\s*\((?P<errno>[^)]*)\)"
    r"\s*:?\s*(?:(?:table|chain)\s+)?(?P<name>[\w-]+)?",
    re.IGNORECASE,
)
_RULE_OP = re.compile(
    r"(?:line\s+(?P<l>\d+):\s*)?(?P<op>RULE_(?:APPEND|INSERT|REPLACE|DELETE|CHECK|ADD))\s+failed"
    r"\s*\((?P<errno>[^)]*)\)(?::?\s*rule in chain\s+(?P<chain>[\w-]+))?",
    re.IGNORECASE,
)
_CHAIN_NOT_EXIST = re.compile(rf"chain\s+{Q}(?P<name>{NAME}){Q}\s+does not exist", re.IGNORECASE)
_INCOMPATIBLE = re.compile(
    r"(?:chain|table)\s+[`'\"]?[\w-]+[`'\"]?\s+(?:in table\s+[`'\"]?\w+[`'\"]?\s+)?is "
    r"incompatible,?\s+use\s+'?nft'?",
    re.IGNORECASE,
)
_TOOL_ERRNO = re.compile(
    r"\b(?P<bin>ip6?tables(?:-(?:legacy|nft))?(?:-restore|-save)?)(?:\s+v[\d.]+)?"
    r"(?:\s*\([\w_]+\))?\s*:\s*(?P<errno>Invalid argument|Operation not supported|"
    r"Protocol not supported|No such file or directory)",
    re.IGNORECASE,
)
# The errnos _TOOL_ERRNO reads, lower case (in an ASCII line it needs one of them).
_TOOL_ERRNOS = (
    "invalid argument",
    "operation not supported",
    "protocol not supported",
    "no such file or directory",
)
_NFT_NOT_SUPPORTED = re.compile(
    r"\b(?:nf_?tables|nftables)(?: support)?\s+(?:is\s+)?(?:not supported|not available|"
    r"unavailable|not loaded)|\bno (?:nf_?tables|nftables) support",
    re.IGNORECASE,
)

# In a line of ASCII text, every reading below needs one of these (signals.py skips lines with
# none of them): the ``in low`` tests in extract(), "tables" for _NFT_NOT_SUPPORTED and _TOOL_ERRNO.
TRIGGERS = ("revision", "generation id", "failed", "does not exist", "incompatible", "tables")

PHRASES = (
    re.compile(r"extension\s+\S+\s+revision\s+\d+", re.IGNORECASE),
    re.compile(r"rule ?set generation id", re.IGNORECASE),
    re.compile(r"(?:TABLE_ADD|CHAIN_ADD|CHAIN_USER_ADD|TABLE_NEW|RULE_[A-Z]+)"),
    re.compile(r"rule in chain\s+\S+", re.IGNORECASE),
    re.compile(r"chain\s+\S+(?=\s+does not exist)", re.IGNORECASE),
    re.compile(r"use\s+'?nft'?\s+tool", re.IGNORECASE),
    re.compile(
        r"\bip6?tables(?:-\w+)*(?:\s+v[\d.]+)?(?:\s*\(\w+\))?\s*:(?=\s*(?:Invalid argument|"
        r"Operation not supported|Protocol not supported|No such file))",
        re.IGNORECASE,
    ),
    re.compile(r"\b(?:nf_?tables|nftables)(?: support)?\b", re.IGNORECASE),
)


def extract(view: LineView) -> list[Signal]:
    text = view.text
    low = view.low
    out: list[Signal] = []
    if "revision" in low:
        m = _EXT_REVISION.search(text)
        if m:
            out.append(
                view.signal(
                    Kind.EXTENSION_MISSING,
                    name=m.group("name"),
                    revision=int(m.group("rev")),
                    family=family_of(text),
                    backend=Backend.NFT,
                    warning=low.lstrip().startswith("warning") or view.line.level == "warn",
                )
            )
    if "generation id" in low:
        out.extend(_genid(view))
    if "_add failed" in low or "table_new failed" in low:
        out.extend(_object_add(view))
    if "rule_" in low and "failed" in low:
        out.extend(_rule_op(view))
    if "does not exist" in low and "chain" in low:
        m2 = _CHAIN_NOT_EXIST.search(text)
        if m2:
            name = m2.group("name")
            if looks_like_chain(name) or name.upper() != name:
                out.append(view.signal(Kind.CHAIN_MISSING, name=name, errno=Errno.ENOENT))
            else:
                # iptables-nft could not get the target from the kernel and took it for a chain.
                out.append(
                    view.signal(
                        Kind.EXTENSION_MISSING,
                        name=name,
                        ext_kind="target",
                        family=family_of(text),
                        backend=Backend.NFT,
                        detail="taken for a chain",
                    )
                )
    if "incompatible" in low and _INCOMPATIBLE.search(text):
        out.append(view.signal(Kind.FOREIGN_RULES, detail="incompatible, use nft"))
    if (
        not out
        and ("nftables" in low or "nf_tables" in low or not view.ascii)
        and _NFT_NOT_SUPPORTED.search(text)
    ):
        out.append(view.signal(Kind.NFT_UNAVAILABLE, name="nf_tables", detail=text.strip()))
    if not out and ":" in text and (not view.ascii or any(e in low for e in _TOOL_ERRNOS)):
        m3 = _TOOL_ERRNO.search(text)
        if m3 and "initiali" not in low and not re.search(r"failed to exec|exec:|\$path", low):
            errno, words = read_errno(m3.group("errno"))
            out.append(
                view.signal(
                    Kind.RULE_FAILED,
                    errno=errno,
                    errno_text=words,
                    detail=m3.group("bin"),
                )
            )
    return out


def _genid(view: LineView) -> list[Signal]:
    m = _GENID.search(view.text)
    if not m:
        return []
    errno, words = read_errno(m.group("errno"))
    denied = permission_denied(
        view, errno, words, backend=Backend.NFT, detail="rule-set generation id"
    )
    if denied:
        return [denied]
    return [
        view.signal(
            Kind.NFT_UNAVAILABLE,
            name="nf_tables",
            errno=errno,
            errno_text=words or m.group("errno").strip(),
            backend=Backend.NFT,
        )
    ]


def _object_add(view: LineView) -> list[Signal]:
    m = _OBJECT_ADD.search(view.text)
    if not m:
        return []
    errno, words = read_errno(m.group("errno"))
    name = (m.group("name") or "").lower()
    denied = permission_denied(view, errno, words, backend=Backend.NFT)
    if denied:
        return [denied]
    if errno is Errno.EEXIST:
        return [
            view.signal(
                Kind.CHAIN_EXISTS,
                errno=errno,
                errno_text=words,
                name=m.group("name"),
                detail=m.group("op").upper(),
            )
        ]
    what = f"chain:{name}" if name in ("nat",) else "nf_tables"
    return [
        view.signal(
            Kind.NFT_UNAVAILABLE,
            name=what,
            errno=errno,
            errno_text=words,
            backend=Backend.NFT,
            table=name or None,
        )
    ]


def _rule_op(view: LineView) -> list[Signal]:
    out: list[Signal] = []
    for m in _RULE_OP.finditer(view.text):
        errno, words = read_errno(m.group("errno"))
        denied = permission_denied(view, errno, words, backend=Backend.NFT)
        if denied:
            out.append(denied)
            continue
        lno = m.group("l")
        out.append(
            view.signal(
                Kind.RULE_FAILED,
                errno=errno,
                errno_text=words or m.group("errno"),
                name=m.group("chain"),
                detail=m.group("op").upper(),
                number=int(lno) if lno else None,
                backend=Backend.NFT,
            )
        )
        break  # the same failure repeated per chain adds nothing
    return out
