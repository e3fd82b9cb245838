"""Finding rules in logs: where they sit is log reading, what they say comes from the parser's
tables (commands, jumps, table headers, chain declarations)."""

from __future__ import annotations

from meshready.diagnose.logrules import LogRules, find_rules, rulesets
from meshready.diagnose.readers import read_lines
from meshready.knowledge.requests import Family
from meshready.rules.model import XtRuleset

V4_NAT = (Family.IPV4, "nat")


def _find(text: str) -> LogRules:
    return find_rules(read_lines(text))


def test_restore_block_rules_chains_and_lines() -> None:
    found = _find(
        "Running iptables-restore with the following input:\n"
        "*nat\n"
        ":ISTIO_OUTPUT - [0:0]\n"
        ":NOPOLICY\n"  # no policy: iptables-restore rejects it, and so it ends the block
        "-A OUTPUT -p tcp -j ISTIO_OUTPUT\n"
    )
    assert found.chains[V4_NAT] == {"ISTIO_OUTPUT"}
    assert V4_NAT not in found.xt


def test_restore_block_rule_numbers_and_jumps() -> None:
    found = _find(
        "*nat\n"
        ":ISTIO_OUTPUT - [0:0]\n"
        "-A OUTPUT -p tcp -j ISTIO_OUTPUT\n"
        "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN\n"
        "-A ISTIO_OUTPUT -p tcp -g cali-fw -j REDIRECT --to-ports 15001\n"
        "COMMIT\n"
    )
    assert found.xt[V4_NAT] == [
        (3, "-A OUTPUT -p tcp -j ISTIO_OUTPUT"),
        (4, "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN"),
        (5, "-A ISTIO_OUTPUT -p tcp -g cali-fw -j REDIRECT --to-ports 15001"),
    ]
    # chains: declared, appended to, jumped to; RETURN and REDIRECT are targets, not chains
    assert found.chains[V4_NAT] == {"ISTIO_OUTPUT", "OUTPUT", "cali-fw"}
    assert found.rule_at(4) == "-A ISTIO_OUTPUT -m owner --uid-owner 1337 -j RETURN"


def test_command_lines_table_option_and_comments() -> None:
    found = _find(
        "2021/08/19 13:19:18 :; iptables -t nat -N PROXY_INIT_REDIRECT -m comment --comment x/1\n"
        "2021/08/19 13:19:18 :; iptables -t nat -A PROXY_INIT_REDIRECT -p tcp -j REDIRECT "
        "--to-port 4143 -m comment --comment proxy-init/redirect/1629379158\n"
        "2021/08/19 13:19:18 :; ip6tables -A INPUT  -t mangle -p tcp -j ACCEPT\n"
        "failed to run command: /sbin/iptables -t nat -N CONSUL_PROXY_INBOUND, err: exit 3\n"
    )
    assert found.xt[V4_NAT] == [
        (1, "-N PROXY_INIT_REDIRECT"),
        (2, "-A PROXY_INIT_REDIRECT -p tcp -j REDIRECT --to-port 4143"),
        (4, "-N CONSUL_PROXY_INBOUND, err: exit 3"),
    ]
    # a name ends at the punctuation of the sentence around it
    assert found.chains[V4_NAT] == {"PROXY_INIT_REDIRECT", "CONSUL_PROXY_INBOUND"}
    # -t is taken out with the one blank before it; the rest stays as printed
    assert found.xt[(Family.IPV6, "mangle")] == [(3, "-A INPUT  -p tcp -j ACCEPT")]


def test_command_lines_that_add_nothing_are_not_rules() -> None:
    found = _find(
        "iptables -t nat -D OUTPUT -j X_Y\n"
        "iptables -t nat --replace OUTPUT 1 -j X_Y\n"  # as before: only -R was read
        "iptables -t nosuchtable -A OUTPUT -j X_Y\n"
        "iptables -w -t nat -A OUTPUT -j X_Y\n"  # the rule does not start the arguments
    )
    assert found.empty


def test_rulesets_parse_what_was_found() -> None:
    found = _find(
        "iptables -t nat -N MESH\n"
        "iptables -t nat -A OUTPUT -p tcp -j MESH\n"
        "iptables -t nat -A MESH -p tcp -j REDIRECT --to-ports 15001\n"
        "iptables -t nat -A MESH -p tcp --bogus\n"  # a bad rule is dropped, not the others
    )
    (parsed,) = rulesets(found)
    assert isinstance(parsed, XtRuleset)
    rules = parsed.tables[0].rules
    assert [(r.chain, r.jump, r.redirect_port) for r in rules] == [
        ("OUTPUT", "MESH", None),
        ("MESH", "REDIRECT", 15001),
    ]
