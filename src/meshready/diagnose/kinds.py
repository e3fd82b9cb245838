"""The vocabulary shared by the message-family extractors and the classifier.

A ``Signal`` is one meaning read from one log line (a table that cannot be opened, an errno, a
failed step, a module modprobe did not find, ...). The extractors in ``diagnose.families`` produce
them; ``diagnose.classify`` turns them into findings. Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from meshready.diagnose.readers import LogLine
from meshready.knowledge.log_causes import Errno
from meshready.knowledge.requests import Backend, Family

__all__ = ["Errno", "Kind", "LineView", "Signal", "Step"]


class Kind(StrEnum):
    TABLE_MISSING = "table-missing"  # legacy table (or ip_tables) cannot be opened
    CORE_MISSING = "core-missing"  # "iptables who?": ENOPROTOOPT, ip_tables / ip6_tables not loaded
    EXTENSION_MISSING = "extension-missing"  # match/target the kernel does not have
    CHAIN_MISSING = "chain-missing"  # "Couldn't load target `ISTIO_X'": a chain, not a module
    CHAIN_EXISTS = "chain-exists"  # EEXIST on a chain the run creates: left over from a run before
    NFT_UNAVAILABLE = "nft-unavailable"  # nf_tables, nfnetlink, a chain type or family missing
    NFT_RULE_ERROR = "nft-rule-error"  # nft "Could not process rule" with the rule quoted
    RULE_FAILED = "rule-failed"  # a rule/COMMIT failed with an errno or a line number only
    XT_ENOENT = "xt-enoent"  # "No chain/target/match by that name"
    PERMISSION = "permission"  # EPERM / EACCES from a netfilter tool
    IPV6_DISABLED = "ipv6-disabled"  # EAFNOSUPPORT: the kernel runs without IPv6
    LOCK_HELD = "lock-held"  # another process holds the xtables lock and iptables gave up
    FOREIGN_RULES = "foreign-rules"  # the tables hold rules this iptables cannot read
    AVC_MODULE = "avc-module"  # SELinux denied module_request
    AVC_OTHER = "avc-other"  # an LSM denied something else to a netfilter tool
    MODPROBE_NOT_FOUND = "modprobe-not-found"  # module not in the /lib/modules/RELEASE modprobe saw
    MODPROBE_NO_TREE = "modprobe-no-tree"  # no /lib/modules (or no modprobe) where it ran
    MODULE_LOAD_REFUSED = "module-load-refused"  # insmod/modprobe refused (EPERM, key rejected)
    VALIDATION_FAILED = "validation-failed"
    VALIDATION_PROBE = "validation-probe"  # a probe connection that was not redirected
    VALIDATION_PASSED = "validation-passed"
    RESTORE_LINE = "restore-line"  # "Error occurred at line: N"
    TOOL_MISSING = "tool-missing"  # a program or shared library is missing where it ran
    FAILURE = "failure"  # the run failed (exit status, aborting, panic, error words)
    BACKEND = "backend"
    KERNEL = "kernel"


class Step(StrEnum):
    """What the command before a message was doing, as far as the log shows it."""

    CLEANUP = "cleanup"  # delete, flush, unhook, check: failures are expected before first setup
    SETUP = "setup"  # add, insert, create, restore: a failure here is a failed step
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Signal:
    kind: Kind
    line: LogLine
    table: str | None = None
    family: Family | None = None
    name: str | None = None  # extension, module, request (kmod) or chain name
    revision: int | None = None
    ext_kind: str | None = None  # "match" | "target"
    errno: Errno | None = None
    errno_text: str = ""  # the errno as the tool wrote it
    backend: Backend | None = None
    detail: str = ""
    number: int | None = None  # exit code, restore line number
    extra: tuple[str, ...] = field(default=())  # nft: (quoted rule, underlined part)
    warning: bool = False  # printed as a warning: supporting evidence, never the deciding line
    step: Step = Step.UNKNOWN  # what the command before it was doing
    command: str | None = None  # that command, when the log traced it


@dataclass(frozen=True)
class LineView:
    """One logical line with what an extractor may need around it."""

    lines: list[LogLine]
    index: int
    low: str  # the line's text, lower case
    command: str | None  # the last command the log traced before this line
    step: Step

    @property
    def line(self) -> LogLine:
        return self.lines[self.index]

    @property
    def text(self) -> str:
        return self.lines[self.index].text

    @property
    def ascii(self) -> bool:
        """ASCII text only: then a case-insensitive pattern matches only where its words are in
        ``low`` in lower case, which lets an extractor skip a pattern whose words are not there
        (in other text Unicode case folding, "ſ" for an "s", makes no such promise)."""
        return self.lines[self.index].text.isascii()

    def signal(
        self,
        kind: Kind,
        *,
        table: str | None = None,
        family: Family | None = None,
        name: str | None = None,
        revision: int | None = None,
        ext_kind: str | None = None,
        errno: Errno | None = None,
        errno_text: str = "",
        backend: Backend | None = None,
        detail: str = "",
        number: int | None = None,
        extra: tuple[str, ...] = (),
        warning: bool = False,
    ) -> Signal:
        """A signal read from this line, with the step and command before it."""
        return Signal(
            kind,
            self.line,
            table=table,
            family=family,
            name=name,
            revision=revision,
            ext_kind=ext_kind,
            errno=errno,
            errno_text=errno_text,
            backend=backend,
            detail=detail,
            number=number,
            extra=extra,
            warning=warning,
            step=self.step,
            command=self.command,
        )
