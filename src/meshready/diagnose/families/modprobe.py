"""modprobe / insmod messages (kmod and busybox).

They say what the modprobe that printed them saw. Inside a container that is the container's own
module tree (often none: "can't change directory to '/lib/modules'"), so "Module X not found in
directory /lib/modules/R" is not evidence that the node's kernel lacks X; only the node's own
assessment says that (DiagnoseContext.absent_modules).
"""

from __future__ import annotations

import re

from meshready.diagnose.errnos import read_errno
from meshready.diagnose.families.common import NAME, module_name
from meshready.diagnose.kinds import Kind, LineView, Signal

_NOT_FOUND = re.compile(
    rf"(?:modprobe|insmod|modinfo)?:?\s*(?:FATAL|ERROR|WARNING)?:?\s*Module\s+(?P<mod>{NAME})\s+not"
    r"\s+found(?:\s+in\s+directory\s+(?P<dir>\S+))?",
    re.IGNORECASE,
)
_NOT_IN_DEP = re.compile(rf"modprobe:\s*module\s+(?P<mod>{NAME})\s+not found in modules\.dep", re.I)
_NO_TREE = re.compile(
    r"modprobe:\s*(?:can'?t change directory to|chdir\()\s*'?(?P<dir>[^':)\s]+)'?\)?:?\s*"
    r"no such file|modprobe:\s*(?:not found|command not found)|"
    r"could not open moddep file\s*'?(?P<dir2>[^'\s]+)|"
    r"failed to (?:exec|execute|run)\s*['\"]?\S*modprobe['\"]?",
    re.IGNORECASE,
)
_REFUSED = re.compile(
    rf"(?:could not|couldn'?t|failed to)\s+(?:insert|load)\s+(?:module\s+)?'?(?P<mod>{NAME})'?"
    r"\s*:\s*(?P<errno>[^\n]+)",
    re.IGNORECASE,
)
_LOAD_MODULE_FAILED = re.compile(
    rf"(?:could not|failed to) load (?:kernel )?module\s+(?P<mod>{NAME})", re.IGNORECASE
)

# In a line of ASCII text, every reading below needs one of these (signals.py skips lines with
# none of them).
TRIGGERS = ("modprobe", "module", "insmod")

PHRASES = (
    re.compile(r"module\s+\S+(?=\s+not\s+found\s+in\s+(?:directory|modules\.dep))", re.IGNORECASE),
    re.compile(r"change directory to\s+\S+", re.IGNORECASE),
    re.compile(r"moddep file", re.IGNORECASE),
    re.compile(r"insert\s+(?:module\s+)?\S+:", re.IGNORECASE),
    re.compile(r"load (?:kernel )?module\s+\S+", re.IGNORECASE),
)


def extract(view: LineView) -> list[Signal]:
    text = view.text
    low = view.low
    if "modprobe" not in low and "module" not in low and "insmod" not in low:
        return []
    out: list[Signal] = []
    m = _NOT_FOUND.search(text) or _NOT_IN_DEP.search(text)
    if m is not None and ("modprobe" in low or "not found in directory" in low):
        directory = m.groupdict().get("dir") or ""
        release = directory.rstrip("/").rsplit("/", 1)[-1] if directory else ""
        out.append(
            view.signal(
                Kind.MODPROBE_NOT_FOUND,
                name=module_name(m.group("mod")),
                detail=release,
                warning="warning" in low[: m.start() + 30],
            )
        )
    m2 = _NO_TREE.search(text)
    if m2:
        out.append(view.signal(Kind.MODPROBE_NO_TREE, detail=m2.group(0)))
    m3 = _REFUSED.search(text)
    if m3:
        errno, words = read_errno(m3.group("errno"))
        out.append(
            view.signal(
                Kind.MODULE_LOAD_REFUSED,
                name=module_name(m3.group("mod")),
                errno=errno,
                errno_text=words or m3.group("errno").strip(),
            )
        )
    elif not out:
        m4 = _LOAD_MODULE_FAILED.search(text)
        if m4 and "ignore this message" not in low:
            out.append(
                view.signal(
                    Kind.MODULE_LOAD_REFUSED,
                    name=module_name(m4.group("mod")),
                    detail="load failed",
                )
            )
    return out
