"""iptables-legacy, libiptc and libxtables messages.

libiptc's TC_STRERROR table (iptables libiptc/libiptc.c) turns errnos into the sentences seen in
logs: EPERM -> "Permission denied (you must be root)", ENOPROTOOPT -> "iptables who? (do you need
to insmod?)", ENOENT at init -> "Table does not exist (do you need to insmod?)", ENOENT elsewhere ->
"No chain/target/match by that name", EEXIST on chain creation -> "Chain already exists"; any
other errno is printed with strerror(), so a bare "Permission denied" is EACCES.
"""

from __future__ import annotations

import re

from meshready.diagnose.errnos import read_errno
from meshready.diagnose.families.common import (
    NAME,
    Q,
    family_of,
    legacy_or_nft,
    looks_like_chain,
    permission_denied,
)
from meshready.diagnose.kinds import Kind, LineView, Signal
from meshready.knowledge.log_causes import OPTION_EXTENSIONS, Errno
from meshready.knowledge.requests import Backend, Family

_TABLE_INIT = re.compile(rf"unable to initiali[sz]e table\s+{Q}(?P<table>\w+){Q}", re.IGNORECASE)
_CANT_INIT_TABLE = re.compile(
    rf"(?:can'?t|cannot|could not|unable to) initiali[sz]e\s+(?P<bin>ip6?tables|arptables|ebtables)?"
    rf"\s*table\s+{Q}(?P<table>\w+){Q}\s*:?\s*(?P<reason>.*)",
    re.IGNORECASE,
)
_CANT_INIT = re.compile(r"(?:can'?t|cannot) initiali[sz]e\s*:\s*(?P<reason>.+)", re.IGNORECASE)
_TABLE_GONE = re.compile(
    r"\btable\s+[`'\"‘]?(?P<table>nat|filter|mangle|raw|security)[`'\"’]?\s+"
    r"(?:does not exist|doesn't exist|not found|is missing|is not available)",
    re.IGNORECASE,
)
_NETFILTER_WORDS = re.compile(r"ip6?tables|xtables|netfilter", re.IGNORECASE)
_COULDNT_LOAD = re.compile(
    rf"couldn'?t load\s+(?P<kind>match|target)\s+{Q}(?P<name>{NAME}){Q}\s*:?\s*(?P<reason>.*)",
    re.IGNORECASE,
)
_EXT_NOT_FOUND = re.compile(
    rf"\b(?P<kind>match|target)\s+{Q}(?P<name>{NAME}){Q}\s+(?:v\d+\s+|revision\s+\d+\s+)?"
    r"(?:is\s+)?not\s+(?:found|supported|available)",
    re.IGNORECASE,
)
_NO_LIBRARY = re.compile(
    rf"can'?t find library for\s+(?P<kind>match|target)\s+{Q}(?P<name>{NAME}){Q}", re.IGNORECASE
)
_CHAIN_EXISTS = re.compile(r"chain already exists", re.IGNORECASE)
_RESTORE_LINE_FAILED = re.compile(r"\bline\s+(?P<l>\d+)\s+failed\b", re.IGNORECASE)
_ERROR_AT_LINE = re.compile(r"error occurred at line:?\s*(?P<l>\d+)", re.IGNORECASE)
_UNKNOWN_OPTION = re.compile(r"unknown option\s+[`'\"]?(?P<opt>--?[\w-]+)", re.IGNORECASE)
_LOCK = re.compile(r"another app is currently holding the xtables lock", re.IGNORECASE)
_LOCK_GAVE_UP = re.compile(r"perhaps you want to use the -w option|stopped waiting", re.IGNORECASE)

# In a line of ASCII text, every reading below needs one of these (signals.py skips lines with
# none of them): the ``in low`` tests in extract(), and "already exists" for _CHAIN_EXISTS.
TRIGGERS = (
    "initiali",
    "load match",
    "load target",
    "couldn",
    "library for",
    " not ",
    "chain/target/match",
    "already exists",
    "xtables lock",
    "failed",
    "occurred at line",
    "unknown option",
    "denied",
    "not permitted",
    "protocol not available",
)

PHRASES = (
    re.compile(r"initiali[sz]e\s+(?:ip6?tables\s+)?table\s+\S+", re.IGNORECASE),
    re.compile(r"initiali[sz]e\s*:", re.IGNORECASE),
    re.compile(r"iptables who\?", re.IGNORECASE),
    re.compile(r"\(do you need to insmod\?\)", re.IGNORECASE),
    re.compile(r"\(you must be root\)", re.IGNORECASE),
    re.compile(r"load\s+(?:match|target)\s+\S+", re.IGNORECASE),
    re.compile(r"library for\s+(?:match|target)\s+\S+", re.IGNORECASE),
    re.compile(r"chain/target/match", re.IGNORECASE),
    re.compile(r"\bchain(?= already exists)", re.IGNORECASE),
    re.compile(r"xtables lock", re.IGNORECASE),
    re.compile(r"address family", re.IGNORECASE),
    re.compile(r"unknown option\s+\S+", re.IGNORECASE),
    re.compile(r"\bline\s+\d+(?=\s+failed)", re.IGNORECASE),
    re.compile(
        r"^\s*ip6?tables(?:-[\w-]+)?(?:\s+v[\d.]+)?(?:\s*\([\w_]+\))?:(?=\s*(?:permission denied|"
        r"operation not permitted|protocol not available))",
        re.IGNORECASE | re.MULTILINE,
    ),
)


def extract(view: LineView) -> list[Signal]:
    text = view.text
    low = view.low
    out: list[Signal] = []
    if "initiali" in low:
        out.extend(_table_init(view))
    if "load match" in low or "load target" in low or "couldn" in low or "library for" in low:
        out.extend(_extension(view))
    elif " not " in low and ("match" in low or "target" in low):
        m = _EXT_NOT_FOUND.search(text)
        if m:
            out.append(_ext_signal(view, m.group("kind"), m.group("name")))
    if "chain/target/match" in low:
        # ENOENT: during cleanup or a probe expected; after a setup command a failed step.
        out.append(view.signal(Kind.XT_ENOENT, errno=Errno.ENOENT))
    if ("chain already exists" in low or not view.ascii) and _CHAIN_EXISTS.search(text):
        out.append(
            view.signal(Kind.CHAIN_EXISTS, errno=Errno.EEXIST, detail="chain already exists")
        )
    if "xtables lock" in low:
        m = _LOCK.search(text)
        if m:
            gave_up = bool(_LOCK_GAVE_UP.search(text))
            out.append(view.signal(Kind.LOCK_HELD, detail="gave up" if gave_up else "waiting"))
    if "failed" in low:
        m2 = _RESTORE_LINE_FAILED.search(text)
        if m2 and re.search(r"restore|iptables|xtables|COMMIT", text, re.IGNORECASE):
            out.append(
                view.signal(
                    Kind.RULE_FAILED, number=int(m2.group("l")), detail="restore line failed"
                )
            )
    if "occurred at line" in low:
        m3 = _ERROR_AT_LINE.search(text)
        if m3:
            out.append(view.signal(Kind.RESTORE_LINE, number=int(m3.group("l"))))
    if "unknown option" in low:
        m4 = _UNKNOWN_OPTION.search(text)
        if m4 and re.search(r"ip6?tables", text, re.IGNORECASE):
            out.append(_unknown_option(view, m4.group("opt")))
    if not out and ("denied" in low or "not permitted" in low or "protocol not available" in low):
        out.extend(_tool_errno(view))
    if "address family not supported" in low and "ip6" in low and "initiali" not in low:
        out.append(
            view.signal(
                Kind.IPV6_DISABLED,
                errno=Errno.EAFNOSUPPORT,
                errno_text="Address family not supported by protocol",
                family=Family.IPV6,
            )
        )
    return out


_TOOL_SAYS = re.compile(
    r"^\s*(?P<bin>ip6?tables(?:-[\w-]+)?)(?:\s+v[\d.]+)?(?:\s*\([\w_]+\))?:\s*"
    r"(?P<msg>(?:permission denied|operation not permitted|protocol not available).*)$",
    re.IGNORECASE,
)


def _tool_errno(view: LineView) -> list[Signal]:
    """'iptables: Permission denied (you must be root).' and the like: the tool's own errno line
    after a rule change (libiptc's commit), not tied to a table or an extension."""
    m = _TOOL_SAYS.match(view.text)
    if not m:
        return []
    errno, words = read_errno(m.group("msg"))
    fam = family_of(m.group("bin"))
    denied = permission_denied(view, errno, words, family=fam, detail="tool errno")
    if denied:
        return [denied]
    if errno is Errno.ENOPROTOOPT:
        return [view.signal(Kind.CORE_MISSING, family=fam, errno=errno)]
    return []


def _table_init(view: LineView) -> list[Signal]:
    text = view.text
    m = _TABLE_INIT.search(text)
    if m:
        fam = family_of(text[: m.start()] or text)
        errno, words = read_errno(text[m.end() :])
        denied = permission_denied(
            view, errno, words, table=m.group("table"), family=fam, detail="table setup"
        )
        if denied:
            return [denied]
        return [
            view.signal(
                Kind.TABLE_MISSING,
                table=m.group("table"),
                family=fam,
                backend=legacy_or_nft(text) or Backend.LEGACY,
            )
        ]
    m6 = _CANT_INIT_TABLE.search(text)
    if m6:
        reason = m6.group("reason")
        fam = Family.IPV6 if (m6.group("bin") or "").lower().startswith("ip6") else family_of(text)
        table = m6.group("table")
        return _init_reason(view, reason, fam, table)
    m7 = _CANT_INIT.search(text)
    if m7:
        return _init_reason(view, m7.group("reason"), family_of(text), None)
    m8 = _TABLE_GONE.search(text)
    if m8 and _NETFILTER_WORDS.search(text):
        return [view.signal(Kind.TABLE_MISSING, table=m8.group("table"), family=family_of(text))]
    return []


def _init_reason(view: LineView, reason: str, fam: Family, table: str | None) -> list[Signal]:
    errno, words = read_errno(reason)
    denied = permission_denied(view, errno, words, table=table, family=fam, detail="table setup")
    if denied:
        return [denied]
    if errno is Errno.EAFNOSUPPORT:
        return [
            view.signal(Kind.IPV6_DISABLED, errno=errno, errno_text=words, family=fam, table=table)
        ]
    if errno is Errno.ENOPROTOOPT or re.search(r"who\?", reason, re.IGNORECASE):
        return [view.signal(Kind.CORE_MISSING, table=table, family=fam, errno=Errno.ENOPROTOOPT)]
    if table is None and not re.search(r"insmod", reason, re.IGNORECASE):
        return []
    if table is None:
        return [view.signal(Kind.CORE_MISSING, family=fam, errno=errno)]
    return [
        view.signal(
            Kind.TABLE_MISSING,
            table=table,
            family=fam,
            errno=errno,
            backend=legacy_or_nft(view.text),
        )
    ]


def _extension(view: LineView) -> list[Signal]:
    text = view.text
    lib = _NO_LIBRARY.search(text)
    if lib:
        # Userspace: the extension's libxt_*.so is not in this iptables; the rule it cannot read
        # was written by someone else.
        return [
            view.signal(
                Kind.FOREIGN_RULES,
                name=lib.group("name"),
                ext_kind=lib.group("kind").lower(),
                detail="no userspace library",
            )
        ]
    m = _COULDNT_LOAD.search(text)
    if not m:
        return []
    return [_ext_signal(view, m.group("kind"), m.group("name"), m.group("reason"))]


def _ext_signal(view: LineView, kind_word: str, name: str, reason: str = "") -> Signal:
    kind = kind_word.lower()
    if kind == "target" and looks_like_chain(name):
        return view.signal(Kind.CHAIN_MISSING, name=name, errno=Errno.ENOENT)
    errno, words = read_errno(reason or view.text)
    denied = permission_denied(
        view, errno, words, name=name, ext_kind=kind, detail="extension setup"
    )
    if denied:
        return denied
    return _missing_extension(view, name, kind, errno=errno)


def _unknown_option(view: LineView, option: str) -> Signal:
    owner = OPTION_EXTENSIONS.get(option)
    if owner is None:
        return view.signal(Kind.RULE_FAILED, detail=f"unknown option {option}")
    kind, name = owner
    return _missing_extension(view, name, kind, detail=f"unknown option {option}")


def _missing_extension(
    view: LineView, name: str, kind: str, *, errno: Errno | None = None, detail: str = ""
) -> Signal:
    """An extension the line says is missing; which family and backend, the line's tool name
    tells."""
    return view.signal(
        Kind.EXTENSION_MISSING,
        name=name,
        ext_kind=kind,
        family=family_of(view.text),
        backend=legacy_or_nft(view.text),
        errno=errno,
        detail=detail,
    )
