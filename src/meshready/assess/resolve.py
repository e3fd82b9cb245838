"""Resolve requests to modules the way modprobe does, and close over dependencies.

With a real module index the kernel's own tables decide. Without one (offline from lsmod alone, or
a kernel without module support), built-in knowledge stands in: ``knowledge.modules`` for names,
aliases and dependencies, adjusted for kernels older than the 4.19 and 5.1 merges.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache

from meshready.host.modindex import ModuleIndex, SoftDep, normalize
from meshready.knowledge.modules import known_modules
from meshready.knowledge.nftables import CORE_CHAIN_TYPES, CORE_EXPRESSIONS
from meshready.knowledge.renames import KernelVersion
from meshready.knowledge.requests import Request

# Older kernels split NAT and conntrack per family (knowledge.renames); the fallback adds them.
_OLD_DEPS: tuple[tuple[KernelVersion, str, str], ...] = (
    ((5, 1), "iptable_nat", "nf_nat_ipv4"),
    ((5, 1), "ip6table_nat", "nf_nat_ipv6"),
    ((4, 19), "nf_nat_ipv4", "nf_conntrack_ipv4"),
    ((4, 19), "nf_nat_ipv6", "nf_conntrack_ipv6"),
)


@cache
def knowledge_index(version: KernelVersion | None) -> ModuleIndex:
    """A module index made from built-in knowledge, for a kernel of ``version`` (None: current)."""
    deps = {name: info.deps for name, info in known_modules().items()}
    if version is not None:
        for since, module, old in _OLD_DEPS:
            if version < since:
                deps[module] = (*deps.get(module, ()), old)
                deps.setdefault(old, ("nf_nat",) if old.startswith("nf_nat") else ("nf_conntrack",))
    aliases: dict[str, tuple[str, ...]] = {}
    for info in known_modules().values():
        for alias in info.aliases:
            key = normalize(alias)
            aliases[key] = (*aliases.get(key, ()), info.name)
    return ModuleIndex(
        directory="(built-in knowledge)",
        deps=deps,
        paths={},
        exact_aliases=aliases,
        wildcard_aliases=(),
        builtin=frozenset(),
    )


@dataclass(frozen=True)
class Resolution:
    request: Request
    modules: tuple[str, ...]
    how: str  # "name", "alias", "builtin", "builtin-alias", "core of X", "none"


def resolve_request(request: Request, index: ModuleIndex) -> Resolution:
    for candidate in request.candidates:
        found = index.lookup(candidate)
        if found.modules:
            return Resolution(request, found.modules, found.via)
    core = _core_provider(request.name)
    if core is not None:
        return Resolution(request, (core,), f"core of {core}")
    return Resolution(request, (), "none")


def _core_provider(request: str) -> str | None:
    """Expressions and chain types that nf_tables registers itself: nothing to request."""
    if request.startswith("nft-expr-"):
        expr = request.removeprefix("nft-expr-").split("-")[-1]
        return "nf_tables" if expr in CORE_EXPRESSIONS else None
    if request.startswith("nft-chain-"):
        ctype = request.split("-")[-1]
        return "nf_tables" if ctype in CORE_CHAIN_TYPES else None
    return None


@dataclass
class Closure:
    """Modules in load order (dependencies first) and why each is there."""

    order: list[str] = field(default_factory=list)
    why: dict[str, list[str]] = field(default_factory=dict)


def close_over(roots: list[str], index: ModuleIndex) -> Closure:
    """Every module ``roots`` pull in through modules.dep and pre/post soft dependencies.

    A depth-first walk with a stack of its own (a chain can be as deep as the input is long):
    pre soft dependencies and dependencies (deepest first) before a module, post soft
    dependencies after it.
    """
    closure = Closure()
    visiting: set[str] = set()
    done: set[str] = set()

    def before(module: str) -> Iterator[tuple[str, str]]:
        soft = index.softdeps.get(module, SoftDep())
        for pre in soft.pre:
            for target in _soft_targets(pre, index):
                yield target, f"soft dependency of {module}"
        # modules.dep lists every dependency, the deepest last; visit deepest first.
        for dep in reversed(index.deps.get(module, ())):
            yield dep, f"dependency of {module}"

    def after(module: str) -> Iterator[tuple[str, str]]:
        for post in index.softdeps.get(module, SoftDep()).post:
            for target in _soft_targets(post, index):
                yield target, f"soft dependency of {module}"

    for root in roots:
        if root in done or root in visiting:
            continue
        visiting.add(root)
        # frames: [module, what to visit next, whether the module is in the order already]
        stack: list[tuple[str, Iterator[tuple[str, str]], bool]] = [(root, before(root), False)]
        while stack:
            module, pending, placed = stack[-1]
            step = next(pending, None)
            if step is None:
                stack.pop()
                if not placed:
                    visiting.discard(module)
                    done.add(module)
                    closure.order.append(module)
                    stack.append((module, after(module), True))
                continue
            target, because = step
            reasons = closure.why.setdefault(target, [])
            if because not in reasons:
                reasons.append(because)
            if target in done or target in visiting:
                continue
            visiting.add(target)
            stack.append((target, before(target), False))
    return closure


def _soft_targets(name: str, index: ModuleIndex) -> tuple[str, ...]:
    found = index.lookup(name)
    return found.modules if found.via in ("name", "alias") else ()
