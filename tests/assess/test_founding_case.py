"""The founding case: OKE, Oracle Linux 8 (UEK 5.15), Istio 1.17 sidecar on iptables-legacy."""

from __future__ import annotations

import json

from meshready.assess.assess import assess
from meshready.assess.plan import needs_from_options
from meshready.assess.report import State
from meshready.host.facts import gather_offline
from tests.conftest import CASE

RELEASE = "5.15.0-100.96.32.el8uek.aarch64"


def _report():  # type: ignore[no-untyped-def]
    facts = gather_offline(CASE / "lsmod.txt", RELEASE)
    spec = needs_from_options(None, (), None)
    return assess(spec.needs, facts, spec.backend, spec.profile, spec.rules)


def test_not_ready_and_names_what_istio_init_needs() -> None:
    report = _report()
    assert not report.ready
    states = {m.name: m.state for m in report.modules}
    for name in ("ip_tables", "iptable_nat", "xt_REDIRECT", "xt_owner", "iptable_raw", "xt_CT"):
        assert not states[name].ok, name
        assert name in report.missing
    ip_tables = next(m for m in report.modules if m.name == "ip_tables")
    assert "only the iptables binary loads it" in ip_tables.detail


def test_loaded_modules_are_reported_loaded() -> None:
    states = {m.name: m.state for m in _report().modules}
    for name in ("ip6_tables", "ip6table_nat", "nf_nat", "nf_conntrack", "nf_defrag_ipv4"):
        assert states[name] is State.LOADED, name


def test_old_names_are_never_reported_missing_on_5x() -> None:
    names = {m.name for m in _report().modules}
    assert not names & {"nf_conntrack_ipv4", "nf_conntrack_ipv6", "nf_nat_ipv4", "nf_nat_ipv6"}


def test_x_tables_inferred_built_in_with_xt_tcpudp() -> None:
    modules = {m.name: m for m in _report().modules}
    assert modules["x_tables"].state is State.BUILTIN
    assert "ip6_tables is loaded and needs x_tables" in modules["x_tables"].detail
    assert modules["xt_tcpudp"].state is State.BUILTIN  # same Kconfig symbol as x_tables


def test_check_cli_on_the_case(run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(
        "check", "--lsmod", str(CASE / "lsmod.txt"), "--kernel-release", RELEASE, "-o", "json"
    )
    assert result.code == 1
    data = json.loads(result.out)
    assert data["ready"] is False
    assert {"ip_tables", "iptable_nat", "xt_REDIRECT", "xt_owner"} <= set(data["missing"])
    assert all({"name", "state"} <= set(m) for m in data["modules"])


def test_an_old_kernel_needs_the_per_family_modules() -> None:
    facts = gather_offline(CASE / "lsmod.txt", "4.14.35-2047.el7uek.x86_64")
    spec = needs_from_options(None, (), None)
    names = {m.name for m in assess(spec.needs, facts, spec.backend).modules}
    assert {"nf_nat_ipv4", "nf_conntrack_ipv4"} <= names
