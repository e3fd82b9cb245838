"""Meaning-based extraction: what each log line says about netfilter, modules and permissions.

Patterns look for the *parts* of a message that carry meaning (a table name after "initialize
table", an extension name before "revision N not supported", an errno in parentheses, a ``kmod=``
field) rather than for one exact sentence, so versions of iptables, nft, kmod and the meshes that
word things a little differently still match. Quotes (`'"‘’), case and surrounding text vary freely.

Pure: works on ``readers.LogLine`` lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum

from meshready.diagnose.readers import LogLine


class Kind(StrEnum):
    TABLE_MISSING = "table-missing"  # legacy table (or ip_tables) cannot be opened
    CORE_MISSING = "core-missing"  # "iptables who?": ip_tables / ip6_tables not loaded
    EXTENSION_MISSING = "extension-missing"  # match/target the kernel does not have
    CHAIN_MISSING = "chain-missing"  # "Couldn't load target `ISTIO_X'": a chain, not a module
    NFT_UNAVAILABLE = "nft-unavailable"  # nf_tables, nfnetlink, a chain type or family missing
    NFT_RULE_ERROR = "nft-rule-error"  # nft "Could not process rule" with the rule quoted
    RULE_FAILED = "rule-failed"  # a rule/COMMIT failed with an errno or a line number only
    XT_ENOENT = "xt-enoent"  # "No chain/target/match by that name"
    PERMISSION = "permission"  # EPERM / EACCES / "you must be root" from netfilter tools
    AVC_MODULE = "avc-module"  # SELinux denied module_request
    AVC_OTHER = "avc-other"  # SELinux denied something else to a netfilter tool
    MODPROBE_NOT_FOUND = "modprobe-not-found"  # module not in /lib/modules/RELEASE
    MODPROBE_NO_TREE = "modprobe-no-tree"  # no /lib/modules (or no modprobe) where it ran
    MODULE_LOAD_REFUSED = "module-load-refused"  # insmod/modprobe refused (EPERM, key rejected)
    VALIDATION_FAILED = "validation-failed"
    VALIDATION_PROBE = "validation-probe"  # a probe connection that was not redirected
    VALIDATION_PASSED = "validation-passed"
    RESTORE_LINE = "restore-line"  # "Error occurred at line: N"
    TOOL_MISSING = "tool-missing"  # the iptables/nft binary itself is missing where it ran
    FAILURE = "failure"  # the run failed (exit status, aborting, panic, error level)
    BACKEND = "backend"
    KERNEL = "kernel"


@dataclass(frozen=True)
class Signal:
    kind: Kind
    line: LogLine
    table: str | None = None
    family: str | None = None  # "ipv4" | "ipv6"
    name: str | None = None  # extension, module, request (kmod) or chain name
    revision: int | None = None
    ext_kind: str | None = None  # "match" | "target"
    errno: str | None = None
    backend: str | None = None  # "legacy" | "nft" | "nftables"
    detail: str = ""
    number: int | None = None  # exit code, restore line number
    extra: tuple[str, ...] = field(default=())  # nft: (quoted rule, underlined part)


_Q = r"[`'\"‘’]?"
_NAME = r"[\w.+-]+"

_TABLE_INIT = re.compile(rf"unable to initiali[sz]e table\s+{_Q}(?P<table>\w+){_Q}", re.IGNORECASE)
_CANT_INIT_TABLE = re.compile(
    rf"(?:can'?t|cannot|could not|unable to) initiali[sz]e\s+(?P<bin>ip6?tables|arptables|ebtables)?"
    rf"\s*table\s+{_Q}(?P<table>\w+){_Q}\s*:?\s*(?P<reason>.*)",
    re.IGNORECASE,
)
_CANT_INIT = re.compile(r"(?:can'?t|cannot) initiali[sz]e\s*:\s*(?P<reason>.+)", re.IGNORECASE)
_TABLE_GONE = re.compile(
    r"\btable\s+[`'\"‘]?(?P<table>nat|filter|mangle|raw|security)[`'\"’]?\s+"
    r"(?:does not exist|doesn't exist|not found|is missing|is not available)",
    re.IGNORECASE,
)
_EXT_REVISION = re.compile(
    rf"extension\s+{_Q}(?P<name>{_NAME}){_Q}\s+revision\s+(?P<rev>\d+)\s+not\s+supported",
    re.IGNORECASE,
)
_COULDNT_LOAD = re.compile(
    rf"couldn'?t load\s+(?P<kind>match|target)\s+{_Q}(?P<name>{_NAME}){_Q}\s*:?\s*(?P<reason>.*)",
    re.IGNORECASE,
)
_EXT_NOT_FOUND = re.compile(
    rf"\b(?P<kind>match|target)\s+{_Q}(?P<name>{_NAME}){_Q}\s+(?:v\d+\s+|revision\s+\d+\s+)?"
    r"(?:is\s+)?not\s+(?:found|supported|available)",
    re.IGNORECASE,
)
_GENID = re.compile(
    r"could not fetch rule ?set generation id:?\s*(?P<errno>[^.\n]*)", re.IGNORECASE
)
_NFT_OBJECT_ADD = re.compile(
    r"(?P<op>TABLE_ADD|CHAIN_ADD|CHAIN_USER_ADD|TABLE_NEW)\s+failed\s*\((?P<errno>[^)]*)\)"
    r"\s*:?\s*(?:(?:table|chain)\s+)?(?P<name>[\w-]+)?",
    re.IGNORECASE,
)
_NFT_PROCESS = re.compile(
    r"Error:\s*Could not process rule:\s*(?P<errno>[^\n]+)",
    re.IGNORECASE,
)
# nft's location prefix, looked for only right before a match of _NFT_PROCESS (linear time).
_NFT_LOCATION = re.compile(r"(?P<l>\d+):(?P<c1>\d+)-(?P<c2>\d+):\s*$")
_NFT_CACHE = re.compile(r"cache initiali[sz]ation failed:\s*(?P<errno>.+)", re.IGNORECASE)
_NFT_NOT_SUPPORTED = re.compile(
    r"\b(?:nf_?tables|nftables)(?: support)?\s+(?:is\s+)?(?:not supported|not available|unavailable|"
    r"not loaded)|\bno (?:nf_?tables|nftables) support",
    re.IGNORECASE,
)
_RULE_OP = re.compile(
    r"(?:line\s+(?P<l>\d+):\s*)?(?P<op>RULE_(?:APPEND|INSERT|REPLACE|DELETE|CHECK|ADD))\s+failed"
    r"\s*\((?P<errno>[^)]*)\)(?::?\s*rule in chain\s+(?P<chain>[\w-]+))?",
    re.IGNORECASE,
)
_RESTORE_LINE_FAILED = re.compile(r"\bline\s+(?P<l>\d+)\s+failed\b", re.IGNORECASE)
_ERROR_AT_LINE = re.compile(r"error occurred at line:?\s*(?P<l>\d+)", re.IGNORECASE)
_XT_ENOENT = re.compile(r"no chain/target/match by that name", re.IGNORECASE)
_TOOL_ERRNO = re.compile(
    r"\b(?P<bin>ip6?tables(?:-(?:legacy|nft))?(?:-restore|-save)?)(?:\s+v[\d.]+)?"
    r"(?:\s*\([\w_]+\))?\s*:\s*(?P<errno>Invalid argument|Operation not supported|"
    r"Protocol not supported|No such file or directory|Address family not supported by protocol)",
    re.IGNORECASE,
)
_TOOL_MISSING = re.compile(
    r"(?:failed to (?:exec(?:ute)?|run)|exec:|could not find)\s*[\"']?(?P<bin>\S*(?:ip6?tables|nft)[\w-]*)"
    r"[\"']?(?: binary)?\s*:?\s*(?:no such file or directory|executable file not found|not found)",
    re.IGNORECASE,
)
_UNKNOWN_OPTION = re.compile(r"unknown option\s+[`'\"]?(?P<opt>--?[\w-]+)", re.IGNORECASE)
_PERMISSION = re.compile(
    r"permission denied|operation not permitted|you must be root|\bEPERM\b|\bEACCES\b",
    re.IGNORECASE,
)
_NETFILTER_WORDS = re.compile(
    r"ip6?tables|xtables|\bnft\b|nftables|nf_tables|netfilter|\btable\b|RULE_|firewall|"
    r"Cannot initiali[sz]e",
    re.IGNORECASE,
)
_AVC = re.compile(r"avc:\s+denied\s+\{\s*(?P<perms>[^}]*?)\s*\}", re.IGNORECASE)
_KV = re.compile(
    r'\b(?P<key>comm|kmod|scontext|tcontext|tclass|exe|permissive)=(?P<val>"[^"]*"|\S+)'
)
_MODPROBE_NOT_FOUND = re.compile(
    rf"(?:modprobe|insmod|modinfo)?:?\s*(?:FATAL|ERROR|WARNING)?:?\s*Module\s+(?P<mod>{_NAME})\s+not"
    r"\s+found(?:\s+in\s+directory\s+(?P<dir>\S+))?",
    re.IGNORECASE,
)
_MODPROBE_NOT_IN_DEP = re.compile(
    rf"modprobe:\s*module\s+(?P<mod>{_NAME})\s+not found in modules\.dep", re.IGNORECASE
)
_MODPROBE_NO_TREE = re.compile(
    r"modprobe:\s*(?:can'?t change directory to|chdir\()\s*'?(?P<dir>[^':)\s]+)'?\)?:?\s*"
    r"no such file|modprobe:\s*(?:not found|command not found)|"
    r"could not open moddep file\s*'?(?P<dir2>[^'\s]+)|"
    r"failed to (?:exec|execute|run)\s*['\"]?\S*modprobe['\"]?",
    re.IGNORECASE,
)
_MODULE_REFUSED = re.compile(
    rf"(?:could not|couldn'?t|failed to)\s+(?:insert|load)\s+(?:module\s+)?'?(?P<mod>{_NAME})'?"
    r"\s*:\s*(?P<errno>Operation not permitted|Required key not available|Key was rejected by "
    r"service|Permission denied)",
    re.IGNORECASE,
)
_VALIDATION_FAILED = re.compile(
    r"iptables validation failed|validation failed|validation timeout|workload is not ready for "
    r"istio|failed to validate networking configuration|unable to connect to validator|"
    r"rules are not (?:applied|rewriting)|traffic (?:is|was) not redirected",
    re.IGNORECASE,
)
_VALIDATION_PROBE = re.compile(
    r"error connecting to\s+\[?(?P<addr>127\.0\.0\.6|::6|[\d.:\[\]a-f]+)\]?:(?P<port>15002|\d+)\b"
    r"\s*:?\s*(?P<err>.*)",
    re.IGNORECASE,
)
_VALIDATION_PASSED = re.compile(r"validation (?:passed|succeeded|complete)", re.IGNORECASE)
_EXIT = re.compile(
    r"\bexit(?:ed)?(?:\s+with)?\s+(?:status|code)\s*[:=]?\s*(?P<code>-?\d+)|\bExit Code:\s*"
    r"(?P<code2>-?\d+)|\bexitCode:\s*(?P<code3>-?\d+)|\breturned\s+(?P<code4>\d+)\b",
    re.IGNORECASE,
)
_FAILURE = re.compile(
    r"aborting firewall configuration|failed to execute|^panic:|restoring failed|"
    r"could not configure firewall|crashloopbackoff|init:error|nftables run failed|"
    r"command error|iptables-restore failed|failed to (?:apply|configure|program)\b|"
    r"^error:|\bfatal error\b|back-off restarting failed container",
    re.IGNORECASE,
)
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

# Words whose absence lets a line skip every pattern (speed on long logs).
_KEYWORDS = (
    "table",
    "extension",
    "couldn",
    "match",
    "target",
    "generation id",
    "failed",
    "could not",
    "error",
    "permission",
    "not permitted",
    "root",
    "avc",
    "module",
    "modprobe",
    "valid",
    "connecting",
    "exit",
    "abort",
    "panic",
    "crashloop",
    "init:",
    "ip6tables",
    "iptables",
    "nft",
    "/lib/modules",
    "linux ",
    "returned",
    "line",
    "unknown option",
    "nf_tables",
)


_KEYWORD_RE = re.compile("|".join(re.escape(k) for k in _KEYWORDS))


def extract(lines: list[LogLine]) -> list[Signal]:
    """Every signal in ``lines``, in log order."""
    out: list[Signal] = []
    for i, line in enumerate(lines):
        low = line.text.lower()
        if line.level == "error":
            out.append(Signal(Kind.FAILURE, line, detail="error-level line", number=None))
        if not _KEYWORD_RE.search(low):
            continue
        out.extend(_line_signals(lines, i, line, low))
    return out


def _family(text: str) -> str:
    return "ipv6" if re.search(r"\bip6", text, re.IGNORECASE) else "ipv4"


def _legacy_or_nft(text: str) -> str | None:
    if "(nf_tables)" in text or "-nft" in text:
        return "nft"
    if "(legacy)" in text or "-legacy" in text:
        return "legacy"
    return None


def _looks_like_chain(name: str) -> bool:
    """Extension targets are upper-case words without separators (REDIRECT, CT, TPROXY);
    user chains carry an underscore or dash (ISTIO_OUTPUT, PROXY_INIT_REDIRECT, KUBE-MARK-DROP)."""
    return ("_" in name or "-" in name) and name.upper() == name


def _line_signals(lines: list[LogLine], i: int, line: LogLine, low: str) -> list[Signal]:
    text = line.text
    out: list[Signal] = []

    def add(kind: Kind, **kw: object) -> None:
        out.append(Signal(kind, line, **kw))  # type: ignore[arg-type]

    # --- SELinux first: an AVC line mentions tables and modules in its fields.
    m = _AVC.search(text)
    if m:
        fields = {k: v.strip('"') for k, v in _KV.findall(text)}
        perms = m.group("perms").split()
        permissive = fields.get("permissive") == "1"
        if "module_request" in perms and "kmod" in fields:
            add(
                Kind.AVC_MODULE,
                name=fields["kmod"],
                detail=fields.get("scontext", ""),
                extra=(fields.get("comm", ""), "permissive" if permissive else "enforcing"),
            )
        else:
            comm = fields.get("comm", "") + fields.get("exe", "")
            tclass = fields.get("tclass", "")
            if re.search(r"iptables|ip6tables|xtables|nft|istio|proxy-init|kuma", comm) or (
                "netfilter" in tclass
            ):
                add(
                    Kind.AVC_OTHER,
                    name=fields.get("comm"),
                    detail=f"{{ {' '.join(perms)} }} tclass={tclass}",
                    extra=(fields.get("scontext", ""),),
                )
        return out

    # --- kernel release and backend hints (context, never findings on their own)
    for rm in _LIB_MODULES.finditer(text):
        add(Kind.KERNEL, name=rm.group("rel"))
    um = _UNAME.search(text)
    if um:
        add(Kind.KERNEL, name=um.group("rel"))
    vm = _VERSION.search(text)
    if vm:
        mode = vm.group("mode")
        backend = "nft" if mode == "nf_tables" else "legacy" if mode == "legacy" else None
        backend = backend or _legacy_or_nft(vm.group("bin"))
        if backend:
            add(Kind.BACKEND, backend=backend, detail=f"{vm.group('bin')} v{vm.group('ver')}")
    bm = _BINARY.search(text)
    if bm:
        b = bm.group("bin").lower()
        backend = "nft" if "-nft" in b else "legacy" if "-legacy" in b else "nftables"
        add(Kind.BACKEND, backend=backend, detail=bm.group("bin"))

    # --- modprobe / module loading
    m2 = _MODPROBE_NOT_FOUND.search(text) or _MODPROBE_NOT_IN_DEP.search(text)
    if m2 is not None and ("modprobe" in low or "not found in directory" in low):
        directory = m2.groupdict().get("dir") or ""
        release = directory.rstrip("/").rsplit("/", 1)[-1] if directory else None
        add(Kind.MODPROBE_NOT_FOUND, name=_module_name(m2.group("mod")), detail=release or "")
    m3 = _MODPROBE_NO_TREE.search(text)
    if m3:
        add(Kind.MODPROBE_NO_TREE, detail=m3.group(0))
    m4 = _MODULE_REFUSED.search(text)
    if m4:
        add(Kind.MODULE_LOAD_REFUSED, name=_module_name(m4.group("mod")), errno=m4.group("errno"))
        return out

    # --- legacy tables
    m5 = _TABLE_INIT.search(text)
    if m5:
        fam = _family(text[: m5.start()] or text)
        reason = text[m5.end() :]
        if _PERMISSION.search(reason):
            add(Kind.PERMISSION, table=m5.group("table"), family=fam, errno=_errno(reason))
        else:
            add(
                Kind.TABLE_MISSING,
                table=m5.group("table"),
                family=fam,
                backend=_legacy_or_nft(text) or "legacy",
            )
    else:
        m6 = _CANT_INIT_TABLE.search(text)
        if m6:
            reason = m6.group("reason")
            fam = "ipv6" if (m6.group("bin") or "").lower().startswith("ip6") else _family(text)
            table = m6.group("table")
            if _PERMISSION.search(reason):
                add(Kind.PERMISSION, table=table, family=fam, errno=_errno(reason))
            elif re.search(r"who\?|protocol not available", reason, re.IGNORECASE):
                add(Kind.CORE_MISSING, table=table, family=fam)
            else:
                add(Kind.TABLE_MISSING, table=table, family=fam, backend=_legacy_or_nft(text))
        else:
            m7 = _CANT_INIT.search(text)
            if m7:
                reason = m7.group("reason")
                fam = _family(text)
                if _PERMISSION.search(reason):
                    add(Kind.PERMISSION, family=fam, errno=_errno(reason))
                elif re.search(r"who\?|insmod|protocol not available", reason, re.IGNORECASE):
                    add(Kind.CORE_MISSING, family=fam)
            else:
                m8 = _TABLE_GONE.search(text)
                if m8 and _NETFILTER_WORDS.search(text):
                    add(Kind.TABLE_MISSING, table=m8.group("table"), family=_family(text))

    # --- extensions
    m9 = _EXT_REVISION.search(text)
    if m9:
        add(
            Kind.EXTENSION_MISSING,
            name=m9.group("name"),
            revision=int(m9.group("rev")),
            family=_family(text),
            backend="nft",
        )
    else:
        m10 = _COULDNT_LOAD.search(text) or _EXT_NOT_FOUND.search(text)
        if m10:
            name = m10.group("name")
            kind = m10.group("kind").lower()
            if kind == "target" and _looks_like_chain(name):
                add(Kind.CHAIN_MISSING, name=name)
            elif _PERMISSION.search(text):
                add(Kind.PERMISSION, name=name, errno=_errno(text), ext_kind=kind)
            else:
                add(
                    Kind.EXTENSION_MISSING,
                    name=name,
                    ext_kind=kind,
                    family=_family(text),
                    backend=_legacy_or_nft(text),
                )

    # --- nf_tables
    m11 = _GENID.search(text)
    if m11:
        add(Kind.NFT_UNAVAILABLE, name="nf_tables", errno=m11.group("errno").strip(), backend="nft")
    m12 = _NFT_OBJECT_ADD.search(text)
    if m12:
        errno = m12.group("errno")
        if _PERMISSION.search(errno):
            add(Kind.PERMISSION, errno=errno)
        else:
            name = (m12.group("name") or "").lower()
            what = f"chain:{name}" if name in ("nat",) else "nf_tables"
            add(Kind.NFT_UNAVAILABLE, name=what, errno=errno, backend="nft", table=name or None)
    m13 = _NFT_PROCESS.search(text)
    if m13:
        errno = m13.group("errno").strip()
        rule, span = _quoted_rule(lines, i, m13)
        if _PERMISSION.search(errno):
            add(Kind.PERMISSION, errno=errno, backend="nftables")
        else:
            add(Kind.NFT_RULE_ERROR, errno=errno, backend="nftables", extra=(rule, span))
    m14 = _NFT_CACHE.search(text)
    if m14:
        errno = m14.group("errno")
        if _PERMISSION.search(errno):
            add(Kind.PERMISSION, errno=errno, backend="nftables")
        else:
            add(Kind.NFT_UNAVAILABLE, name="nf_tables", errno=errno, backend="nftables")
    elif not m11 and _NFT_NOT_SUPPORTED.search(text):
        add(Kind.NFT_UNAVAILABLE, name="nf_tables", detail=text.strip())

    # --- rules that failed without a name
    m15 = _RULE_OP.search(text)
    if m15:
        errno = m15.group("errno")
        if _PERMISSION.search(errno):
            add(Kind.PERMISSION, errno=errno)
        else:
            lno = m15.group("l")
            add(
                Kind.RULE_FAILED,
                errno=errno,
                name=m15.group("chain"),
                detail=m15.group("op").upper(),
                number=int(lno) if lno else None,
                backend="nft",
            )
    else:
        m16 = _RESTORE_LINE_FAILED.search(text)
        if m16 and re.search(r"restore|iptables|xtables|COMMIT", text, re.IGNORECASE):
            add(Kind.RULE_FAILED, number=int(m16.group("l")), detail="restore line failed")
        m17 = _TOOL_ERRNO.search(text)
        mt = _TOOL_MISSING.search(text)
        if mt:
            add(Kind.TOOL_MISSING, name=mt.group("bin"))
        elif m17 and not m5:
            add(Kind.RULE_FAILED, errno=m17.group("errno"), detail=m17.group("bin"))
    m18 = _ERROR_AT_LINE.search(text)
    if m18:
        add(Kind.RESTORE_LINE, number=int(m18.group("l")))
    if _XT_ENOENT.search(text):
        add(Kind.XT_ENOENT)
    m19 = _UNKNOWN_OPTION.search(text)
    if m19 and re.search(r"ip6?tables", text, re.IGNORECASE):
        add(Kind.RULE_FAILED, detail=f"unknown option {m19.group('opt')}")

    # --- permissions (only where a netfilter tool is speaking)
    already = any(s.kind is Kind.PERMISSION for s in out)
    if (
        not already
        and _PERMISSION.search(text)
        and _NETFILTER_WORDS.search(text)
        and not re.search(r"remount|xtables\.lock|/run/xtables", text, re.IGNORECASE)
    ):
        add(Kind.PERMISSION, errno=_errno(text), family=_family(text), detail="generic")

    # --- validation probes (istio-validation, linkerd-network-validator)
    m20 = _VALIDATION_PROBE.search(text)
    if m20:
        add(Kind.VALIDATION_PROBE, name=f"{m20.group('addr')}:{m20.group('port')}", detail=text)
    if _VALIDATION_PASSED.search(text):
        add(Kind.VALIDATION_PASSED)
    elif _VALIDATION_FAILED.search(text):
        add(Kind.VALIDATION_FAILED, detail=text.strip())

    # --- outcome
    m21 = _EXIT.search(text)
    if m21:
        code = next(int(g) for g in m21.groups() if g is not None)
        if code != 0:
            add(Kind.FAILURE, number=code, detail="exit status")
    if (
        _FAILURE.search(text.strip())
        and line.level not in ("info", "debug", "warn", "trace")
        and not re.search(r"continu(?:e|ing) any ?ways?|will (?:try|retry) again", text, re.I)
    ):
        add(Kind.FAILURE, detail="failure message")
    return out


def _module_name(name: str | None) -> str | None:
    """``xt_owner.ko.xz`` or ``xt-owner`` -> ``xt_owner``."""
    if not name:
        return None
    base = re.sub(r"\.ko(?:\.(?:xz|zst|gz))?$", "", name.rsplit("/", 1)[-1])
    return base.replace("-", "_")


def _errno(text: str) -> str:
    m = re.search(
        r"permission denied(?: \(you must be root\))?|operation not permitted", text, re.IGNORECASE
    )
    return m.group(0) if m else text.strip()[:80]


def _columns(text: str, m: re.Match[str]) -> tuple[int, int] | None:
    loc = _NFT_LOCATION.search(text[max(0, m.start() - 40) : m.start()])
    return (int(loc.group("c1")), int(loc.group("c2"))) if loc else None


def _quoted_rule(lines: list[LogLine], i: int, m: re.Match[str]) -> tuple[str, str]:
    """nft quotes the failing command on the next line and underlines the failing part with ^^^
    on the line after; it also gives the columns as FILE:LINE:C1-C2 (1-based, inclusive)."""
    following = [ln.text for ln in lines[i + 1 : i + 3]]
    if not following or _NFT_PROCESS.search(following[0]):
        return "", ""
    rule_text = following[0]
    carets = following[1] if len(following) > 1 else ""
    # A transport prefix the reader did not know ("dfw   | ") is on both lines: drop it.
    common = 0
    while common < min(len(rule_text), len(carets)) and rule_text[common] == carets[common]:
        common += 1
    if common and carets[common:].strip() and set(carets[common:].strip()) <= {"^", "~"}:
        cut = len(carets[:common].rstrip(" \t")) if carets[:common].strip() else 0
        rule_text, carets = rule_text[cut:], carets[cut:]
    span = ""
    cm = re.search(r"\^+", carets)
    if cm and set(carets.strip()) <= {"^", "~"}:
        # The caret line carries the same prefix as the rule line, so columns align.
        span = rule_text[cm.start() : cm.end()]
    elif (cols := _columns(lines[i].text, m)) is not None:
        span = rule_text.strip()[cols[0] - 1 : cols[1]]
    return rule_text.strip(), span.strip()
