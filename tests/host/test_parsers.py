from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshready.errors import InputError
from meshready.host.kconfig import parse_config, read_config_file
from meshready.host.loaded import parse_lsmod, parse_proc_modules
from meshready.host.modindex import (
    load_index,
    module_name_from_path,
    normalize,
    parse_modules_alias,
    parse_modules_dep,
    parse_modules_softdep,
)
from tests.conftest import CASE, DEBIAN_61_AMD64, DEBIAN_612_AMD64


def test_founding_lsmod_without_padding() -> None:
    loaded = parse_lsmod((CASE / "lsmod.txt").read_text(), "lsmod.txt")
    assert {"ip6_tables", "nf_nat", "nft_compat", "br_netfilter"} <= loaded.names
    assert "ip_tables" not in loaded.names
    assert loaded.users["ip6_tables"] == {"ip6table_filter", "ip6table_nat", "ip6table_mangle"}
    assert "ip6_tables" in loaded.dependents_seen()["ip6table_nat"]


def test_proc_modules_format_is_accepted_as_lsmod_input() -> None:
    text = (
        "xt_owner 16384 1 - Live 0x0000000000000000\n"
        "x_tables 53248 2 xt_owner,ip_tables, Live 0x0000000000000000\n"
    )
    for loaded in (parse_proc_modules(text), parse_lsmod(text, "proc")):
        assert loaded.names == {"xt_owner", "x_tables"}
        assert loaded.users["x_tables"] == {"xt_owner", "ip_tables"}


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("Module Size Used by\nxt_owner big 0\n", 2),
        ("nonsense\n", 1),
        ("Module Size Used by\nx\n", 2),
    ],
)
def test_malformed_lsmod(text: str, line: int) -> None:
    with pytest.raises(InputError) as info:
        parse_lsmod(text, "lsmod.txt")
    assert info.value.source == "lsmod.txt" and info.value.line == line


def test_real_index_lookups_follow_kmod() -> None:
    index = load_index(DEBIAN_61_AMD64)
    assert index.lookup("ipt_owner").modules == ("xt_owner",)
    assert index.lookup("ip6t_REDIRECT").modules == ("xt_REDIRECT",)
    assert index.lookup("nft-chain-2-nat").modules == ("nft_chain_nat",)
    assert index.lookup("nft_expr_redir").modules == ("nft_redir",)  # '-' and '_' are one
    assert index.lookup("nf-conntrack").via == "name"
    assert index.lookup("ipt_icmp").modules == ("ip_tables",)
    assert index.lookup("crc32c").modules == ("crc32c_intel",)
    assert index.lookup("no_such_thing").via == "none"
    assert index.softdeps["libcrc32c"].pre == ("crc32c",)


def test_wildcard_aliases_match_like_fnmatch() -> None:
    exact, wild = parse_modules_alias("alias nft-expr-*-fib nft_fib_x\nalias a[bc]d m\n", "a")
    assert not exact
    from meshready.host.modindex import ModuleIndex

    index = ModuleIndex("x", {"nft_fib_x": (), "m": ()}, {}, exact, wild, frozenset())
    assert index.lookup("nft-expr-1-fib").modules == ("nft_fib_x",)
    assert index.lookup("acd").modules == ("m",)
    assert index.lookup("aed").modules == ()


def test_compressed_module_names() -> None:
    assert module_name_from_path("kernel/net/netfilter/xt_owner.ko.xz") == "xt_owner"
    assert module_name_from_path("a/nf-nat.ko.zst") == "nf_nat"
    assert module_name_from_path("a/b.ko.gz") == "b"
    assert module_name_from_path("a/readme.txt") is None
    assert load_index(DEBIAN_612_AMD64).paths["nf_tables"].endswith("nf_tables.ko.xz")


def test_normalize_keeps_brackets() -> None:
    assert normalize("nft-expr-[a-z]") == "nft_expr_[a-z]"


@pytest.mark.parametrize(
    ("parser", "text", "line"),
    [
        (parse_modules_dep, "kernel/a.ko: kernel/b.ko\nno colon here\n", 2),
        (parse_modules_dep, "kernel/a.ko: notamodule\n", 1),
        (parse_modules_alias, "alias onlytwo\n", 1),
        (parse_modules_softdep, "softdep\n", 1),
    ],
)
def test_malformed_index_files(parser, text: str, line: int) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError) as info:
        parser(text, "modules.x")
    assert info.value.line == line and info.value.source == "modules.x"


def test_kernel_config_plain_and_gzip(tmp_path: Path) -> None:
    text = "# comment\nCONFIG_MODULES=y\nCONFIG_IP_NF_NAT=m\n# CONFIG_IP_NF_RAW is not set\n"
    plain = tmp_path / "config"
    plain.write_text(text)
    packed = tmp_path / "config.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    for path in (plain, packed):
        config = read_config_file(path)
        assert config.state("CONFIG_IP_NF_NAT") == "m"
        assert config.state("CONFIG_IP_NF_RAW") is None
        assert config.modules_supported
    with pytest.raises(InputError) as info:
        parse_config("CONFIG_A=y\nthis is not config\n", "cfg")
    assert info.value.line == 2
    with pytest.raises(InputError):
        parse_config("# only comments\n", "cfg")


_NAME = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True)


@given(st.dictionaries(_NAME, st.lists(_NAME, max_size=4), max_size=20))
def test_modules_dep_round_trip(table: dict[str, list[str]]) -> None:
    text = "".join(
        f"kernel/net/{m}.ko: {' '.join(f'kernel/net/{d}.ko.xz' for d in deps)}\n"
        for m, deps in table.items()
    )
    deps, paths = parse_modules_dep(text, "modules.dep")
    assert deps == {m: tuple(d) for m, d in table.items()}
    assert set(paths) == set(table)


@given(st.dictionaries(_NAME, st.tuples(st.integers(0, 10**7), st.integers(0, 99)), max_size=20))
def test_lsmod_round_trip(table: dict[str, tuple[int, int]]) -> None:
    text = "Module                  Size  Used by\n" + "".join(
        f"{m:<24}{size:>8}  {count}\n" for m, (size, count) in table.items()
    )
    assert parse_lsmod(text, "lsmod").names == set(table)


@given(st.text(max_size=200))
def test_parsers_fail_only_with_input_errors(text: str) -> None:
    for parse in (
        parse_modules_dep,
        parse_modules_alias,
        parse_modules_softdep,
        parse_lsmod,
        parse_config,
    ):
        try:
            parse(text, "fuzz")
        except InputError as exc:
            assert exc.source == "fuzz"
