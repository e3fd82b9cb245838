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
    # A bare "Permission denied" (EACCES) on table setup: an LSM refused the module autoload.
    "linkerd-7767-fcos-selinux-describe": ("module-request-denied", ("ip_tables",), ()),
    "linkerd-7938-describe-reason": ("permission-denied", (), ()),
    # modprobe inside a container: about the container's module tree, never the node's kernel
    "orbstack-493-modprobe-not-found": (
        "container-modprobe-failed",
        ("nf_nat", "xt_REDIRECT", "xt_owner", "iptable_nat"),
        (),
    ),
    "openccu-3888-syslog-k618": ("legacy-table-missing", ("ip_tables", "ip6_tables"), ()),
    "wps-8-el9-iptables-legacy": ("legacy-table-missing", ("ip_tables", "iptable_nat"), ()),
    # validation probes
    "istio-48734-validation": ("redirect-not-applied", (), ()),
    "istio-io-16193-validation-prefix": ("redirect-not-applied", (), ()),
    "linkerd-11250-network-validator": ("redirect-not-applied", (), ()),
    "linkerd-11597-validator-unreachable": ("redirect-not-applied", (), ()),
    # rules refused without a module named
    "kuma-12658-nft-eopnotsupp": ("rule-rejected", (), ()),
    "istio-58135-nft-index": ("rule-rejected", (), ()),
    "istio-50072-cni-ambient-line-failed": ("rule-rejected", (), ()),
    # a program missing from the node / image
    "linkerd-14538-cni-no-binary": ("tool-missing", (), ()),
    # --- added with issue 11 (each .source names the thread) ---
    # EPERM: capabilities, rootless and user namespaces
    "neonkube-432-istio-init-must-be-root": ("permission-denied", (), ()),
    "istio-13577-proxy-must-be-root": ("permission-denied", (), ()),
    "slirp4netns-265-userns-must-be-root": ("permission-denied", (), ()),
    "dockur-windows-1277-podman-must-be-root": ("permission-denied", (), ()),
    "podman-8784-gluetun-netraw": ("permission-denied", (), ()),
    # EACCES on table setup (Fedora SELinux; a warning before the fatal line)
    "podman-3267-f30-eacces": ("module-request-denied", ("ip_tables", "iptable_nat"), ()),
    "docker-host-50-podman-warning-eacces": (
        "module-request-denied",
        ("ip_tables", "iptable_nat"),
        (),
    ),
    # legacy tables, several programs, forms and distributions
    "lsio-wireguard-60-raw-table": ("legacy-table-missing", ("ip_tables", "iptable_raw"), ()),
    "nginx-mesh-65-no-lib-modules-stack": (
        "legacy-table-missing",
        ("ip_tables", "iptable_nat"),
        (),
    ),
    "kube2iam-375-consul-no-lib-modules": (
        "legacy-table-missing",
        ("ip_tables", "iptable_nat"),
        (),
    ),
    "antrea-7755-talos-ip-tables": ("legacy-table-missing", ("ip_tables", "iptable_raw"), ()),
    "rke-642-moddep-ubuntu": ("legacy-table-missing", ("ip_tables", "iptable_nat"), ()),
    "dockur-windows-250-nat-table": ("legacy-table-missing", ("ip_tables", "iptable_nat"), ()),
    "wsl2-kernel-20-dockerd-nat": ("legacy-table-missing", ("ip_tables", "iptable_nat"), ()),
    "istio-42262-openshift-nat": ("legacy-table-missing", ("ip_tables", "iptable_nat"), ()),
    # nf_tables missing (EINVAL on the generation id), the fatal line deciding over warnings
    "amnezia-wg-6-generation-id": ("nftables-unavailable", ("nf_tables", "nfnetlink"), ()),
    "wireguard-pia-130-warnings-generation-id": (
        "nftables-unavailable",
        ("nf_tables", "nfnetlink"),
        (),
    ),
    "lsio-wireguard-191-synology-genid": ("nftables-unavailable", ("nf_tables",), ()),
    "lsio-wireguard-392-qnap-genid": ("nftables-unavailable", ("nf_tables",), ()),
    "talos-pkgs-951-nft-fib": ("nftables-unavailable", ("nft_fib_inet",), ()),
    "wsl-9772-nft-nat-chain": ("nftables-unavailable", ("nft_chain_nat",), ()),
    # extensions
    "wsl-9844-masquerade-chain-not-exist": (
        "extension-missing",
        ("xt_MASQUERADE", "nft_compat"),
        (),
    ),
    "kuma-5137-unknown-option-to-ports": ("extension-missing", ("xt_REDIRECT",), ()),
    # ENOENT right after a setup command: the modules that command needs
    "istio-13857-okd-redirect-enoent": ("rule-rejected", ("xt_REDIRECT",), ()),
    "linkerd-4851-openshift-redirect-enoent": ("rule-rejected", ("xt_REDIRECT",), ()),
    "cilium-8982-cos-socket-enoent": ("rule-rejected", ("xt_socket",), ()),
    "k8s-112292-kube-proxy-line-failed": ("rule-rejected", (), ()),
    # IPv6 disabled (EAFNOSUPPORT)
    "istio-15895-cni-ipv6-eafnosupport": ("ipv6-disabled", (), ()),
    "cilium-18513-ol8-ipv6-eafnosupport": ("ipv6-disabled", (), ()),
    # left-over chains (EEXIST)
    "istio-2605-chain-already-exists": ("leftover-rules", (), ()),
    "istio-21030-chain-exists-trace": ("leftover-rules", (), ()),
    "kube-router-1256-chain-user-add-eexist": ("leftover-rules", (), ()),
    # the xtables lock
    "gke-57428-cos-xtables-lock": ("xtables-lock", (), ()),
    "kube-router-1057-xtables-lock": ("xtables-lock", (), ()),
    # rules this iptables cannot read
    "k3s-kube-router-1777-incompatible": ("foreign-rules", (), ()),
    "cilium-22546-iface-foreign-rule": ("foreign-rules", (), ()),
    # tools missing
    "felix-1629-no-iptables-restore": ("tool-missing", (), ()),
    # no known cause: unknown, with the failing lines quoted
    "cilium-22482-ip6tables-double-free": ("unknown", (), ()),
    "calico-4487-arm64-unknown-arguments": ("unknown", (), ()),
}

CLEAN = sorted(p.stem for p in LOGS.glob("clean-*.log"))


def test_every_sample_is_covered_and_sourced() -> None:
    names = {p.stem for p in LOGS.glob("*.log")}
    assert names == set(EXPECTED) | set(CLEAN)
    assert len(EXPECTED) >= 60 and len(CLEAN) >= 12
    for name in names:
        source = LOGS / f"{name}.source"
        assert source.is_file(), f"{name}.log has no .source file"
        text = source.read_text(encoding="utf-8")
        assert "https://github.com/" in text or "CONSTRUCTED" in text
        assert len(text.strip().splitlines()) >= 2, f"{name}.source must say what it is"


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
    assert diagnosis.backend is Backend.LEGACY


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
    assert diagnosis.backend is Backend.NFTABLES


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


# --- the whole corpus -------------------------------------------------------------------------

ALL = sorted(p.stem for p in LOGS.glob("*.log"))


def test_corpus_zero_clean_verdicts_on_failing_logs_and_zero_findings_on_clean_ones() -> None:
    silent = []
    noisy = []
    for name in ALL:
        diagnosis = diagnose_text(read_log(f"{name}.log"), name)
        if name.startswith("clean-"):
            if diagnosis.findings:
                noisy.append((name, [f.cause for f in diagnosis.findings]))
        elif not diagnosis.findings or not diagnosis.failed:
            silent.append(name)
    assert silent == [] and noisy == [], (silent, noisy)
    assert len(ALL) - len(CLEAN) >= 60


@pytest.mark.parametrize("name", ALL)
def test_cli_exit_code_over_the_corpus(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    from meshready.cli.main import main

    code = main(["diagnose", "-o", "json", str(LOGS / f"{name}.log")])
    capsys.readouterr()
    assert code == (0 if name.startswith("clean-") else 1)


def test_unknown_quotes_the_failing_lines() -> None:
    diagnosis = diagnose_text(read_log("cilium-22482-ip6tables-double-free.log"), "x")
    (finding,) = diagnosis.findings
    assert finding.cause == "unknown"
    assert any("core dumped" in e for e in finding.evidence)
    assert finding.fix.steps and finding.fix.notes


def test_module_not_in_kernel_needs_the_node_side() -> None:
    log = read_log("antrea-7755-talos-ip-tables.log")
    alone = [f.cause for f in diagnose_text(log, "x").findings]
    assert "module-not-in-kernel" not in alone  # the modprobe ran in the agent's container
    node_says = DiagnoseContext(node="talos-1", absent_modules=("ip_tables",))
    findings = diagnose_text(log, "x", node_says).findings
    assert findings[0].cause == "module-not-in-kernel"
    assert findings[0].modules == ("ip_tables",)
    assert "talos-1" in findings[0].explanation


def test_the_fatal_line_decides_over_warnings() -> None:
    causes = [
        f.cause
        for f in diagnose_text(read_log("docker-host-50-podman-warning-eacces.log"), "x").findings
    ]
    assert causes == ["module-request-denied"]
    first = diagnose_text(read_log("wireguard-pia-130-warnings-generation-id.log"), "x").findings[0]
    assert first.cause == "nftables-unavailable"
    assert any("Extension addrtype" in e for e in first.evidence)  # kept as supporting evidence
