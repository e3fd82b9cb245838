"""Real logs from public issue threads (each tests/data/logs/NAME.log has NAME.source with the URL)."""

from __future__ import annotations

import pytest

from meshready.diagnose.engine import diagnose_text
from meshready.diagnose.model import DiagnoseContext
from meshready.knowledge.requests import Backend

from .conftest import LOGS, read_log

# name -> (first cause, modules that must be named by the first finding, other causes expected)
EXPECTED: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    # iptables-legacy tables, several meshes, iptables versions and log forms
    "istio-28897-rhel8-legacy": ("legacy-table-missing", ("ip_tables", "iptable_nat"), ()),
    "istio-57380-al2023-k612": ("legacy-table-missing", ("ip_tables", "iptable_nat"), ()),
    "eks-ami-2354-al2023-json": ("legacy-table-missing", ("ip_tables", "iptable_nat"), ()),
    "osm-4609-no-lib-modules": ("legacy-table-missing", ("ip_tables", "iptable_nat"), ()),
    "kuma-counter-demo-30-rhel8": ("legacy-table-missing", ("ip_tables", "iptable_nat"), ()),
    "istio-10335-ip6tables-filter": (
        "legacy-table-missing",
        ("ip6_tables", "ip6table_filter", "xt_state", "ip6t_REJECT"),
        (),
    ),
    "firewalld-411-security-table": (
        "legacy-table-missing",
        ("ip_tables", "iptable_security", "ip6_tables", "ip6table_security"),
        ("nftables-unavailable",),
    ),
    # SELinux refusing module loads (audit log and dmesg forms)
    "istio-24101-avc-module-request": ("module-request-denied", ("xt_owner", "xt_REDIRECT"), ()),
    "metal3-703-dmesg-avc": ("module-request-denied", ("iptable_filter",), ()),
    # iptables-nft extensions
    "telepresence-3966-nft-owner": ("extension-missing", ("xt_owner", "nft_compat"), ()),
    "istio-57678-gvisor-comment": ("extension-missing", ("xt_comment",), ()),
    "k3s-9243-journald-recent": ("extension-missing", ("xt_recent", "nft_compat"), ()),
    # nf_tables
    "linkerd-9053-cos-generation-id": ("nftables-unavailable", ("nf_tables", "nfnetlink"), ()),
    "deckhouse-3614-table-add-nat": ("nftables-unavailable", ("nft_chain_nat",), ()),
    "dfw-90-nft-ct": ("nftables-unavailable", ("nft_ct",), ()),
    # permissions (capabilities, SELinux label)
    "linkerd-2056-plain-root": ("permission-denied", (), ()),
    "linkerd-6254-yaml-netraw": ("permission-denied", (), ()),
    "linkerd-7767-fcos-selinux-describe": ("permission-denied", (), ()),
    "linkerd-7938-describe-reason": ("permission-denied", (), ()),
    # modules absent from the kernel
    "orbstack-493-modprobe-not-found": (
        "module-not-in-kernel",
        ("nf_nat", "xt_REDIRECT", "xt_owner", "iptable_nat"),
        (),
    ),
    "openccu-3888-syslog-k618": (
        "module-not-in-kernel",
        ("ip_tables", "ip6_tables"),
        ("legacy-table-missing",),
    ),
    "wps-8-el9-iptables-legacy": (
        "module-not-in-kernel",
        ("ip_tables",),
        ("legacy-table-missing",),
    ),
    # validation probes
    "istio-48734-validation": ("redirect-not-applied", (), ()),
    "istio-io-16193-validation-prefix": ("redirect-not-applied", (), ()),
    "linkerd-11250-network-validator": ("redirect-not-applied", (), ()),
    "linkerd-11597-validator-unreachable": ("redirect-not-applied", (), ()),
    # rules refused without a module named
    "kuma-12658-nft-eopnotsupp": ("rule-rejected", (), ()),
    "istio-58135-nft-index": ("rule-rejected", (), ()),
    "istio-50072-cni-ambient-line-failed": ("rule-rejected", (), ()),
    # a failure no cause fits
    "linkerd-14538-cni-no-binary": ("unknown", (), ()),
}

CLEAN = sorted(p.stem for p in LOGS.glob("clean-*.log"))


def test_every_sample_is_covered_and_sourced() -> None:
    names = {p.stem for p in LOGS.glob("*.log")}
    assert names == set(EXPECTED) | set(CLEAN)
    assert len(EXPECTED) >= 15 and len(CLEAN) >= 3
    for name in names:
        source = LOGS / f"{name}.source"
        assert source.is_file(), f"{name}.log has no .source file"
        text = source.read_text(encoding="utf-8")
        assert "https://github.com/" in text or "CONSTRUCTED" in text


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_sample(name: str) -> None:
    cause, modules, others = EXPECTED[name]
    diagnosis = diagnose_text(read_log(f"{name}.log"), name)
    causes = [f.cause for f in diagnosis.findings]
    assert causes and causes[0] == cause, causes
    first = diagnosis.findings[0]
    for module in modules:
        assert module in first.modules, (module, first.modules)
    for other in others:
        assert other in causes
    assert first.evidence, "a finding must quote its evidence"
    assert first.explanation
    for finding in diagnosis.findings:
        # Real module names: underscores, never a request name.
        for module in finding.modules:
            assert "-" not in module and not module.startswith(("ipt_owner", "nft-expr")), module


@pytest.mark.parametrize("name", CLEAN)
def test_clean_log_has_no_finding(name: str) -> None:
    diagnosis = diagnose_text(read_log(f"{name}.log"), name)
    assert diagnosis.findings == [], [f.cause for f in diagnosis.findings]
    assert diagnosis.ok


def test_founding_log(founding_log: str) -> None:
    diagnosis = diagnose_text(founding_log, "istio-init.log")
    assert [f.cause for f in diagnosis.findings] == ["legacy-table-missing"]
    finding = diagnosis.findings[0]
    assert finding.modules[:2] == ("ip_tables", "iptable_nat")
    assert "unable to initialize table 'nat'" in finding.evidence[0]
    assert finding.fix.modules_load_conf is not None
    assert finding.fix.modules_load_conf.startswith("ip_tables\niptable_nat\n")
    assert any("modprobe -a ip_tables iptable_nat" in c for c in finding.fix.commands)
    assert diagnosis.backend == "legacy"


def test_founding_log_with_container_lists_every_module_of_the_sidecar(founding_log: str) -> None:
    diagnosis = diagnose_text(
        founding_log, "istio-init.log", DiagnoseContext(container="istio-init")
    )
    finding = diagnosis.findings[0]
    # What the founding case README says the sidecar's IPv4 rules need.
    for module in ("ip_tables", "iptable_nat", "xt_REDIRECT", "xt_owner", "iptable_raw", "xt_CT"):
        assert module in finding.modules
    assert "istio-sidecar profile" in finding.explanation


def test_rules_in_the_log_give_every_module() -> None:
    # The rules istio-init prints (from istio/istio#41767) followed by the founding failure.
    rules = read_log("clean-istio-1.17-success.log").split("Running command: iptables-restore")[0]
    failure = (
        "2023-04-15T02:33:07.245568Z error Command error output: xtables parameter problem: "
        "iptables-restore: unable to initialize table 'nat'\nError occurred at line: 1\n"
    )
    diagnosis = diagnose_text(rules + failure, "x")
    finding = diagnosis.findings[0]
    assert finding.cause == "legacy-table-missing"
    assert finding.rule_modules == (
        "ip_tables",
        "iptable_nat",
        "xt_tcpudp",
        "xt_REDIRECT",
        "xt_owner",
    )
    assert "need, in all" in finding.explanation


def test_native_nft_expression_from_the_underline() -> None:
    log = (
        "error   nftables run failed: /dev/stdin:12:60-77: Error: Could not process rule: "
        "No such file or directory\n"
        "add rule inet istio-proxy-nat istio-redirect meta l4proto tcp redirect to :15001\n"
        "                                                             ^^^^^^^^^^^^^^^^^^\n"
    )
    diagnosis = diagnose_text(log, "x")
    assert diagnosis.findings[0].cause == "nftables-unavailable"
    assert diagnosis.findings[0].modules[0] == "nft_redir"
    assert diagnosis.backend == "nftables"


def test_backend_hint_overrides() -> None:
    log = "Warning: Extension owner revision 0 not supported, missing kernel module?\n"
    diagnosis = diagnose_text(log, "x", DiagnoseContext(backend=Backend.NFT))
    assert diagnosis.findings[0].modules[:2] == ("xt_owner", "nft_compat")


def test_selinux_is_named_in_the_fix() -> None:
    diagnosis = diagnose_text(read_log("istio-24101-avc-module-request.log"), "x")
    finding = diagnosis.findings[0]
    assert finding.selinux
    assert any("SELinux" in note for note in finding.fix.notes)


def test_avc_and_table_failure_rank_selinux_first() -> None:
    log = read_log("istio-24101-avc-module-request.log") + (
        "iptables-restore v1.8.4 (legacy): Couldn't load match `owner':No such file or directory\n"
        "Error occurred at line: 19\n"
    )
    causes = [f.cause for f in diagnose_text(log, "x").findings]
    assert causes[0] == "module-request-denied"
    assert "extension-missing" in causes
