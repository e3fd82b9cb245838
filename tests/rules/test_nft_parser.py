from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshready.errors import InputError
from meshready.rules.nft_parser import parse_nft
from tests.conftest import shared_dir


def test_every_shared_nft_file_parses() -> None:
    files = sorted((shared_dir() / "rules" / "sidecar-nft").glob("*.nft"))
    assert len(files) >= 25
    for path in files:
        rs = parse_nft(path.read_text(), str(path))
        assert rs.rules and rs.chains, path
        assert {c.family for c in rs.chains} == {"inet"}


def test_commands_sets_and_chain_types() -> None:
    text = """add table inet t
add chain inet t out { type nat hook output priority -100 ; }
add chain inet t mangle { type route hook output priority -150 ; }
add rule inet t out meta l4proto tcp tcp dport != { 53, 15008 } skuid 1337 counter redirect to :15001
insert rule inet t mangle index 0 ct mark 1337 counter meta mark set ct mark
add rule inet t out comment "redirect tproxy" accept
"""
    rs = parse_nft(text, "t.nft")
    assert [(c.name, c.chain_type) for c in rs.chains] == [("out", "nat"), ("mangle", "route")]
    assert rs.rules[0].expressions == ("counter", "redir")
    assert rs.rules[1].expressions == ("ct", "counter")
    assert rs.rules[2].expressions == ()  # words inside strings are not statements


def test_block_form() -> None:
    text = """#!/usr/sbin/nft -f
table ip filter {
    set allowed { type ipv4_addr; elements = { 10.0.0.1 } }
    chain out {
        type nat hook output priority 0; policy accept;
        tcp dport 80 redirect to :8080
        ct count over 10 reject
    }
}
table inet other { chain c { socket transparent 1 accept } }
"""
    rs = parse_nft(text, "b.nft")
    assert [(c.family, c.name, c.chain_type) for c in rs.chains] == [
        ("ip", "out", "nat"),
        ("inet", "c", None),
    ]
    assert [r.expressions for r in rs.rules] == [("redir",), ("connlimit", "reject"), ("socket",)]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ('add rule inet t c comment "open\n', 1, "unterminated string"),
        ("table inet t {\n chain c {\n", 2, "not closed"),
        ("bogus thing\n", 1, "not an nft command"),
        ("add chain inet t c { type nat }\n", 1, "type T hook H"),
        ('include "other.nft"\n', 1, "include"),
        ("}\n", 1, "unexpected '}'"),
    ],
)
def test_malformed_nft_names_file_and_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(InputError) as info:
        parse_nft(text, "bad.nft")
    assert info.value.line == line
    assert fragment in str(info.value)


@given(st.text(max_size=300))
def test_arbitrary_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        parse_nft(text, "fuzz.nft")
    except InputError as exc:
        assert exc.source == "fuzz.nft"
