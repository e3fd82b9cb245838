"""Built-in knowledge agrees with a real kernel's own data (Debian 6.1 cloud amd64)."""

from __future__ import annotations

from meshready.assess.resolve import close_over, knowledge_index
from meshready.host.modindex import load_index, normalize
from meshready.knowledge.modules import known_modules, module_symbol
from meshready.knowledge.renames import gone_on, parse_kernel_version
from tests.conftest import DEBIAN_61_AMD64


def test_aliases_match_the_real_index() -> None:
    real = load_index(DEBIAN_61_AMD64)
    for info in known_modules().values():
        if info.name not in real.deps:
            continue
        for alias in info.aliases:
            assert info.name in real.lookup(alias).modules, (info.name, alias)


def test_dependency_closures_match_the_real_index() -> None:
    real = load_index(DEBIAN_61_AMD64)
    ours = knowledge_index(None)
    for info in known_modules().values():
        if info.name not in real.deps:
            continue
        want = set(close_over([info.name], real).order) - {"crc32c_intel"}  # softdep, x86 only
        got = set(close_over([info.name], ours).order)
        assert got == want, info.name


def test_symbols_are_set_in_the_real_config() -> None:
    config = (DEBIAN_61_AMD64 / "config").read_text().splitlines()
    real = load_index(DEBIAN_61_AMD64)
    for info in known_modules().values():
        symbol = module_symbol(info.name)
        assert symbol is not None
        in_extract = any(line.startswith(f"{symbol}=") for line in config)
        if normalize(info.name) in real.deps and in_extract:
            assert f"{symbol}=m" in config, symbol


def test_renames() -> None:
    assert gone_on("nf_conntrack_ipv4", parse_kernel_version("5.15.0-100.el8uek")) is not None
    assert gone_on("nf_conntrack_ipv4", parse_kernel_version("4.14.35")) is None
    assert gone_on("nf_nat_ipv4", (5, 0)) is None
    assert parse_kernel_version("garbage") is None
