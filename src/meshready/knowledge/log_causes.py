"""The causes ``meshready diagnose`` reports, and the log messages that point to them, as data.

Each cause has a stable code (part of the JSON output and of docs/diagnose.md), a one-line title, what
it means, and where the knowledge comes from. ``MESSAGES`` lists the message families the engine
recognises, each with the program that prints it and the source of that fact; the engine matches the
*meaning* of these messages (table name, extension, errno, ...), not one exact sentence, so the
phrases below are descriptions, not the patterns themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CauseCode(StrEnum):
    """The stable code of a cause: the ``cause`` of a finding in JSON, and docs/diagnose.md."""

    LEGACY_TABLE_MISSING = "legacy-table-missing"
    EXTENSION_MISSING = "extension-missing"
    NFTABLES_UNAVAILABLE = "nftables-unavailable"
    MODULE_REQUEST_DENIED = "module-request-denied"
    PERMISSION_DENIED = "permission-denied"
    MODULE_NOT_IN_KERNEL = "module-not-in-kernel"
    REDIRECT_NOT_APPLIED = "redirect-not-applied"
    RULE_REJECTED = "rule-rejected"
    UNKNOWN = "unknown"
    # Added with issue 11: distinct root causes that deserve their own fix text.
    LSM_DENIED = "lsm-denied"
    IPV6_DISABLED = "ipv6-disabled"
    TOOL_MISSING = "tool-missing"
    FOREIGN_RULES = "foreign-rules"
    LEFTOVER_RULES = "leftover-rules"
    XTABLES_LOCK = "xtables-lock"
    CONTAINER_MODPROBE_FAILED = "container-modprobe-failed"


@dataclass(frozen=True)
class Cause:
    code: CauseCode
    title: str
    meaning: str
    # Order among findings of equal confidence: lower comes first (root causes before symptoms).
    rank: int
    sources: tuple[str, ...]


CAUSES: dict[CauseCode, Cause] = {
    c.code: c
    for c in (
        Cause(
            CauseCode.MODULE_REQUEST_DENIED,
            "a security module refused to load a kernel module",
            "The kernel asked modprobe for a module on behalf of the container and an LSM (SELinux "
            "on RHEL, Oracle Linux, Fedora CoreOS; kernel lockdown or module signing elsewhere) "
            "denied it, so iptables saw the table, match or target as missing, or got EACCES "
            "('Permission denied' without '(you must be root)') on table or extension setup.",
            0,
            (
                "github.com/istio/istio/issues/24101 (AVC module_request kmod=ipt_owner)",
                "github.com/openshift-metal3/dev-scripts/issues/703 (AVC kmod=iptable_filter)",
                "SELinux policy: container_t has no module_request permission on kernel_t",
            ),
        ),
        Cause(
            CauseCode.MODULE_NOT_IN_KERNEL,
            "the module does not exist for the node's kernel",
            "The node's own assessment (the meshready agent's published state, or an offline "
            "`meshready check`) found the module absent: the kernel was built without it (Talos, "
            "COS, AL2023 on 6.18, kernels without IP_NF_IPTABLES_LEGACY) or it was renamed or "
            "merged (nf_conntrack_ipv4 -> nf_conntrack in 4.19, nf_nat_ipv4 -> nf_nat in 5.1). "
            "A modprobe message from inside a container is not such evidence: it describes the "
            "container's module tree.",
            1,
            (
                "kmod: 'modprobe: FATAL: Module %s not found in directory %s'",
                "kernel 9fce66583f06 (IP_NF_IPTABLES_LEGACY makes ip_tables optional)",
                "github.com/orbstack/orbstack/issues/493",
            ),
        ),
        Cause(
            CauseCode.LEGACY_TABLE_MISSING,
            "an iptables-legacy table (or ip_tables itself) is not loaded",
            "iptables-legacy talks to ip_tables/ip6_tables through a socket option. Nothing in the "
            "kernel loads ip_tables: only the iptables binary runs modprobe for it, and inside a pod "
            "that fails (no /lib/modules). Once ip_tables is there the kernel loads iptable_nat and "
            "the others by itself, so a missing core module shows up as 'unable to initialize "
            "table'.",
            2,
            (
                "iptables: iptables-restore 'unable to initialize table', libiptc 'Table does not "
                "exist (do you need to insmod?)'",
                "libxtables xtables_load_ko (only the binary loads ip_tables)",
                "github.com/istio/istio/issues/23009, /44118, /57380; "
                "github.com/awslabs/amazon-eks-ami/issues/2354",
            ),
        ),
        Cause(
            CauseCode.EXTENSION_MISSING,
            "a match or target module is missing",
            "A rule uses an x_tables match or target (owner, REDIRECT, CT, comment, ...) whose "
            "module the kernel could not load. iptables asks the kernel for ipt_NAME; the module "
            "that answers is xt_NAME (the ipt_ names are its aliases).",
            3,
            (
                "iptables-nft: 'Extension %s revision %d not supported, missing kernel module?' "
                "(iptables/nft.c)",
                "iptables-legacy: \"Couldn't load match `%s'\"",
                "github.com/telepresenceio/telepresence/issues/3966; "
                "github.com/istio/istio/issues/57678",
            ),
        ),
        Cause(
            CauseCode.NFTABLES_UNAVAILABLE,
            "nf_tables, or an nft chain type or expression, is missing",
            "The nf_tables backend (iptables-nft or native nft) could not use the kernel: nf_tables "
            "or nfnetlink is absent ('Could not fetch rule set generation id'), a chain type such "
            "as nat (nft_chain_nat) is missing ('TABLE_ADD failed ... table nat'), or an "
            "expression module (nft_redir, nft_ct, nft_tproxy, ...) could not be loaded.",
            4,
            (
                "iptables-nft: 'Could not fetch rule set generation id: Invalid argument' "
                "(github.com/linkerd/linkerd2/issues/9053)",
                "nft: 'Error: Could not process rule: No such file or directory' with the rule "
                "quoted and the failing part underlined",
                "github.com/deckhouse/deckhouse/pull/3614 (TABLE_ADD failed table nat)",
            ),
        ),
        Cause(
            CauseCode.PERMISSION_DENIED,
            "the container may not use netfilter (EPERM: no CAP_NET_ADMIN there)",
            "The kernel answered EPERM: the process has no CAP_NET_ADMIN (CAP_NET_RAW for the raw "
            "socket iptables-legacy opens) in the user namespace that owns the network namespace. "
            "That covers a container without the capabilities or not root, and rootless or "
            "user-namespaced containers whose network namespace belongs to another user namespace. "
            "iptables prints it as 'Permission denied (you must be root)', nft as 'Operation not "
            "permitted'. Not a module problem.",
            6,
            (
                "libiptc iptc_strerror and iptables/nft.c nft_strerror: EPERM -> 'Permission denied "
                "(you must be root)'",
                "kernel net/ipv4/netfilter/ip_tables.c (ns_capable(net->user_ns, CAP_NET_ADMIN)), "
                "net/netfilter/nfnetlink.c nfnetlink_rcv (netlink_net_capable -> -EPERM)",
                "github.com/linkerd/linkerd2/issues/2056, /6254, /7938; "
                "github.com/rootless-containers/slirp4netns/issues/265",
            ),
        ),
        Cause(
            CauseCode.REDIRECT_NOT_APPLIED,
            "a validation probe saw no redirection",
            "A validation init container (istio-validation, linkerd-network-validator) connected "
            "to a probe address and the connection was not redirected to the proxy port: the "
            "interception rules were never installed in this pod, usually because the CNI plugin "
            "did not run (pod scheduled before the plugin was ready) or failed on the node.",
            13,
            (
                "istio tools/istio-iptables/pkg/validation (Error connecting to 127.0.0.6:15002; "
                "'iptables validation failed; workload is not ready for Istio')",
                "github.com/istio/istio/issues/21266, /48734; github.com/linkerd/linkerd2/issues/11250",
            ),
        ),
        Cause(
            CauseCode.RULE_REJECTED,
            "the kernel rejected a rule without saying why",
            "iptables or nft reported that a rule or COMMIT failed, with an errno or a line number "
            "but no name of what was missing. Common reasons: an extension or expression the "
            "kernel lacks, a rule referring to a chain or position that does not exist, or a "
            "kernel/iptables version mismatch.",
            14,
            (
                "iptables-restore: 'line %d failed'; iptables-nft: 'RULE_APPEND failed (%s)'",
                "github.com/kumahq/kuma/issues/12658; github.com/istio/istio/issues/58135",
            ),
        ),
        Cause(
            CauseCode.LSM_DENIED,
            "a security module (SELinux, AppArmor) denied a netfilter operation",
            "The kernel answered EACCES ('Permission denied' without '(you must be root)'): an LSM "
            "refused the operation, not a missing capability. On table or extension setup that is "
            "the module autoload being refused (module-request-denied); elsewhere it is the "
            "container's label or profile that may not use netfilter sockets.",
            7,
            (
                "errno EACCES comes from LSM hooks (security/selinux/hooks.c avc_has_perm), never "
                "from a missing capability (EPERM)",
                "github.com/linkerd/linkerd2/issues/7767 (seLinuxOptions fixed it)",
            ),
        ),
        Cause(
            CauseCode.IPV6_DISABLED,
            "IPv6 is disabled in the node's kernel but the mesh programs ip6tables",
            "ip6tables got EAFNOSUPPORT ('Address family not supported by protocol'): the node "
            "booted with ipv6.disable=1 (or without IPv6), so no AF_INET6 socket can be opened. "
            "Loading modules does not help; the mesh must skip IPv6 or the node must enable it.",
            5,
            (
                "kernel: socket(AF_INET6, ...) fails with EAFNOSUPPORT when IPv6 is disabled",
                "github.com/istio/istio/issues/15895; github.com/cilium/cilium/issues/18513",
            ),
        ),
        Cause(
            CauseCode.TOOL_MISSING,
            "a program or library the mesh runs is missing from its image or the node",
            "The iptables/nft binary (or a shared library or iptables extension library it loads) "
            "is not where the init container, CNI plugin or agent runs it: exit status 127, "
            "'executable file not found', 'error while loading shared libraries'. Not a kernel "
            "problem: install the tool on the node or in the image, or pick the mode whose tool is "
            "there.",
            8,
            (
                "POSIX shells exit 127 for a command not found; Go os/exec 'executable file not "
                "found in $PATH'",
                "github.com/linkerd/linkerd2/issues/14538 (Bottlerocket, no iptables-nft); "
                "github.com/projectcalico/felix/issues/1629",
            ),
        ),
        Cause(
            CauseCode.FOREIGN_RULES,
            "the tables hold rules this iptables cannot read",
            "Another tool wrote rules the mesh's iptables cannot parse: native nft statements in a "
            "table iptables-nft manages ('is incompatible, use 'nft' tool'), a newer iptables, or a "
            "match/target whose userspace library is not in the image ('Can't find library for "
            "match'). The mesh's listing or restore fails before it writes anything.",
            9,
            (
                "iptables/nft.c (table/chain 'is incompatible, use 'nft' tool'); libxtables "
                "xtables_find_match ('Can't find library for match')",
                "github.com/cloudnativelabs/kube-router/issues/1777; "
                "github.com/cilium/cilium/issues/22546",
            ),
        ),
        Cause(
            CauseCode.LEFTOVER_RULES,
            "chains or rules left over from an earlier run",
            "The run creates chains that already exist ('Chain already exists', EEXIST): an "
            "earlier run of the same init container (a restarted pod whose init container runs "
            "again, a removed container image) or another process left them in this network "
            "namespace. The mesh's setup is not idempotent there.",
            10,
            (
                "libiptc/iptables nft_strerror: EEXIST on chain creation -> 'Chain already exists'",
                "github.com/istio/istio/issues/2605, /21030, /40169; "
                "github.com/linkerd/linkerd2/issues/5786",
            ),
        ),
        Cause(
            CauseCode.XTABLES_LOCK,
            "another process held the xtables lock",
            "iptables gave up waiting for /run/xtables.lock ('Another app is currently holding the "
            "xtables lock. Perhaps you want to use the -w option?'): another iptables user on the "
            "node (kube-proxy, a CNI, a firewall daemon) held it. Transient; retry with -w / "
            "--wait, or make the caller wait.",
            11,
            (
                "iptables xshared.c xtables_lock: 'Another app is currently holding the xtables "
                "lock'",
                "github.com/kubernetes/kubernetes/issues/57428; "
                "github.com/cloudnativelabs/kube-router/issues/1057",
            ),
        ),
        Cause(
            CauseCode.CONTAINER_MODPROBE_FAILED,
            "a modprobe inside the container could not load the modules",
            "A modprobe that ran inside a container found no module tree, or no such module in "
            "the tree it saw ('Module X not found in directory /lib/modules/R', 'can't change "
            "directory to '/lib/modules''). That describes the container, not the node: the "
            "modules may well exist on the node. Load them on the node (where modprobe sees the "
            "node's tree), and check there whether they exist.",
            12,
            (
                "kmod tools/modprobe.c; busybox modprobe",
                "github.com/orbstack/orbstack/issues/493; "
                "github.com/rancher-archives/rke/issues/642 (Ubuntu 4.4 ships ip_tables)",
            ),
        ),
        Cause(
            CauseCode.UNKNOWN,
            "the init container failed for a reason not recognised",
            "The log shows a failure (non-zero exit, 'aborting firewall configuration', a panic) "
            "but none of the messages meshready knows. The evidence lines are the closest hints.",
            15,
            ("meshready",),
        ),
    )
}


@dataclass(frozen=True)
class MessageFamily:
    """One kind of log message the engine understands, for documentation and tests."""

    name: str
    printed_by: str
    means: str
    cause: CauseCode
    source: str


MESSAGES: tuple[MessageFamily, ...] = (
    MessageFamily(
        "unable-to-initialize-table",
        "iptables-restore / ip6tables-restore (legacy)",
        "the table TABLE could not be opened: ip_tables/ip6_tables or iptable_TABLE is missing",
        CauseCode.LEGACY_TABLE_MISSING,
        "iptables/iptables-restore.c (netfilter.org); istio/istio#23009",
    ),
    MessageFamily(
        "table-does-not-exist",
        "iptables / ip6tables (legacy)",
        "\"can't initialize iptables table `TABLE': Table does not exist (do you need to insmod?)\"",
        CauseCode.LEGACY_TABLE_MISSING,
        "libiptc iptc_strerror ENOENT; istio/istio#10335",
    ),
    MessageFamily(
        "iptables-who",
        "iptables-save / iptables (legacy)",
        "'Cannot initialize: iptables who? (do you need to insmod?)': ip_tables is not loaded",
        CauseCode.LEGACY_TABLE_MISSING,
        "libiptc iptc_strerror",
    ),
    MessageFamily(
        "extension-revision-not-supported",
        "iptables-nft",
        "'Warning: Extension NAME revision N not supported, missing kernel module?' (xt_NAME)",
        CauseCode.EXTENSION_MISSING,
        "iptables/nft.c; telepresenceio/telepresence#3966",
    ),
    MessageFamily(
        "couldnt-load-extension",
        "iptables (legacy and nft)",
        "\"Couldn't load match `NAME'\" / \"Couldn't load target `NAME'\" (a chain name here means "
        "a missing chain instead)",
        CauseCode.EXTENSION_MISSING,
        "libxtables xtables_find_match/xtables_find_target",
    ),
    MessageFamily(
        "rule-set-generation-id",
        "iptables-nft",
        "'Could not fetch rule set generation id: Invalid argument': nf_tables/nfnetlink unusable",
        CauseCode.NFTABLES_UNAVAILABLE,
        "iptables/nft.c mnl_genid_get; linkerd/linkerd2#9053",
    ),
    MessageFamily(
        "table-add-failed",
        "iptables-nft",
        "'TABLE_ADD failed (No such file or directory): table nat': nat chain type missing",
        CauseCode.NFTABLES_UNAVAILABLE,
        "deckhouse/deckhouse#3614",
    ),
    MessageFamily(
        "nft-could-not-process-rule",
        "nft",
        "'Error: Could not process rule: ERRNO' with the rule quoted and the failing part "
        "underlined; the underlined keyword names the expression (redirect -> nft_redir)",
        CauseCode.NFTABLES_UNAVAILABLE,
        "nftables src/mnl.c; istio/istio#58135; pitkley/dfw#90",
    ),
    MessageFamily(
        "avc-module-request",
        "the kernel audit subsystem (SELinux)",
        "'avc: denied { module_request } ... kmod=\"REQUEST\"'",
        CauseCode.MODULE_REQUEST_DENIED,
        "istio/istio#24101",
    ),
    MessageFamily(
        "modprobe-not-found",
        "kmod modprobe",
        "'modprobe: FATAL: Module NAME not found in directory /lib/modules/RELEASE'",
        CauseCode.MODULE_NOT_IN_KERNEL,
        "kmod tools/modprobe.c; orbstack/orbstack#493",
    ),
    MessageFamily(
        "you-must-be-root",
        "iptables (legacy)",
        "'Permission denied (you must be root)': EPERM/EACCES from the kernel",
        CauseCode.PERMISSION_DENIED,
        "libiptc iptc_strerror; linkerd/linkerd2#2056",
    ),
    MessageFamily(
        "validation-failed",
        "istio-validation, linkerd-network-validator",
        "the probe connection was not redirected (Error connecting to 127.0.0.6:15002, "
        "'iptables validation failed', 'Failed to validate networking configuration')",
        CauseCode.REDIRECT_NOT_APPLIED,
        "istio tools/istio-iptables/pkg/validation; linkerd/linkerd2#11250",
    ),
    MessageFamily(
        "rule-append-failed",
        "iptables-nft",
        "'RULE_APPEND failed (ERRNO): rule in chain CHAIN' without a named extension",
        CauseCode.RULE_REJECTED,
        "iptables/nft.c; kumahq/kuma#12658",
    ),
    MessageFamily(
        "restore-line-failed",
        "iptables-restore (legacy)",
        "'iptables-restore: line N failed' (the kernel rejected the table at COMMIT)",
        CauseCode.RULE_REJECTED,
        "iptables/iptables-restore.c",
    ),
)


class Errno(StrEnum):
    """An errno as a netfilter tool reported it."""

    EPERM = "EPERM"
    EACCES = "EACCES"
    ENOENT = "ENOENT"
    ENOPROTOOPT = "ENOPROTOOPT"
    EINVAL = "EINVAL"
    EPROTONOSUPPORT = "EPROTONOSUPPORT"
    EOPNOTSUPP = "EOPNOTSUPP"
    EAFNOSUPPORT = "EAFNOSUPPORT"
    EEXIST = "EEXIST"
    ENOEXEC = "ENOEXEC"
    EKEYREJECTED = "EKEYREJECTED"
    ENOKEY = "ENOKEY"
    OTHER = "OTHER"


@dataclass(frozen=True)
class ErrnoText:
    """How a tool prints an errno, and what the kernel meant by it (see docs/diagnose.md)."""

    text: str  # lower case, as printed (libiptc's own table first, then strerror)
    errno: Errno
    means: str
    source: str


# Order matters: the longer, more specific wording first ("Permission denied (you must be root)"
# is libiptc's and iptables-nft's text for EPERM; a bare "Permission denied" is strerror(EACCES)).
ERRNO_TEXTS: tuple[ErrnoText, ...] = (
    ErrnoText(
        "permission denied (you must be root)",
        Errno.EPERM,
        "no CAP_NET_ADMIN (CAP_NET_RAW for the legacy raw socket) in the user namespace owning "
        "the network namespace",
        "iptables libiptc/libiptc.c TC_STRERROR and iptables/nft.c nft_strerror: "
        '{ NULL, EPERM, "Permission denied (you must be root)" }',
    ),
    ErrnoText(
        "operation not permitted (you must be root)",
        Errno.EPERM,
        "as EPERM above, printed by nft",
        "nftables src/mnl.c / src/libnftables.c (strerror(EPERM) plus the hint)",
    ),
    ErrnoText(
        "operation not permitted",
        Errno.EPERM,
        "no CAP_NET_ADMIN in the owning user namespace (nfnetlink_rcv: netlink_net_capable)",
        "linux net/netfilter/nfnetlink.c nfnetlink_rcv -> -EPERM; strerror(EPERM)",
    ),
    ErrnoText(
        "iptables who? (do you need to insmod?)",
        Errno.ENOPROTOOPT,
        "the x_tables socket options are not registered: ip_tables (ip6_tables) is not loaded",
        'libiptc TC_STRERROR { NULL, ENOPROTOOPT, "iptables who? (do you need to insmod?)" }; '
        "linux net/netfilter/nf_sockopt.c nf_sockopt() -> -ENOPROTOOPT",
    ),
    ErrnoText(
        "protocol not available",
        Errno.ENOPROTOOPT,
        "as above, printed with strerror",
        "strerror(ENOPROTOOPT); linux net/netfilter/nf_sockopt.c",
    ),
    ErrnoText(
        "table does not exist (do you need to insmod?)",
        Errno.ENOENT,
        "the table module (iptable_nat, ...) is not loaded and could not be autoloaded",
        "libiptc TC_STRERROR { TC_INIT, ENOENT, ... }; linux net/netfilter/x_tables.c "
        "xt_find_table_lock -> -ENOENT",
    ),
    ErrnoText(
        "permission denied",
        Errno.EACCES,
        "an LSM (SELinux, AppArmor) refused: on table/extension setup the module autoload "
        "(security_kernel_module_request) was denied",
        "strerror(EACCES); linux net/netfilter/x_tables.c xt_request_find_table_lock returns "
        "request_module()'s error; security/selinux/hooks.c selinux_kernel_module_request",
    ),
    ErrnoText(
        "address family not supported by protocol",
        Errno.EAFNOSUPPORT,
        "the kernel has no such address family (IPv6 disabled, or no AF_INET6)",
        "strerror(EAFNOSUPPORT)",
    ),
    ErrnoText(
        "protocol not supported",
        Errno.EPROTONOSUPPORT,
        "socket(AF_NETLINK, NETLINK_NETFILTER) failed: nfnetlink is not there",
        "linux net/netlink/af_netlink.c netlink_create -> -EPROTONOSUPPORT",
    ),
    ErrnoText(
        "invalid argument",
        Errno.EINVAL,
        "on the rule-set generation query: the nf_tables nfnetlink subsystem is not there",
        "linux net/netfilter/nfnetlink.c nfnetlink_rcv_msg: no subsystem after request_module "
        "-> -EINVAL; iptables/nft.c mnl_genid_get",
    ),
    ErrnoText(
        "operation not supported",
        Errno.EOPNOTSUPP,
        "the kernel does not support that object or revision (batch to a missing subsystem, "
        "nft_compat revision)",
        "linux net/netfilter/nfnetlink.c nfnetlink_rcv_batch -> -EOPNOTSUPP",
    ),
    ErrnoText(
        "no chain/target/match by that name",
        Errno.ENOENT,
        "a chain, match or target the command names is not there",
        'libiptc TC_STRERROR { NULL, ENOENT, "No chain/target/match by that name" }',
    ),
    ErrnoText("no such file or directory", Errno.ENOENT, "not found", "strerror(ENOENT)"),
    ErrnoText(
        "chain already exists",
        Errno.EEXIST,
        "the chain to create is there already",
        'libiptc TC_STRERROR { TC_CREATE_CHAIN, EEXIST, "Chain already exists" }',
    ),
    ErrnoText("file exists", Errno.EEXIST, "the object is there already", "strerror(EEXIST)"),
    ErrnoText(
        "exec format error",
        Errno.ENOEXEC,
        "a module built for another kernel (a container's own /lib/modules)",
        "strerror(ENOEXEC) from init_module",
    ),
    ErrnoText(
        "key was rejected by service",
        Errno.EKEYREJECTED,
        "module signature rejected (lockdown / enforced signing)",
        "strerror(EKEYREJECTED)",
    ),
    ErrnoText(
        "required key not available",
        Errno.ENOKEY,
        "unsigned module on a kernel enforcing signatures",
        "strerror(ENOKEY)",
    ),
)

# When iptables cannot get a target from the kernel it takes "-j NAME" for a chain jump, and the
# target's own options become unknown: the option names the missing extension (iptables
# libxtables: options are registered by the extension that is loaded).
OPTION_EXTENSIONS: dict[str, tuple[str, str]] = {
    "--to-ports": ("target", "REDIRECT"),
    "--to-port": ("target", "REDIRECT"),
    "--to-destination": ("target", "DNAT"),
    "--to-source": ("target", "SNAT"),
    "--on-port": ("target", "TPROXY"),
    "--on-ip": ("target", "TPROXY"),
    "--tproxy-mark": ("target", "TPROXY"),
    "--set-xmark": ("target", "MARK"),
    "--set-mark": ("target", "MARK"),
    "--save-mark": ("target", "CONNMARK"),
    "--restore-mark": ("target", "CONNMARK"),
    "--zone": ("target", "CT"),
    "--notrack": ("target", "CT"),
    "--uid-owner": ("match", "owner"),
    "--gid-owner": ("match", "owner"),
    "--dports": ("match", "multiport"),
    "--ctstate": ("match", "conntrack"),
    "--dst-type": ("match", "addrtype"),
    "--src-type": ("match", "addrtype"),
    "--comment": ("match", "comment"),
    "--mark": ("match", "mark"),
    "--transparent": ("match", "socket"),
}

# Message families added with issue 11.
_ADDED_MESSAGES: tuple[MessageFamily, ...] = (
    MessageFamily(
        "chain-already-exists",
        "iptables (legacy and nft), iptables-nft-restore (CHAIN_USER_ADD failed (File exists))",
        "the run creates a chain that is already there (EEXIST): left over from a run before",
        CauseCode.LEFTOVER_RULES,
        "libiptc TC_STRERROR EEXIST; istio/istio#21030; cloudnativelabs/kube-router#1256",
    ),
    MessageFamily(
        "xtables-lock",
        "iptables (xshared.c)",
        "'Another app is currently holding the xtables lock. Perhaps you want to use the -w "
        "option?'",
        CauseCode.XTABLES_LOCK,
        "kubernetes/kubernetes#57428",
    ),
    MessageFamily(
        "address-family-not-supported",
        "ip6tables",
        "'Address family not supported by protocol' (EAFNOSUPPORT): IPv6 disabled",
        CauseCode.IPV6_DISABLED,
        "istio/istio#15895; cilium/cilium#18513",
    ),
    MessageFamily(
        "incompatible-use-nft",
        "iptables-nft",
        "\"chain `INPUT' in table `filter' is incompatible, use 'nft' tool\"; \"Can't find library "
        "for match `X'\"",
        CauseCode.FOREIGN_RULES,
        "cloudnativelabs/kube-router#1777; cilium/cilium#22546",
    ),
    MessageFamily(
        "executable-not-found",
        "shells, Go os/exec, nsenter, the dynamic loader",
        "exit status 127, 'executable file not found in $PATH', 'failed to execute X: No such "
        "file or directory', 'error while loading shared libraries'",
        CauseCode.TOOL_MISSING,
        "linkerd/linkerd2#14538; projectcalico/felix#1629",
    ),
    MessageFamily(
        "unknown-option",
        "iptables-restore (legacy)",
        "'unknown option \"--to-ports\"': the target that owns the option is not in the kernel "
        "(REDIRECT)",
        CauseCode.EXTENSION_MISSING,
        "kumahq/kuma#5137",
    ),
    MessageFamily(
        "chain-does-not-exist",
        "iptables-nft",
        "\"Chain 'MASQUERADE' does not exist\": a target iptables-nft could not get from the "
        "kernel is taken for a chain",
        CauseCode.EXTENSION_MISSING,
        "microsoft/WSL#9844",
    ),
    MessageFamily(
        "container-modprobe",
        "kmod / busybox modprobe inside a container",
        "'Module X not found in directory /lib/modules/R', \"can't change directory to "
        "'/lib/modules'\": the container's module tree, not the node's",
        CauseCode.CONTAINER_MODPROBE_FAILED,
        "orbstack/orbstack#493; rancher-archives/rke#642",
    ),
)
MESSAGES = (*MESSAGES, *_ADDED_MESSAGES)
