"""The iptables-version model: parsing, which measured version applies, warn-only matches."""

from __future__ import annotations

import pytest

from meshready.knowledge.iptables_versions import (
    MEASURED_VERSIONS,
    IptablesVersion,
    measured_as,
    parse_version,
    warn_only,
)


@pytest.mark.parametrize(
    ("text", "want"),
    [("1.8.10", IptablesVersion(1, 8, 10)), ("v1.8.7", IptablesVersion(1, 8, 7))],
)
def test_parse_version(text: str, want: IptablesVersion) -> None:
    assert parse_version(text) == want


@pytest.mark.parametrize("text", ["1.8", "1.8.10-3ubuntu2", "nft", "", "1.8.x", "1.8.10; rm"])
def test_parse_version_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="not an iptables version"):
        parse_version(text)


@pytest.mark.parametrize(
    ("version", "as_"),
    [
        ("1.8.4", "1.8.7"),  # older than anything measured: the oldest measured behaviour
        ("1.8.7", "1.8.7"),
        ("1.8.8", "1.8.7"),
        ("1.8.9", "1.8.9"),
        ("1.8.10", "1.8.9"),  # Ubuntu 24.04, Istio's base image
        ("1.8.11", "1.8.11"),
        ("1.8.12", "1.8.11"),
    ],
)
def test_measured_as(version: str, as_: str) -> None:
    assert measured_as(version) == as_
    assert as_ in MEASURED_VERSIONS


def test_warn_only_per_version() -> None:
    # 1.8.7: an unanswered revision query makes the extension unusable: always fatal.
    assert warn_only("1.8.7", "mark", bare=False) is None
    assert warn_only("1.8.7", "tcp", bare=False) is None
    # 1.8.9 and later: natively translated matches only warn ...
    for version in ("1.8.9", "1.8.10", "1.8.11"):
        assert warn_only(version, "tcp", bare=False) == (
            "Warning: Extension tcp revision 0 not supported, missing kernel module?"
        )
        assert warn_only(version, "mark", bare=False) is not None
        # ... but a bare `-m tcp` goes through nft_compat, and so does every other match.
        assert warn_only(version, "tcp", bare=True) is None
        assert warn_only(version, "owner", bare=False) is None
        assert warn_only(version, "multiport", bare=False) is None
