"""The probe's proxy identity and app port, read from the parsed rules."""

from __future__ import annotations

import pytest

from meshready.actions.probe_targets import (
    PROBE_TARGETS,
    derive_target,
    derive_target_from_rules,
    target_for,
    target_for_rules,
)
from meshready.rules.load import parse_rules_text
from tests.conftest import shared_dir


def _restore(*rules: str) -> str:
    return "\n".join(["*nat", ":MESH - [0:0]", *rules, "COMMIT"]) + "\n"


@pytest.mark.parametrize(
    ("text", "uid"),
    [
        (_restore("-A MESH -m owner --uid-owner 1337 -j RETURN"), 1337),
        (_restore("-A MESH -m owner ! --uid-owner 5 -j RETURN"), None),
        (_restore("-A MESH -m owner --uid-owner 5 -j MESH"), None),
        (_restore("-A MESH -m owner --gid-owner 5 -j RETURN"), None),
        (_restore("-A MESH -m owner --uid-owner 1000-1999 -j RETURN"), 1000),
        (
            _restore(
                "-A MESH -m owner ! --uid-owner 5 -j RETURN",
                "-A MESH -p tcp -m owner --uid-owner 7 -j RETURN",
                "-A MESH -m owner --uid-owner 9 -j RETURN",
            ),
            7,
        ),
        ("add rule inet t o meta skuid 555 counter return", 555),
        ("add rule inet t o skuid 555 counter return", 555),
        ("add rule inet t o meta skuid != 555 counter return", None),
        ("add rule inet t o meta skuid 555 counter jump x", None),
        ("add rule inet t o meta skgid 555 counter return", None),
    ],
)
def test_proxy_uid_is_the_first_uid_returned(text: str, uid: int | None) -> None:
    target = derive_target([text])
    assert (target.proxy_uid, target.proxy_gid) == (uid, uid)
    assert derive_target_from_rules([parse_rules_text(text, "t")]).proxy_uid == uid


@pytest.mark.parametrize(
    ("text", "port"),
    [
        (_restore("-A MESH -p tcp -j REDIRECT --to-ports 15001"), 8080),
        (_restore("-A MESH -p tcp --dport 8080 -j RETURN"), 80),
        (_restore("-A MESH -p tcp -m multiport ! --dports 8080,80 -j RETURN"), 9080),
        (_restore("-A MESH -p tcp --sport 8080 -j RETURN"), 80),
        (_restore("-A MESH -p tcp -j REDIRECT --to-ports 8080"), 80),
        (_restore("-A MESH -p tcp -m multiport --dports 80:8080 -j RETURN"), 9080),
        ("add rule ip t o tcp dport { 8080, 80 } counter return", 9080),
        ("add rule ip t o th dport 9080 counter redirect to :8080", 80),
        ("add rule ip t o meta l4proto tcp tproxy ip to :8080 accept", 80),
    ],
)
def test_app_port_is_one_the_rules_name_nowhere(text: str, port: int) -> None:
    assert derive_target([text]).dport == port
    assert derive_target_from_rules([parse_rules_text(text, "t")]).dport == port


def test_app_uid_steps_aside_for_a_proxy_on_4242() -> None:
    target = derive_target([_restore("-A MESH -m owner --uid-owner 4242 -j RETURN")])
    assert (target.app_uid, target.app_gid) == (4343, 4343)


def test_lines_that_are_no_whole_file_still_count() -> None:
    text = "-A X -m owner --uid-owner 31 -j RETURN\nnot a rule\n-A X -p tcp --dport 8080 -j RETURN"
    target = derive_target([text])
    assert (target.proxy_uid, target.dport) == (31, 80)


def test_text_and_parsed_forms_agree_on_every_shared_file() -> None:
    files = sorted(p for p in (shared_dir() / "rules").rglob("*") if p.suffix in (".rules", ".nft"))
    assert len(files) >= 60
    for path in files:
        text = path.read_text()
        by_text = derive_target([text])
        assert derive_target_from_rules([parse_rules_text(text, str(path))]) == by_text, path
        assert by_text.dport == 8080 and by_text.proxy_uid is not None, path


def test_profiles_win_and_proxy_uid_overrides() -> None:
    assert target_for_rules("linkerd", []) == PROBE_TARGETS["linkerd"]
    assert target_for("linkerd", []) == PROBE_TARGETS["linkerd"]
    ambient = target_for_rules("istio-ambient", [], proxy_uid=7)
    assert (ambient.proxy_uid, ambient.proxy_gid, ambient.proxy_mark) == (7, 7, None)
    rules = [parse_rules_text("add rule inet t o skuid 3 counter return", "t")]
    assert target_for_rules(None, rules).proxy_uid == 3
