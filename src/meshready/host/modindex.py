"""A kernel's module index as depmod writes it: modules.dep, .alias, .builtin, .softdep,
.builtin.modinfo. Lookups follow kmod's order (libkmod ``kmod_module_new_from_lookup``): a module of
that name in modules.dep, then modules.alias, then modules.builtin, then built-in aliases.

Names are compared the way kmod does: ``-`` and ``_`` are the same outside ``[...]`` (kmod
``alias_normalize``); alias patterns are shell wildcards (``fnmatch``).
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from meshready.boundedio import DEFAULT_CAP, read_bytes, read_text
from meshready.errors import InputError

MODULE_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
_WILDCARD = set("*?[")
# a module name as the kernel and kmod write it: never a path, never an option
MODULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def normalize(name: str) -> str:
    out = []
    in_bracket = False
    for c in name:
        if c == "[":
            in_bracket = True
        elif c == "]":
            in_bracket = False
        out.append("_" if c == "-" and not in_bracket else c)
    return "".join(out)


def module_name_from_path(path: str) -> str | None:
    base = path.rsplit("/", 1)[-1]
    for suffix in MODULE_SUFFIXES:
        if base.endswith(suffix):
            return normalize(base[: -len(suffix)])
    return None


@dataclass(frozen=True)
class SoftDep:
    pre: tuple[str, ...] = ()
    post: tuple[str, ...] = ()


@dataclass(frozen=True)
class Lookup:
    modules: tuple[str, ...]
    via: str  # "name" | "alias" | "builtin" | "builtin-alias" | "none"


@dataclass(frozen=True)
class ModuleIndex:
    directory: str
    deps: dict[str, tuple[str, ...]]
    paths: dict[str, str]
    exact_aliases: dict[str, tuple[str, ...]]
    # (literal prefix, pattern, module): the prefix rules a pattern out without compiling it
    wildcard_aliases: tuple[tuple[str, str, str], ...]
    builtin: frozenset[str]
    builtin_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    softdeps: dict[str, SoftDep] = field(default_factory=dict)

    def lookup(self, request: str) -> Lookup:
        key = normalize(request)
        if key in self.deps:
            return Lookup((key,), "name")
        found = list(self.exact_aliases.get(key, ()))
        for prefix, pattern, module in self.wildcard_aliases:
            if key.startswith(prefix) and module not in found and fnmatch.fnmatchcase(key, pattern):
                found.append(module)
        if found:
            return Lookup(tuple(found), "alias")
        if key in self.builtin:
            return Lookup((key,), "builtin")
        if key in self.builtin_aliases:
            return Lookup(self.builtin_aliases[key], "builtin-alias")
        return Lookup((), "none")

    def has(self, module: str) -> bool:
        return module in self.deps


def _read(path: Path, required: bool) -> str | None:
    if not os.path.lexists(path):
        if required:
            raise InputError(
                str(path), "not found (is this a module directory with depmod output?)"
            )
        return None
    return read_text(path, cap=DEFAULT_CAP)


def parse_modules_dep(text: str, source: str) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    deps: dict[str, tuple[str, ...]] = {}
    paths: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        head, sep, tail = line.partition(":")
        name = module_name_from_path(head.strip())
        if not sep or name is None:
            raise InputError(source, f"expected 'path.ko: deps...', got {line[:60]!r}", lineno)
        dep_names = []
        for dep in tail.split():
            dep_name = module_name_from_path(dep)
            if dep_name is None:
                raise InputError(source, f"dependency {dep!r} is not a module file", lineno)
            dep_names.append(dep_name)
        deps[name] = tuple(dep_names)
        paths[name] = head.strip()
    return deps, paths


def _literal_prefix(pattern: str) -> str:
    for i, c in enumerate(pattern):
        if c in _WILDCARD:
            return pattern[:i]
    return pattern


def parse_modules_alias(
    text: str, source: str
) -> tuple[dict[str, tuple[str, ...]], tuple[tuple[str, str, str], ...]]:
    exact: dict[str, list[str]] = {}
    wild: list[tuple[str, str, str]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3 or parts[0] != "alias":
            raise InputError(source, f"expected 'alias PATTERN MODULE', got {line[:60]!r}", lineno)
        pattern, module = normalize(parts[1]), normalize(parts[2])
        if not MODULE_NAME.fullmatch(module):
            # a target is a module's name, never a path: it is printed, loaded and persisted
            raise InputError(source, f"alias target {parts[2][:60]!r} is not a module name", lineno)
        if _WILDCARD & set(pattern):
            wild.append((_literal_prefix(pattern), pattern, module))
        else:
            exact.setdefault(pattern, []).append(module)
    return {k: tuple(v) for k, v in exact.items()}, tuple(wild)


def parse_modules_builtin(text: str, source: str) -> frozenset[str]:
    names = set()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name = module_name_from_path(line.strip())
        if name is None:
            raise InputError(source, f"expected a module path, got {line[:60]!r}", lineno)
        names.add(name)
    return frozenset(names)


def parse_builtin_modinfo(data: bytes) -> dict[str, tuple[str, ...]]:
    """Aliases of built-in modules from modules.builtin.modinfo (``name.alias=value`` NUL-separated)."""
    aliases: dict[str, list[str]] = {}
    for entry in data.split(b"\0"):
        key, sep, value = entry.decode("utf-8", "replace").partition("=")
        module, dot, field_name = key.partition(".")
        if sep and dot and field_name == "alias" and value:
            aliases.setdefault(normalize(value), []).append(normalize(module))
    return {k: tuple(v) for k, v in aliases.items()}


def parse_modules_softdep(text: str, source: str) -> dict[str, SoftDep]:
    out: dict[str, SoftDep] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) < 2 or parts[0] != "softdep":
            raise InputError(source, "expected 'softdep MODULE pre: ... post: ...'", lineno)
        module = normalize(parts[1])
        pre: list[str] = list(out.get(module, SoftDep()).pre)
        post: list[str] = list(out.get(module, SoftDep()).post)
        mode: list[str] | None = None  # words before "pre:"/"post:" are ignored, as kmod does
        for word in parts[2:]:
            if word == "pre:":
                mode = pre
            elif word == "post:":
                mode = post
            elif mode is not None:
                mode.append(word)
        out[module] = SoftDep(tuple(pre), tuple(post))
    return out


def find_modules_dir(directory: Path, release: str | None) -> Path:
    """``directory`` holds modules.dep itself, or is a parent holding ``<release>/modules.dep``."""
    if (directory / "modules.dep").is_file():
        return directory
    if release and (directory / release / "modules.dep").is_file():
        return directory / release
    if release and (directory / "lib/modules" / release / "modules.dep").is_file():
        return directory / "lib/modules" / release
    raise InputError(
        str(directory),
        "no modules.dep here (run depmod, or name the /lib/modules/RELEASE directory)",
    )


def load_index(directory: Path) -> ModuleIndex:
    dep_text = _read(directory / "modules.dep", required=True)
    assert dep_text is not None
    deps, paths = parse_modules_dep(dep_text, str(directory / "modules.dep"))
    alias_text = _read(directory / "modules.alias", required=False) or ""
    exact, wild = parse_modules_alias(alias_text, str(directory / "modules.alias"))
    builtin_text = _read(directory / "modules.builtin", required=False) or ""
    builtin = parse_modules_builtin(builtin_text, str(directory / "modules.builtin"))
    softdep_text = _read(directory / "modules.softdep", required=False) or ""
    softdeps = parse_modules_softdep(softdep_text, str(directory / "modules.softdep"))
    modinfo = directory / "modules.builtin.modinfo"
    builtin_aliases = (
        parse_builtin_modinfo(read_bytes(modinfo, cap=DEFAULT_CAP))
        if os.path.lexists(modinfo)
        else {}
    )
    return ModuleIndex(
        directory=str(directory),
        deps=deps,
        paths=paths,
        exact_aliases=exact,
        wildcard_aliases=wild,
        builtin=builtin,
        builtin_aliases=builtin_aliases,
        softdeps=softdeps,
    )
