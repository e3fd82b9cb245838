"""The probe's proxy identity and app port, read from the parsed rules."""

from __future__ import annotations

import pytest

from meshready.actions.probe.rules import to_restore
from meshready.actions.probe_targets import (
    PROBE_TARGETS,
    ProbeTarget,
    derive_target_from_rules,
    target_for_rules,
)
from meshready.rules.load import parse_rules_text
from meshready.rules.model import XtRuleset
from tests.conftest import shared_dir


def _restore(*rules: str) -> str:
    return "\n".join(["*nat", ":MESH - [0:0]", *rules, "COMMIT"]) + "\n"


def _target(text: str) -> ProbeTarget:
    return derive_target_from_rules([parse_rules_text(text, "t")])


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
    target = _target(text)
    assert (target.proxy_uid, target.proxy_gid) == (uid, uid)


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
    assert _target(text).dport == port


def test_app_uid_steps_aside_for_a_proxy_on_4242() -> None:
    target = _target(_restore("-A MESH -m owner --uid-owner 4242 -j RETURN"))
    assert (target.app_uid, target.app_gid) == (4343, 4343)


def test_the_first_uid_is_the_first_applied() -> None:
    # restore input is applied as written, tables reopened or not
    text = "\n".join(
        [
            "*nat",
            ":M - [0:0]",
            "-A OUTPUT -j M",
            "COMMIT",
            "*filter",
            "-A OUTPUT -m owner --uid-owner 5 -j RETURN",
            "COMMIT",
            "*nat",
            "-A M -m owner --uid-owner 7 -j RETURN",
            "COMMIT",
        ]
    )
    assert _target(text).proxy_uid == 5
    # command lines are applied table by table, in the order the tables first appear
    lines = [
        "iptables -t nat -N M",
        "iptables -t nat -A OUTPUT -j M",
        "iptables -A OUTPUT -m owner --uid-owner 5 -j RETURN",
        "iptables -t nat -A M -m owner --uid-owner 7 -j RETURN",
    ]
    assert _target("\n".join(lines)).proxy_uid == 7
    assert _target(to_restore("\n".join(lines))).proxy_uid == 7


def test_every_shared_file_names_its_proxy_and_leaves_port_8080() -> None:
    files = sorted(p for p in (shared_dir() / "rules").rglob("*") if p.suffix in (".rules", ".nft"))
    assert len(files) >= 60
    for path in files:
        ruleset = parse_rules_text(path.read_text(), str(path))
        target = derive_target_from_rules([ruleset])
        assert target.dport == 8080 and target.proxy_uid is not None, path
        if isinstance(ruleset, XtRuleset):
            # the same as from the restore input the probe applies
            applied = parse_rules_text(to_restore(path.read_text(), ruleset), str(path))
            assert derive_target_from_rules([applied]) == target, path


def test_profiles_win_and_proxy_uid_overrides() -> None:
    assert target_for_rules("linkerd", []) == PROBE_TARGETS["linkerd"]
    ambient = target_for_rules("istio-ambient", [], proxy_uid=7)
    assert (ambient.proxy_uid, ambient.proxy_gid, ambient.proxy_mark) == (7, 7, None)
    rules = [parse_rules_text("add rule inet t o skuid 3 counter return", "t")]
    assert target_for_rules(None, rules).proxy_uid == 3
