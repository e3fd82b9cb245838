"""One message family at a time: each extractor on its own lines (diagnose.families)."""

from __future__ import annotations

import pytest

from meshready.diagnose.errnos import read_errno
from meshready.diagnose.families import (
    context,
    iptables_nft,
    libiptc,
    lsm,
    modprobe,
    nft,
    runtime,
    validation,
)
from meshready.diagnose.families.common import permission_denied, step_of
from meshready.diagnose.kinds import Errno, Kind, LineView, Signal, Step
from meshready.diagnose.readers import read_lines
from meshready.diagnose.signals import extract
from meshready.knowledge.requests import Backend, Family


def view(text: str, command: str | None = None, index: int = 0) -> LineView:
    lines = read_lines(text)
    step = step_of(command) if command else Step.UNKNOWN
    return LineView(lines, index, lines[index].text.lower(), command, step)


def kinds(signals: list[Signal]) -> list[Kind]:
    return [s.kind for s in signals]


# --- errno, read the way the tool wrote it ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "errno"),
    [
        (
            "can't initialize iptables table `nat': Permission denied (you must be root)",
            Errno.EPERM,
        ),
        ("Cannot initialize: Permission denied", Errno.EACCES),
        ("Error: Could not process rule: Operation not permitted", Errno.EPERM),
        ("Cannot initialize: iptables who? (do you need to insmod?)", Errno.ENOPROTOOPT),
        ("Table does not exist (do you need to insmod?)", Errno.ENOENT),
        ("Could not fetch rule set generation id: Invalid argument", Errno.EINVAL),
        ("Could not fetch rule set generation id: Protocol not supported", Errno.EPROTONOSUPPORT),
        ("RULE_APPEND failed (Operation not supported)", Errno.EOPNOTSUPP),
        ("Address family not supported by protocol", Errno.EAFNOSUPPORT),
        ("CHAIN_USER_ADD failed (File exists)", Errno.EEXIST),
        ("no errno here", None),
    ],
)
def test_errno_as_printed(text: str, errno: Errno | None) -> None:
    assert read_errno(text)[0] is errno


# --- libiptc / legacy ------------------------------------------------------------------------


def test_libiptc_table_missing_and_core_missing() -> None:
    (s,) = libiptc.extract(
        view("iptables-restore v1.8.9 (legacy): unable to initialize table 'raw'")
    )
    assert (s.kind, s.table, s.family) == (Kind.TABLE_MISSING, "raw", Family.IPV4)
    (s,) = libiptc.extract(
        view(
            "iptables-save v1.8.4 (legacy): Cannot initialize: iptables who? "
            "(do you need to insmod?)"
        )
    )
    assert (s.kind, s.errno) == (Kind.CORE_MISSING, Errno.ENOPROTOOPT)


def test_libiptc_eperm_and_eacces_are_told_apart() -> None:
    (eperm,) = libiptc.extract(
        view(
            "iptables v1.6.0: can't initialize iptables table `nat': Permission denied (you must be "
            "root)"
        )
    )
    (eacces,) = libiptc.extract(
        view("iptables v1.8.2 (legacy): can't initialize iptables table `nat': Permission denied")
    )
    assert (eperm.kind, eperm.errno) == (Kind.PERMISSION, Errno.EPERM)
    assert (eacces.kind, eacces.errno, eacces.detail) == (
        Kind.PERMISSION,
        Errno.EACCES,
        "table setup",
    )


def test_libiptc_ipv6_disabled() -> None:
    (s,) = libiptc.extract(
        view(
            "ip6tables v1.8.4 (legacy): can't initialize ip6tables table `nat': Address family "
            "not supported by protocol"
        )
    )
    assert (s.kind, s.errno, s.family) == (Kind.IPV6_DISABLED, Errno.EAFNOSUPPORT, Family.IPV6)


def test_libiptc_chain_or_extension() -> None:
    (chain,) = libiptc.extract(
        view("Couldn't load target `ISTIO_OUTPUT':No such file or directory")
    )
    (ext,) = libiptc.extract(view("Couldn't load target `CT':No such file or directory"))
    assert chain.kind is Kind.CHAIN_MISSING and chain.name == "ISTIO_OUTPUT"
    assert ext.kind is Kind.EXTENSION_MISSING and ext.name == "CT"


def test_libiptc_enoent_carries_the_step_of_the_command_before() -> None:
    cleanup = libiptc.extract(
        view(
            "iptables: No chain/target/match by that name.", "iptables -t nat -F PROXY_INIT_OUTPUT"
        )
    )
    setup = libiptc.extract(
        view("iptables: No chain/target/match by that name.", "iptables -t nat -A X -j REDIRECT")
    )
    assert kinds(cleanup) == [Kind.XT_ENOENT] and cleanup[0].step is Step.CLEANUP
    assert setup[0].step is Step.SETUP


def test_libiptc_leftover_lock_unknown_option_library() -> None:
    assert kinds(libiptc.extract(view("iptables: Chain already exists."))) == [Kind.CHAIN_EXISTS]
    (lock,) = libiptc.extract(
        view(
            "Another app is currently holding the xtables lock. Perhaps you want to use the -w "
            "option?"
        )
    )
    assert (lock.kind, lock.detail) == (Kind.LOCK_HELD, "gave up")
    (wait,) = libiptc.extract(
        view("Another app is currently holding the xtables lock; waiting (1s) for it to exit...")
    )
    assert wait.detail == "waiting"
    (opt,) = libiptc.extract(view('iptables-restore v1.8.4 (legacy): unknown option "--to-ports"'))
    assert (opt.kind, opt.name) == (Kind.EXTENSION_MISSING, "REDIRECT")
    (lib,) = libiptc.extract(view("Can't find library for match `iface'"))
    assert (lib.kind, lib.name) == (Kind.FOREIGN_RULES, "iface")


# --- iptables-nft ----------------------------------------------------------------------------


def test_iptables_nft_generation_id_by_errno() -> None:
    (einval,) = iptables_nft.extract(
        view(
            "iptables v1.8.11 (nf_tables): Could not fetch rule set generation id: Invalid argument"
        )
    )
    (eperm,) = iptables_nft.extract(
        view(
            "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission "
            "denied (you must be root)"
        )
    )
    assert (einval.kind, einval.errno) == (Kind.NFT_UNAVAILABLE, Errno.EINVAL)
    assert (eperm.kind, eperm.errno) == (Kind.PERMISSION, Errno.EPERM)


def test_iptables_nft_warning_object_add_rule_op() -> None:
    (w,) = iptables_nft.extract(
        view("Warning: Extension owner revision 0 not supported, missing kernel module?")
    )
    assert w.kind is Kind.EXTENSION_MISSING and w.warning
    (nat,) = iptables_nft.extract(
        view("line 24: TABLE_ADD failed (No such file or directory): table nat")
    )
    assert (nat.kind, nat.name) == (Kind.NFT_UNAVAILABLE, "chain:nat")
    (exists,) = iptables_nft.extract(
        view("line 60: CHAIN_USER_ADD failed (File exists): chain KUBE-FIREWALL")
    )
    assert exists.kind is Kind.CHAIN_EXISTS
    (rule,) = iptables_nft.extract(
        view("line 9: RULE_APPEND failed (Operation not supported): rule in chain PREROUTING")
    )
    assert (rule.kind, rule.errno, rule.number) == (Kind.RULE_FAILED, Errno.EOPNOTSUPP, 9)


def test_iptables_nft_chain_does_not_exist_and_incompatible() -> None:
    (t,) = iptables_nft.extract(
        view("iptables v1.8.7 (nf_tables): Chain 'MASQUERADE' does not exist")
    )
    assert (t.kind, t.name) == (Kind.EXTENSION_MISSING, "MASQUERADE")
    (c,) = iptables_nft.extract(
        view("iptables v1.8.7 (nf_tables): Chain 'KUBE-SVC-X' does not exist")
    )
    assert c.kind is Kind.CHAIN_MISSING
    (f,) = iptables_nft.extract(
        view(
            "iptables v1.8.10 (nf_tables): chain `INPUT' in table `filter' is incompatible, use "
            "'nft' tool."
        )
    )
    assert f.kind is Kind.FOREIGN_RULES


# --- nft ------------------------------------------------------------------------------------


def test_nft_rule_with_underline_and_without() -> None:
    text = (
        "/dev/stdin:12:60-77: Error: Could not process rule: No such file or directory\n"
        "add rule inet istio-proxy-nat istio-redirect meta l4proto tcp redirect to :15001\n"
        "                                                             ^^^^^^^^^^^^^^^^^^\n"
    )
    (s,) = nft.extract(view(text))
    assert s.kind is Kind.NFT_RULE_ERROR and s.extra[1].startswith("redirect to")
    text2 = (
        "nft 'add chain fw_nat postrouting { type nat hook postrouting priority 100 ; }'\n"
        "Error: Could not process rule: No such file or directory\n"
    )
    (s2,) = nft.extract(view(text2, index=1))
    assert "type nat" in s2.extra[0]


def test_nft_eperm_and_eacces() -> None:
    (p,) = nft.extract(view("Error: Could not process rule: Operation not permitted"))
    (a,) = nft.extract(view("Error: Could not process rule: Permission denied"))
    assert (p.kind, p.errno) == (Kind.PERMISSION, Errno.EPERM)
    assert (a.kind, a.errno) == (Kind.PERMISSION, Errno.EACCES)


# --- modprobe -------------------------------------------------------------------------------


def test_modprobe_messages() -> None:
    (nf,) = modprobe.extract(
        view("modprobe: FATAL: Module ip_tables not found in directory /lib/modules/6.18.2-talos")
    )
    assert (nf.kind, nf.name, nf.detail) == (Kind.MODPROBE_NOT_FOUND, "ip_tables", "6.18.2-talos")
    (nt,) = modprobe.extract(
        view("modprobe: can't change directory to '/lib/modules': No such file or directory")
    )
    assert nt.kind is Kind.MODPROBE_NO_TREE
    (rf,) = modprobe.extract(
        view("modprobe: ERROR: could not insert 'ip_tables': Exec format error")
    )
    assert (rf.kind, rf.errno) == (Kind.MODULE_LOAD_REFUSED, Errno.ENOEXEC)
    ignorable = (
        "Failed to load kernel module ip_vs with modprobe. You can ignore this message when "
        "kube-proxy is running inside container without mounting /lib/modules"
    )
    assert modprobe.extract(view(ignorable)) == []


# --- validation -----------------------------------------------------------------------------


def test_validation_messages() -> None:
    (probe,) = validation.extract(
        view(
            "Error connecting to 127.0.0.6:15002: dial tcp 127.0.0.1:0->127.0.0.6:15002: connect: "
            "connection refused"
        )
    )
    assert probe.kind is Kind.VALIDATION_PROBE and probe.name == "127.0.0.6:15002"
    assert kinds(
        validation.extract(view("iptables validation failed; workload is not ready for Istio."))
    ) == [Kind.VALIDATION_FAILED]
    assert kinds(validation.extract(view("validation passed"))) == [Kind.VALIDATION_PASSED]


# --- LSM / audit ----------------------------------------------------------------------------


def test_lsm_records() -> None:
    avc = (
        'type=AVC msg=audit(1.1:2): avc:  denied  { module_request } for pid=1 comm="iptables" '
        'kmod="ipt_owner" scontext=system_u:system_r:container_t:s0 tcontext=system_u:system_r:'
        "kernel_t:s0 tclass=system permissive=0"
    )
    (m,) = lsm.extract(view(avc))
    assert (m.kind, m.name, m.warning) == (Kind.AVC_MODULE, "ipt_owner", False)
    (p,) = lsm.extract(view(avc.replace("permissive=0", "permissive=1")))
    assert p.warning
    other = avc.replace("module_request", "create").replace('kmod="ipt_owner" ', "")
    other = other.replace("tclass=system", "tclass=netlink_netfilter_socket")
    assert kinds(lsm.extract(view(other))) == [Kind.AVC_OTHER]


# --- runtime events -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("Error: exit status 3", "exit status"),
        ("panic: exit status 2", "crash"),
        ("goroutine 58811 [running]:", "crash"),
        ("signal: aborted (core dumped)", "crash"),
        ("aborting firewall configuration", "failure message"),
        ("the frobnicator could not be started", "error words: could not"),
    ],
)
def test_runtime_failures(text: str, detail: str) -> None:
    signals = runtime.extract(view(text), [])
    assert any(s.kind is Kind.FAILURE and s.detail == detail for s in signals), signals


@pytest.mark.parametrize(
    "text",
    [
        "warn failed to setup execution environment, attempting to continue anyways: failed",
        "-A ISTIO_OUTPUT -m conntrack --ctstate INVALID -j DROP",
        "INVALID_DROP=",
        "Try `iptables-restore -h' or 'iptables-restore --help' for more information.",
        "Will ignore port [4190 4191] on chain PROXY_INIT_REDIRECT",
    ],
)
def test_runtime_leaves_data_and_recoveries_alone(text: str) -> None:
    assert [s for s in runtime.extract(view(text), []) if not s.warning] == []


def test_runtime_tool_missing_forms() -> None:
    for text in (
        'exec: "iptables-restore": executable file not found in $PATH',
        "nsenter: failed to execute iptables-nft-save: No such file or directory",
        "iptables: error while loading shared libraries: libip4tc.so.2: cannot open shared object",
    ):
        assert Kind.TOOL_MISSING in kinds(runtime.extract(view(text), [])), text


def test_runtime_excuses_expected_cleanup_noise() -> None:
    v = view(
        "error Command error output: xtables parameter problem: Couldn't load target "
        "`ISTIO_OUTPUT':No such file or directory",
        "ip6tables-legacy -t nat -D PREROUTING -j ISTIO_PRERT",
    )
    specific = libiptc.extract(v)
    assert kinds(specific) == [Kind.CHAIN_MISSING]
    assert runtime.extract(v, specific) == []


# --- context --------------------------------------------------------------------------------


def test_context_backend_and_kernel() -> None:
    sigs = context.extract(
        view("iptables-restore v1.8.7 (nf_tables): x /lib/modules/6.1.0-13-amd64")
    )
    assert {(s.kind, s.backend or s.name) for s in sigs} == {
        (Kind.BACKEND, Backend.NFT),
        (Kind.KERNEL, "6.1.0-13-amd64"),
    }


# --- traces and prefixes never hide a line --------------------------------------------------


@pytest.mark.parametrize(
    ("log", "text", "trace"),
    [
        ("+ iptables -t nat -N ISTIO_REDIRECT", "iptables -t nat -N ISTIO_REDIRECT", True),
        ("2021/08/19 13:19:18 :; iptables -t nat -N X", "iptables -t nat -N X", True),
        ("[#] iptables -A FORWARD -i wg0 -j ACCEPT", "iptables -A FORWARD -i wg0 -j ACCEPT", True),
        ("root@pod-1:~# iptables -L -v", "iptables -L -v", True),
        (
            "2020/10/16 07:38:22 < iptables: No chain/target/match by that name.",
            "iptables: No chain/target/match by that name.",
            False,
        ),
        (
            "2020-08-27 06:42:11 | stderr | Error occurred at line: 1",
            "Error occurred at line: 1",
            False,
        ),
        ("│     /dev/stdin:1:1-2: x", "    /dev/stdin:1:1-2: x", False),
        (
            "E0407 07:08:13.007655       1 network_policy_controller.go:253] Aborting sync.",
            "Aborting sync.",
            False,
        ),
        ("ERRO[0000] Error adding network", "Error adding network", False),
    ],
)
def test_traces_and_prefixes(log: str, text: str, trace: bool) -> None:
    (line,) = read_lines(log + "\n")
    assert (line.text, line.trace) == (text, trace)


def test_a_traced_command_is_never_read_as_a_failure() -> None:
    signals = extract(read_lines("+ iptables -t nat -X FAILED_CHAIN_cannot\n"))
    assert [s for s in signals if s.kind is Kind.FAILURE] == []


@pytest.mark.parametrize("errno", [Errno.EPERM, Errno.EACCES])
def test_a_permission_errno_is_a_permission_signal_with_what_the_line_says(errno: Errno) -> None:
    line = view("iptables: Permission denied (you must be root).")
    signal = permission_denied(
        line, errno, "Permission denied", family=Family.IPV6, backend=Backend.NFT, detail="d"
    )
    assert signal == line.signal(
        Kind.PERMISSION,
        errno=errno,
        errno_text="Permission denied",
        family=Family.IPV6,
        backend=Backend.NFT,
        detail="d",
    )


@pytest.mark.parametrize("errno", [None, Errno.ENOENT, Errno.EOPNOTSUPP, Errno.OTHER])
def test_any_other_errno_is_no_permission_signal(errno: Errno | None) -> None:
    assert (
        permission_denied(view("iptables: No chain/target/match by that name."), errno, "") is None
    )
