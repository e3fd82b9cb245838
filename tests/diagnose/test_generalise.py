"""Wordings the catalogue was not written from: other tables, families, versions, programs."""

from __future__ import annotations

import pytest

from meshready.diagnose.engine import diagnose_text

AVC = (
    "type=AVC msg=audit(1700000000.123:456): avc:  denied  {{ module_request }} for  pid=4242 "
    'comm="{comm}" kmod="{kmod}" scontext=system_u:system_r:container_t:s0:c1,c2 '
    "tcontext=system_u:system_r:kernel_t:s0 tclass=system permissive=0"
)

CASES: list[tuple[str, str, tuple[str, ...]]] = [
    (
        "iptables-restore v1.8.9 (legacy): iptables-restore: unable to initialize table 'mangle'",
        "legacy-table-missing",
        ("ip_tables", "iptable_mangle"),
    ),
    (
        'ip6tables-restore v1.8.10 (legacy): ip6tables-restore: unable to initialize table "raw"',
        "legacy-table-missing",
        ("ip6_tables", "ip6table_raw"),
    ),
    (
        "iptables v1.8.7 (legacy): can't initialize iptables table ‘nat’: Table does not exist "
        "(do you need to insmod?)",
        "legacy-table-missing",
        ("ip_tables", "iptable_nat"),
    ),
    (
        "iptables-save v1.8.4 (legacy): Cannot initialize: iptables who? (do you need to insmod?)",
        "legacy-table-missing",
        ("ip_tables",),
    ),
    (
        "Warning: Extension TPROXY revision 1 not supported, missing kernel module?\n"
        "ip6tables-restore v1.8.9 (nf_tables): line 12: RULE_APPEND failed (No such file or "
        "directory): rule in chain ISTIO_DIVERT",
        "extension-missing",
        ("xt_TPROXY", "nft_compat"),
    ),
    (
        "iptables-restore v1.8.4 (legacy): Couldn't load target `CT':No such file or directory\n"
        "Error occurred at line: 30",
        "extension-missing",
        ("xt_CT",),
    ),
    (
        "iptables v1.6.1: Couldn't load match `multiport':No such file or directory",
        "extension-missing",
        ("xt_multiport",),
    ),
    (
        "iptables v1.8.10 (nf_tables): Could not fetch ruleset generation id: Operation not "
        "supported",
        "nftables-unavailable",
        ("nf_tables", "nfnetlink"),
    ),
    (
        # A modprobe's own view (a container's module tree), not the node's kernel.
        "modprobe: FATAL: Module nft_chain_nat not found in directory /lib/modules/6.1.0-13-amd64",
        "container-modprobe-failed",
        ("nft_chain_nat",),
    ),
    (
        AVC.format(comm="iptables-nft-re", kmod="nft-chain-2-nat"),
        "module-request-denied",
        ("nft_chain_nat",),
    ),
    (AVC.format(comm="nft", kmod="nft-expr-redir"), "module-request-denied", ("nft_redir",)),
    (AVC.format(comm="iptables", kmod="ip6t_owner"), "module-request-denied", ("xt_owner",)),
    (
        # Bare "Permission denied" = EACCES: an LSM refused the ip6_tables autoload.
        "ip6tables-save v1.8.7 (legacy): Cannot initialize: Permission denied\n"
        "Error: exit status 1",
        "module-request-denied",
        ("ip6_tables",),
    ),
    (
        "ip6tables-save v1.8.7 (legacy): Cannot initialize: Permission denied (you must be root)",
        "permission-denied",
        (),
    ),
    (
        "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied "
        "(you must be root)",
        "permission-denied",
        (),
    ),
    (
        "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Protocol not "
        "supported",
        "nftables-unavailable",
        ("nf_tables", "nfnetlink"),
    ),
    (
        "iptables-legacy-save v1.8.9: Cannot initialize: iptables who? (do you need to insmod?)",
        "legacy-table-missing",
        ("ip_tables",),
    ),
    (
        "netlink: Error: Could not process rule: Permission denied\n"
        "add table inet istio-proxy-nat\n^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n",
        "lsm-denied",
        (),
    ),
    (
        "iptables: Permission denied (you must be root).",
        "permission-denied",
        (),
    ),
    (
        "ip6tables: Permission denied.\nexit status 1",
        "lsm-denied",
        (),
    ),
    (
        "iptables v1.8.7 (nf_tables): CHAIN_USER_ADD failed (File exists): chain ISTIO_OUTPUT",
        "leftover-rules",
        (),
    ),
    (
        "/bin/sh: iptables-restore: not found\nexit status 127",
        "tool-missing",
        (),
    ),
    (
        "iptables: error while loading shared libraries: libip4tc.so.2: cannot open shared "
        "object file: No such file or directory",
        "tool-missing",
        (),
    ),
    (
        "ip6tables-restore v1.8.9 (legacy): ip6tables-restore: unable to initialize table 'nat'\n"
        "modprobe: FATAL: Module ip6_tables not found in directory /lib/modules/6.18.2-talos",
        "legacy-table-missing",
        ("ip6_tables", "ip6table_nat"),
    ),
    (
        "/dev/stdin:3:1-52: Error: Could not process rule: Operation not permitted\n"
        "add table inet istio-ambient-nat\n^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n",
        "permission-denied",
        (),
    ),
    (
        "2025-01-01T00:00:00Z error iptables validation failed; workload is not ready for Istio.",
        "redirect-not-applied",
        (),
    ),
    (
        "insmod: ERROR: could not insert module xt_owner.ko: Required key not available",
        "module-request-denied",
        ("xt_owner",),
    ),
    (
        "iptables-restore: line 27 failed\nError: exit status 1",
        "rule-rejected",
        (),
    ),
]


@pytest.mark.parametrize(("log", "cause", "modules"), CASES)
def test_unseen_wording(log: str, cause: str, modules: tuple[str, ...]) -> None:
    diagnosis = diagnose_text(log + "\n", "unseen")
    assert diagnosis.findings, log
    first = diagnosis.findings[0]
    assert first.cause == cause, [f.cause for f in diagnosis.findings]
    assert first.modules[: len(modules)] == modules


@pytest.mark.parametrize(
    "log",
    [
        # Expected noise in successful runs.
        "2020/07/15 16:22:43 < iptables: No chain/target/match by that name.",
        "+ iptables -t nat -D PREROUTING -p tcp -j ISTIO_INBOUND\n"
        "iptables v1.6.1: Couldn't load target `ISTIO_INBOUND':No such file or directory",
        "Another app is currently holding the xtables lock; waiting (1s) for it to exit...",
        "W0604 21:21:41.650330       1 proxier.go:498] Failed to load kernel module ip_vs with "
        "modprobe. You can ignore this message when kube-proxy is running inside container without "
        "mounting /lib/modules",
        "warn failed to setup execution environment, attempting to continue anyways: failed to "
        "remount /: permission denied",
        "info Running command: iptables-restore --noflush /tmp/iptables-rules-1.txt",
        "validation passed",
        "Listening on 127.0.0.1:15001",
        "The table nat lists 4 chains",
        'level=info msg="Will ignore port [4190 4191] on chain PROXY_INIT_REDIRECT"',
    ],
)
def test_noise_is_not_a_finding(log: str) -> None:
    assert diagnose_text(log, "noise").findings == []


@pytest.mark.parametrize(
    "log",
    [
        # Failed steps that must never look clean, whatever the message.
        "iptables: Chain already exists.",
        "something went wrong\nexit status 3",
        "panic: runtime error: invalid memory address or nil pointer dereference",
        "+ iptables -t nat -A ISTIO_REDIRECT -p tcp -j REDIRECT --to-port 15001\n"
        "iptables: No chain/target/match by that name.",
        "error Error connecting to 127.0.0.6:15002: dial tcp 127.0.0.1:0->127.0.0.6:15002: "
        "connect: connection refused",
        "Failed to execute: /usr/sbin/frobnicate, exit status 5",
        "iptables v1.8.10 (nf_tables): something nobody has seen before: cannot do it",
    ],
)
def test_failure_is_never_clean(log: str) -> None:
    diagnosis = diagnose_text(log, "failing")
    assert diagnosis.findings, log
    assert diagnosis.failed


def test_failed_line_is_mapped_to_the_printed_rule() -> None:
    # The rules istio-cni prints (istio/istio#56692), then a failure at line 6 of that input.
    log = (
        "2025-06-19T00:00:00.000000Z info cni-agent Running iptables-legacy-restore with the "
        "following input:\n"
        "* mangle\n"
        "-N ISTIO_PRERT\n"
        "-N ISTIO_OUTPUT\n"
        "-A PREROUTING -j ISTIO_PRERT\n"
        "-A OUTPUT -j ISTIO_OUTPUT\n"
        "-A ISTIO_PRERT -m mark --mark 0x539/0xfff -j CONNMARK --set-xmark 0x111/0xfff\n"
        "-A ISTIO_OUTPUT -m connmark --mark 0x111/0xfff -j CONNMARK --restore-mark --nfmask "
        "0xffffffff --ctmask 0xffffffff\n"
        "COMMIT\n"
        "2025-06-19T00:00:00.100000Z error Command error output: xtables other problem: line 6 "
        "failed\n"
        "2025-06-19T00:00:00.100100Z error iptables failed to restore iptables rules: exit status 1\n"
    )
    finding = diagnose_text(log, "cni").findings[0]
    assert finding.cause == "rule-rejected"
    assert "CONNMARK --set-xmark" in finding.explanation
    assert finding.modules == ("iptable_mangle", "xt_mark", "xt_connmark")


def test_context_from_the_fleet_view_confirms_modules() -> None:
    from meshready.diagnose.model import DiagnoseContext

    log = "iptables-restore v1.8.7 (legacy): iptables-restore: unable to initialize table 'nat'\n"
    plain = diagnose_text(log, "x").findings[0]
    ctx = DiagnoseContext(container="istio-init", node="n1", missing_modules=("ip_tables",))
    confirmed = diagnose_text(log, "x", ctx).findings[0]
    assert confirmed.confidence > plain.confidence
    assert "n1's own assessment confirms missing: ip_tables" in confirmed.explanation
