"""The causes ``meshready diagnose`` reports, and the log messages that point to them, as data.

Each cause has a stable code (part of the JSON output and of docs/diagnose.md), a one-line title, what
it means, and where the knowledge comes from. ``MESSAGES`` lists the message families the engine
recognises, each with the program that prints it and the source of that fact; the engine matches the
*meaning* of these messages (table name, extension, errno, ...), not one exact sentence, so the
phrases below are descriptions, not the patterns themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

LEGACY_TABLE_MISSING = "legacy-table-missing"
EXTENSION_MISSING = "extension-missing"
NFTABLES_UNAVAILABLE = "nftables-unavailable"
MODULE_REQUEST_DENIED = "module-request-denied"
PERMISSION_DENIED = "permission-denied"
MODULE_NOT_IN_KERNEL = "module-not-in-kernel"
REDIRECT_NOT_APPLIED = "redirect-not-applied"
RULE_REJECTED = "rule-rejected"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Cause:
    code: str
    title: str
    meaning: str
    # Order among findings of equal confidence: lower comes first (root causes before symptoms).
    rank: int
    sources: tuple[str, ...]


CAUSES: dict[str, Cause] = {
    c.code: c
    for c in (
        Cause(
            MODULE_REQUEST_DENIED,
            "a security module refused to load a kernel module",
            "The kernel asked modprobe for a module on behalf of the container and an LSM (SELinux "
            "on RHEL, Oracle Linux, Fedora CoreOS; kernel lockdown or module signing elsewhere) "
            "denied it, so iptables saw the table, match or target as missing.",
            0,
            (
                "github.com/istio/istio/issues/24101 (AVC module_request kmod=ipt_owner)",
                "github.com/openshift-metal3/dev-scripts/issues/703 (AVC kmod=iptable_filter)",
                "SELinux policy: container_t has no module_request permission on kernel_t",
            ),
        ),
        Cause(
            MODULE_NOT_IN_KERNEL,
            "the module does not exist for the running kernel",
            "modprobe looked in /lib/modules/RELEASE and found no such module: the kernel was built "
            "without it (Talos, COS, AL2023 on 6.18, kernels without IP_NF_IPTABLES_LEGACY), it was "
            "renamed or merged (nf_conntrack_ipv4 -> nf_conntrack in 4.19, nf_nat_ipv4 -> nf_nat in "
            "5.1), or the module tree is not where modprobe looked.",
            1,
            (
                "kmod: 'modprobe: FATAL: Module %s not found in directory %s'",
                "kernel 9fce66583f06 (IP_NF_IPTABLES_LEGACY makes ip_tables optional)",
                "github.com/orbstack/orbstack/issues/493",
            ),
        ),
        Cause(
            LEGACY_TABLE_MISSING,
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
            EXTENSION_MISSING,
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
            NFTABLES_UNAVAILABLE,
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
            PERMISSION_DENIED,
            "the container may not use netfilter",
            "The init container (or CNI plugin) lacks what the kernel requires to change netfilter "
            "rules in its network namespace: CAP_NET_ADMIN (and CAP_NET_RAW for iptables-legacy), "
            "root, or an SELinux label that allows netfilter sockets. Not a module problem.",
            5,
            (
                "iptables: 'Permission denied (you must be root)'",
                "github.com/linkerd/linkerd2/issues/2056, /6254, /7767, /7938",
            ),
        ),
        Cause(
            REDIRECT_NOT_APPLIED,
            "a validation probe saw no redirection",
            "A validation init container (istio-validation, linkerd-network-validator) connected "
            "to a probe address and the connection was not redirected to the proxy port: the "
            "interception rules were never installed in this pod, usually because the CNI plugin "
            "did not run (pod scheduled before the plugin was ready) or failed on the node.",
            6,
            (
                "istio tools/istio-iptables/pkg/validation (Error connecting to 127.0.0.6:15002; "
                "'iptables validation failed; workload is not ready for Istio')",
                "github.com/istio/istio/issues/21266, /48734; github.com/linkerd/linkerd2/issues/11250",
            ),
        ),
        Cause(
            RULE_REJECTED,
            "the kernel rejected a rule without saying why",
            "iptables or nft reported that a rule or COMMIT failed, with an errno or a line number "
            "but no name of what was missing. Common reasons: an extension or expression the "
            "kernel lacks, a rule referring to a chain or position that does not exist, or a "
            "kernel/iptables version mismatch.",
            7,
            (
                "iptables-restore: 'line %d failed'; iptables-nft: 'RULE_APPEND failed (%s)'",
                "github.com/kumahq/kuma/issues/12658; github.com/istio/istio/issues/58135",
            ),
        ),
        Cause(
            UNKNOWN,
            "the init container failed for a reason not recognised",
            "The log shows a failure (non-zero exit, 'aborting firewall configuration', a panic) "
            "but none of the messages meshready knows. The evidence lines are the closest hints.",
            8,
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
    cause: str
    source: str


MESSAGES: tuple[MessageFamily, ...] = (
    MessageFamily(
        "unable-to-initialize-table",
        "iptables-restore / ip6tables-restore (legacy)",
        "the table TABLE could not be opened: ip_tables/ip6_tables or iptable_TABLE is missing",
        LEGACY_TABLE_MISSING,
        "iptables/iptables-restore.c (netfilter.org); istio/istio#23009",
    ),
    MessageFamily(
        "table-does-not-exist",
        "iptables / ip6tables (legacy)",
        "\"can't initialize iptables table `TABLE': Table does not exist (do you need to insmod?)\"",
        LEGACY_TABLE_MISSING,
        "libiptc iptc_strerror ENOENT; istio/istio#10335",
    ),
    MessageFamily(
        "iptables-who",
        "iptables-save / iptables (legacy)",
        "'Cannot initialize: iptables who? (do you need to insmod?)': ip_tables is not loaded",
        LEGACY_TABLE_MISSING,
        "libiptc iptc_strerror",
    ),
    MessageFamily(
        "extension-revision-not-supported",
        "iptables-nft",
        "'Warning: Extension NAME revision N not supported, missing kernel module?' (xt_NAME)",
        EXTENSION_MISSING,
        "iptables/nft.c; telepresenceio/telepresence#3966",
    ),
    MessageFamily(
        "couldnt-load-extension",
        "iptables (legacy and nft)",
        "\"Couldn't load match `NAME'\" / \"Couldn't load target `NAME'\" (a chain name here means "
        "a missing chain instead)",
        EXTENSION_MISSING,
        "libxtables xtables_find_match/xtables_find_target",
    ),
    MessageFamily(
        "rule-set-generation-id",
        "iptables-nft",
        "'Could not fetch rule set generation id: Invalid argument': nf_tables/nfnetlink unusable",
        NFTABLES_UNAVAILABLE,
        "iptables/nft.c mnl_genid_get; linkerd/linkerd2#9053",
    ),
    MessageFamily(
        "table-add-failed",
        "iptables-nft",
        "'TABLE_ADD failed (No such file or directory): table nat': nat chain type missing",
        NFTABLES_UNAVAILABLE,
        "deckhouse/deckhouse#3614",
    ),
    MessageFamily(
        "nft-could-not-process-rule",
        "nft",
        "'Error: Could not process rule: ERRNO' with the rule quoted and the failing part "
        "underlined; the underlined keyword names the expression (redirect -> nft_redir)",
        NFTABLES_UNAVAILABLE,
        "nftables src/mnl.c; istio/istio#58135; pitkley/dfw#90",
    ),
    MessageFamily(
        "avc-module-request",
        "the kernel audit subsystem (SELinux)",
        "'avc: denied { module_request } ... kmod=\"REQUEST\"'",
        MODULE_REQUEST_DENIED,
        "istio/istio#24101",
    ),
    MessageFamily(
        "modprobe-not-found",
        "kmod modprobe",
        "'modprobe: FATAL: Module NAME not found in directory /lib/modules/RELEASE'",
        MODULE_NOT_IN_KERNEL,
        "kmod tools/modprobe.c; orbstack/orbstack#493",
    ),
    MessageFamily(
        "you-must-be-root",
        "iptables (legacy)",
        "'Permission denied (you must be root)': EPERM/EACCES from the kernel",
        PERMISSION_DENIED,
        "libiptc iptc_strerror; linkerd/linkerd2#2056",
    ),
    MessageFamily(
        "validation-failed",
        "istio-validation, linkerd-network-validator",
        "the probe connection was not redirected (Error connecting to 127.0.0.6:15002, "
        "'iptables validation failed', 'Failed to validate networking configuration')",
        REDIRECT_NOT_APPLIED,
        "istio tools/istio-iptables/pkg/validation; linkerd/linkerd2#11250",
    ),
    MessageFamily(
        "rule-append-failed",
        "iptables-nft",
        "'RULE_APPEND failed (ERRNO): rule in chain CHAIN' without a named extension",
        RULE_REJECTED,
        "iptables/nft.c; kumahq/kuma#12658",
    ),
    MessageFamily(
        "restore-line-failed",
        "iptables-restore (legacy)",
        "'iptables-restore: line N failed' (the kernel rejected the table at COMMIT)",
        RULE_REJECTED,
        "iptables/iptables-restore.c",
    ),
)

# Exit statuses of the xtables tools (iptables include/xtables.h, enum xtables_exittype), which
# Istio turns into the prefixes 'xtables other problem', 'xtables parameter problem', ...
XTABLES_EXIT = {
    1: "other problem",
    2: "parameter problem",
    3: "version problem",
    4: "resource problem",
}
