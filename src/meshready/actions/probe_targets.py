"""Who the proxy is, per profile: the identity whose traffic the rules must let through.

Istio's sidecar runs Envoy as uid/gid 1337 (istio-iptables ``--proxy-uid``/``--proxy-gid``); Linkerd's
proxy runs as uid 2102 (proxy-init ``--proxy-uid``); Istio ambient's ztunnel marks its own packets
with 0x3 in the mask 0xfff (istio-cni ``default.golden``: ``-m mark ! --mark 0x3/0xfff``).

For ``--rules`` files without a profile, the identity is read from the rules themselves (the first
``--uid-owner N ... -j RETURN`` or ``skuid N ... return``), or given explicitly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from meshready.knowledge.iptables import PROGRAMS
from meshready.rules.model import (
    NftRule,
    NftRuleset,
    PortRange,
    Ruleset,
    XtRule,
    leading_id,
    port_ranges,
)


@dataclass(frozen=True)
class ProbeTarget:
    proxy_uid: int | None = None  # connections from this uid must not be redirected
    proxy_gid: int | None = None
    proxy_mark: int | None = None  # ... or connections carrying this SO_MARK
    proxy_mark_mask: int = 0xFFFFFFFF
    app_uid: int = 4242  # a uid that is neither root nor the proxy: its traffic must be redirected
    app_gid: int = 4242
    dport: int = 8080  # the outbound port the app connects to (one the rules capture)

    @property
    def has_proxy(self) -> bool:
        return self.proxy_uid is not None or self.proxy_mark is not None

    def describe_proxy(self) -> str:
        if self.proxy_uid is not None:
            return f"uid {self.proxy_uid}"
        if self.proxy_mark is not None:
            return f"mark {self.proxy_mark:#x}/{self.proxy_mark_mask:#x}"
        return "none"


_ISTIO = ProbeTarget(proxy_uid=1337, proxy_gid=1337)
_AMBIENT = ProbeTarget(proxy_mark=0x3, proxy_mark_mask=0xFFF)

PROBE_TARGETS: dict[str, ProbeTarget] = {
    "istio-sidecar": _ISTIO,
    "istio-sidecar-tproxy": _ISTIO,
    "istio-sidecar-nftables": _ISTIO,
    "istio-ambient": _AMBIENT,
    "istio-ambient-nftables": _AMBIENT,
    "linkerd": ProbeTarget(proxy_uid=2102, proxy_gid=2102),
}

_CANDIDATE_PORTS = (8080, 80, 9080, 18080, 28080, 38080)
_LAST_CANDIDATE = 48080
# iptables options naming ports (iptables-extensions(8): tcp, udp, multiport, REDIRECT, TPROXY).
_XT_PORT_OPTIONS = (
    "--dport",
    "--dports",
    "--destination-port",
    "--destination-ports",
    "--sport",
    "--sports",
    "--source-port",
    "--source-ports",
    "--port",
    "--ports",
)
_XT_TARGET_PORT_OPTIONS = ("--to-ports", "--to-port", "--on-port")

_Rule = XtRule | NftRule


def derive_target_from_rules(rulesets: Iterable[Ruleset]) -> ProbeTarget:
    """A target for rules without a profile: the proxy uid of their first RETURN rule that matches
    an owner uid (``-m owner --uid-owner N -j RETURN``, ``skuid N ... return``), and an app port
    the rules name nowhere."""
    return _derive([rule for ruleset in rulesets for rule in _in_order(ruleset)])


def _in_order(ruleset: Ruleset) -> list[_Rule]:
    if isinstance(ruleset, NftRuleset):
        return sorted(ruleset.rules, key=lambda r: r.line)
    rules = [r for table in ruleset.tables for r in table.rules]
    if any(_is_command_line(r) for r in rules):
        # ``iptables ...`` command lines are applied table by table, tables in the order they
        # first appear (actions/probe/rules.py ``to_restore``): their first RETURN in that order.
        return list[_Rule](rules)
    return sorted(rules, key=lambda r: r.line)


def _is_command_line(rule: XtRule) -> bool:
    words = rule.text.split(None, 1)
    return bool(words) and words[0] in PROGRAMS


def _proxy_uid(rule: _Rule) -> int | None:
    if isinstance(rule, XtRule):
        owner = rule.uid_owner
        if owner is None or owner.negated or rule.jump != "RETURN":
            return None
        return leading_id(owner.value)
    match = rule.skuid
    # only a plain "skuid N": the proxy is one uid, and "skuid != N" names everyone else
    if match is None or match.operator is not None or len(match.values) != 1:
        return None
    return leading_id(match.values[0]) if rule.verdict == "return" else None


def _ports_named(rule: _Rule) -> set[int]:
    values: list[str] = []
    ranges: list[PortRange] = []
    if isinstance(rule, XtRule):
        for option in rule.options_named(*_XT_PORT_OPTIONS):
            values.extend(option.values)
        ports = {rule.redirect_port, rule.tproxy_port}
        values.extend(v for name in _XT_TARGET_PORT_OPTIONS for v in rule.target_values(name))
        for value in values:
            ranges.extend(port_ranges(value, ":") + port_ranges(value, "-"))
    else:
        ports = {rule.redirect_port, rule.tproxy_port}
        for match in rule.matches:
            if match.key.endswith(("dport", "sport")):
                for value in match.values:
                    ranges.extend(port_ranges(value, "-"))
    for span in ranges:
        ports |= {span.first, span.last}
    return {p for p in ports if p is not None}


def _derive(rules: list[_Rule]) -> ProbeTarget:
    uid = next((u for u in map(_proxy_uid, rules) if u is not None), None)
    named = set().union(*map(_ports_named, rules)) if rules else set()
    port = next(p for p in (*_CANDIDATE_PORTS, _LAST_CANDIDATE) if p not in named)
    app = 4242 if uid != 4242 else 4343
    return ProbeTarget(proxy_uid=uid, proxy_gid=uid, app_uid=app, app_gid=app, dport=port)


def target_for_rules(
    profile: str | None, rulesets: Iterable[Ruleset], proxy_uid: int | None = None
) -> ProbeTarget:
    """The target of ``profile``, else one derived from ``rulesets``; ``proxy_uid`` overrides."""
    target = PROBE_TARGETS.get(profile or "") or derive_target_from_rules(rulesets)
    return _with_uid(target, proxy_uid)


def _with_uid(target: ProbeTarget, proxy_uid: int | None) -> ProbeTarget:
    if proxy_uid is None:
        return target
    return replace(target, proxy_uid=proxy_uid, proxy_gid=proxy_uid, proxy_mark=None)
