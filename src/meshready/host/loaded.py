"""Loaded modules: ``/proc/modules`` or the output of ``lsmod``.

``/proc/modules``: ``name size refcount deps state address`` with deps as ``a,b,`` or ``-``.
``lsmod``: a ``Module Size Used by`` header, then ``name size count [users]``, where ``users``
are the modules that depend on this one (comma-separated). Either way, a module's users depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meshready.errors import InputError


@dataclass(frozen=True)
class LoadedModules:
    names: frozenset[str]
    # module -> modules that use it (depend on it), as listed
    users: dict[str, frozenset[str]] = field(default_factory=dict)

    def dependents_seen(self) -> dict[str, frozenset[str]]:
        """module -> the modules it was seen to depend on (inverse of ``users``)."""
        deps: dict[str, set[str]] = {}
        for used, by in self.users.items():
            for user in by:
                deps.setdefault(user, set()).add(used)
        return {k: frozenset(v) for k, v in deps.items()}


def _users(field_text: str) -> frozenset[str]:
    if field_text in ("", "-"):
        return frozenset()
    return frozenset(u for u in field_text.strip(",").split(",") if u and u != "[permanent]")


def _valid_name(name: str) -> bool:
    return bool(name) and all(c.isalnum() or c in "_-" for c in name)


def parse_proc_modules(text: str, source: str = "/proc/modules") -> LoadedModules:
    names: set[str] = set()
    users: dict[str, frozenset[str]] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3 or not _valid_name(parts[0]) or not parts[1].isdigit():
            raise InputError(source, f"not a /proc/modules line: {line[:60]!r}", lineno)
        name = parts[0].replace("-", "_")
        names.add(name)
        users[name] = _users(parts[3] if len(parts) > 3 else "-")
    return LoadedModules(frozenset(names), users)


def parse_lsmod(text: str, source: str) -> LoadedModules:
    """``lsmod`` output (column padding optional); ``/proc/modules`` content is accepted too."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise InputError(source, "empty: expected lsmod output (a 'Module Size Used by' header)")
    header = lines[first].split()
    if header[:2] != ["Module", "Size"]:
        parts = lines[first].split()
        if len(parts) >= 6 and parts[4] in ("Live", "Loading", "Unloading"):
            return parse_proc_modules(text, source)
        raise InputError(
            source, "expected lsmod output starting with 'Module Size Used by'", first + 1
        )
    names: set[str] = set()
    users: dict[str, frozenset[str]] = {}
    for lineno, line in enumerate(lines[first + 1 :], start=first + 2):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 3 or len(parts) > 4 or not _valid_name(parts[0]):
            raise InputError(source, f"not an lsmod line: {line[:60]!r}", lineno)
        if not parts[1].isdigit() or not parts[2].lstrip("-").isdigit():
            raise InputError(source, f"size and use count must be numbers: {line[:60]!r}", lineno)
        name = parts[0].replace("-", "_")
        names.add(name)
        users[name] = _users(parts[3] if len(parts) == 4 else "")
    return LoadedModules(frozenset(names), users)
