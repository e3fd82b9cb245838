"""Fix text for each cause, as structured data: ``Command`` steps (one logical POSIX shell command
each, no comments, prose in ``purpose``), the modules-load.d content, the meshready route, notes.

Commands are paste-safe by construction: long module lists continue with ``\\`` at word
boundaries, file contents go through a quoted heredoc, placeholders are shell variables the
command lists in ``needs`` (never ``<angle brackets>``, which a shell reads as redirections), and
every value that comes from a log (module names) is checked against a strict pattern first.
"""

from __future__ import annotations

import re

from meshready.actions.persist import PERSIST_PATH
from meshready.diagnose.model import Command, Fix, Where
from meshready.knowledge.modules import module_symbol
from meshready.knowledge.requests import Backend

_WIDTH = 72
_MODULE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_PROFILE = re.compile(r"^[a-z0-9-]{1,40}$")

_SELINUX_MODULE_NOTE = (
    "SELinux is involved: the container's domain (container_t) may not ask the kernel to load "
    "modules. Loading them on the node removes the need to ask. If modules must be loaded on "
    "demand, add a local policy module on the node (ausearch -m avc -ts recent | audit2allow -M "
    "meshready-modreq, then semodule -i meshready-modreq.pp), knowing it lets every container "
    "request module loads; do not switch SELinux to permissive."
)
_SELINUX_NETFILTER_NOTE = (
    "SELinux is involved: on RHEL, Oracle Linux, Fedora CoreOS and OpenShift a container_t process "
    "may be denied netfilter sockets even with NET_ADMIN. Give the init container an SELinux type "
    "that may (securityContext.seLinuxOptions.type: spc_t), or use the mesh's CNI plugin "
    "(istio-cni, linkerd-cni, kuma-cni), which programs the rules from the node."
)
_PLATFORM_NOTE = (
    "Where a node image has no modules-load.d (or it is reset on boot): Talos "
    "machine.kernel.modules: [{name: ...}]; Bottlerocket settings.kernel.modules.<name>.allowed "
    "and .autoload; OKE, EKS and others: add the modprobe line to the node pool's cloud-init / "
    "user data, or run the meshready agent DaemonSet."
)


def safe_modules(modules: tuple[str, ...]) -> tuple[str, ...]:
    """Only real module names reach a command (they come from logs)."""
    return tuple(m for m in modules if _MODULE.match(m))


def wrapped(words: list[str], width: int = _WIDTH) -> str:
    """``words`` joined by spaces, continued with `` \\`` + newline + 4 spaces before ``width``.
    Breaks fall only between words, so the shell reads exactly the same command."""
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = f"{current} {word}" if current else word
        if current and len(candidate) > width - 2:
            lines.append(current)
            current = "    " + word
        else:
            current = candidate
    lines.append(current)
    return " \\\n".join(lines)


def _modprobe(mods: tuple[str, ...]) -> Command:
    return Command(
        wrapped(["sudo", "modprobe", "-a", *mods]),
        Where.NODE,
        "load the modules now",
    )


def _persist(mods: tuple[str, ...]) -> Command:
    body = "".join(f"{m}\n" for m in mods)
    return Command(
        f"sudo tee {PERSIST_PATH} >/dev/null <<'EOF'\n{body}EOF",
        Where.NODE,
        f"load them at every boot ({PERSIST_PATH}; replaces an earlier meshready.conf)",
    )


_DELETE_POD = Command(
    'kubectl delete pod --namespace "$NAMESPACE" "$POD"',
    Where.CLUSTER,
    "recreate the failing pod so its init container runs again",
    ("NAMESPACE", "POD"),
)


def _check(profile: str | None, backend: Backend | None) -> Command:
    words = ["meshready", "check"]
    if profile and _PROFILE.match(profile):
        words += ["--profile", profile]
    if backend is not None:
        words += ["--backend", backend.value]
    return Command(
        " ".join(words),
        Where.NODE,
        "which of the modules are loaded, built in, loadable or absent on this node",
    )


_MESHREADY_FIX = Command("meshready fix", Where.NODE, "load what is missing and persist it")
_MESHREADY_INSTALL = Command(
    "meshready install", Where.CLUSTER, "or let the agent DaemonSet do it on every node"
)


def load_modules(
    modules: tuple[str, ...],
    backend: Backend | None,
    profile: str | None,
    selinux: bool,
    extra_notes: tuple[str, ...] = (),
) -> Fix:
    """Load and persist ``modules`` on the node, and the meshready way of doing the same."""
    mods = safe_modules(modules)
    notes = list(extra_notes)
    if selinux:
        notes.append(_SELINUX_MODULE_NOTE)
    notes.append(_PLATFORM_NOTE)
    return Fix(
        steps=(_modprobe(mods), _persist(mods), _DELETE_POD) if mods else (),
        modules_load_conf="".join(f"{m}\n" for m in mods) if mods else None,
        meshready_steps=(_check(profile, backend), _MESHREADY_FIX, _MESHREADY_INSTALL),
        notes=tuple(notes),
    )


def not_in_kernel(modules: tuple[str, ...], renamed: tuple[str, ...]) -> Fix:
    mods = safe_modules(modules)
    symbols = [f"{m} ({module_symbol(m)})" if module_symbol(m) else m for m in mods]
    notes = [
        "The module cannot be loaded because this kernel does not ship it. Use a node image whose "
        "kernel has it (as a module or built in): " + ", ".join(symbols) + ".",
        "If the legacy core (ip_tables / ip6_tables) is what is absent, the kernel may have been "
        "built without IP_NF_IPTABLES_LEGACY: switch the mesh to iptables-nft or native nftables "
        "(Istio: FORCE_IPTABLES_BINARY=nft on 1.28+, or values.global.nativeNftables=true; "
        "Linkerd: proxyInit.iptablesMode=nft) instead of trying to load it.",
    ]
    if renamed:
        notes.append(
            "Some names are old: " + ", ".join(renamed) + ". They were merged into other modules "
            "and are not needed on this kernel; drop them from module lists."
        )
    steps: list[Command] = []
    if mods:
        steps.append(
            Command(
                wrapped(["modinfo", *mods]),
                Where.NODE,
                "confirm on the node, outside any container, that the modules are not there",
            )
        )
        pattern = "|".join(mods)
        steps.append(
            Command(
                f"grep -E '/({pattern})\\.ko' \"/lib/modules/$(uname -r)/modules.builtin\"",
                Where.NODE,
                "built into the kernel? (then nothing needs loading)",
            )
        )
    return Fix(
        steps=tuple(steps),
        meshready_steps=(
            Command(
                "meshready check",
                Where.NODE,
                "tells built in from absent and names the Kconfig symbol",
            ),
        ),
        notes=tuple(notes),
    )


def container_modprobe(
    modules: tuple[str, ...], backend: Backend | None, profile: str | None
) -> Fix:
    base = load_modules(modules, backend, profile, selinux=False)
    notes = (
        "The modprobe that failed ran inside a container, against the container's module tree. "
        "Run the commands on the node itself; if modprobe fails there too, the node's kernel "
        "lacks the module (meshready check names the Kconfig symbol).",
        *base.notes,
    )
    return Fix(base.steps, base.modules_load_conf, base.meshready_steps, notes)


def permission(selinux: bool, must_be_root: bool) -> Fix:
    notes = [
        "The kernel answered EPERM: no CAP_NET_ADMIN (and CAP_NET_RAW for iptables-legacy) in the "
        "user namespace that owns the pod's network namespace. Give the init container "
        "securityContext.capabilities.add [NET_ADMIN, NET_RAW] (NET_ADMIN alone for nft), "
        "running as root (runAsUser: 0, runAsNonRoot: false); a pod security policy or admission "
        "rule may be dropping them (NET_RAW is often dropped by default).",
        "Rootless or user-namespaced containers (rootless Docker/Podman, hostUsers: false, "
        "nsenter without the owning user namespace) hold capabilities only in their own user "
        "namespace: the network namespace must be one that namespace owns, or the rules must be "
        "written from the node (the mesh's CNI plugin).",
        "If the namespace's Pod Security level forbids NET_ADMIN, use the mesh's CNI plugin "
        "instead of the init container.",
    ]
    if must_be_root and not selinux:
        notes.insert(0, "'(you must be root)' is how iptables prints EPERM.")
    if selinux:
        notes.append(_SELINUX_NETFILTER_NOTE)
    return Fix(
        steps=(
            Command(
                wrapped(
                    [
                        "kubectl",
                        "get",
                        "pod",
                        "--namespace",
                        '"$NAMESPACE"',
                        '"$POD"',
                        "-o",
                        "jsonpath='{.spec.initContainers[*].securityContext}'",
                    ]
                ),
                Where.CLUSTER,
                "see the capabilities and user the init container really gets",
                ("NAMESPACE", "POD"),
            ),
        ),
        meshready_steps=(
            Command(
                'meshready diagnose "$LOG"',
                Where.CLUSTER,
                "run again on the log of the same container after the change",
                ("LOG",),
            ),
        ),
        notes=tuple(notes),
    )


def lsm(selinux: bool) -> Fix:
    notes = [
        "EACCES comes from a security module, not from missing capabilities: adding NET_ADMIN "
        "will not help.",
        _SELINUX_NETFILTER_NOTE
        if selinux
        else "AppArmor: run the init container unconfined for this "
        "(securityContext.appArmorProfile.type: Unconfined) or allow netfilter in its profile; "
        "SELinux: see below.",
    ]
    if not selinux:
        notes.append(_SELINUX_NETFILTER_NOTE)
    return Fix(
        steps=(
            Command(
                "sudo ausearch -m avc -ts recent",
                Where.NODE,
                "SELinux denials right after the failure (RHEL, Oracle Linux, Fedora CoreOS)",
            ),
            Command(
                "sudo dmesg | grep -i apparmor | tail -n 20",
                Where.NODE,
                "AppArmor denials (Ubuntu, Debian)",
            ),
        ),
        notes=tuple(notes),
    )


def ipv6_disabled() -> Fix:
    notes = [
        "The node's kernel runs without IPv6 (ipv6.disable=1 on the kernel command line), so "
        "ip6tables cannot work at all; loading modules does not change that.",
        "Either stop the mesh from programming IPv6 (Istio: values.pilot.env / "
        "ISTIO_DUAL_STACK off and no IPv6 pod CIDR; Cilium: --enable-ipv6=false; Linkerd: "
        "proxyInit.ipv6 / disableIPv6), or boot the node with IPv6 enabled.",
    ]
    return Fix(
        steps=(
            Command(
                "cat /proc/cmdline /proc/sys/net/ipv6/conf/all/disable_ipv6",
                Where.NODE,
                "is IPv6 disabled on the kernel command line or by sysctl?",
            ),
        ),
        notes=tuple(notes),
    )


def tool_missing(tools: tuple[str, ...]) -> Fix:
    named = ", ".join(tools) if tools else "the program it ran"
    return Fix(
        steps=(
            Command(
                "command -v iptables iptables-legacy iptables-nft nft ip6tables",
                Where.NODE,
                "which netfilter tools exist where the failing process runs (node for CNI "
                "plugins; exec into the image for init containers)",
            ),
        ),
        notes=(
            f"{named} is missing where it ran. Not a kernel problem: install it there (node "
            "package, or the mesh's image version that ships it), or switch the mesh to the "
            "iptables mode whose binary exists (Linkerd: proxyInit.iptablesMode=legacy|nft; "
            "Istio: FORCE_IPTABLES_BINARY).",
            "Bottlerocket and other minimal node images ship one iptables variant only; a CNI "
            "plugin that nsenters into the host must use that one.",
        ),
    )


def foreign_rules() -> Fix:
    return Fix(
        steps=(
            Command(
                "sudo nft list ruleset",
                Where.NODE,
                "find the rules the mesh's iptables cannot read and who added them",
            ),
            Command(
                "sudo iptables-save",
                Where.NODE,
                "compare with what iptables itself can list",
            ),
        ),
        notes=(
            "Another tool wrote rules into a table the mesh's iptables manages: native nft "
            "statements iptables-nft cannot translate, a newer iptables, or a match/target whose "
            "library this image lacks. Move those rules into a table of their own (nft tables "
            "other than ip filter/nat/mangle/raw), remove them, or use an image whose iptables "
            "is at least as new as the node's.",
        ),
    )


def leftover_rules(container: str | None) -> Fix:
    notes = [
        "The chains the run creates already exist: an earlier run of the same init container in "
        "the same pod (the pod's sandbox survived while its containers were removed, e.g. "
        "by image garbage collection or `crictl rm`), or another process. A new pod starts "
        "with a clean network namespace.",
        "Newer mesh versions clean up or reuse their own chains (Linkerd proxy-init 2.x, Istio "
        "1.22+ reconciles); upgrade if this keeps happening.",
    ]
    if container:
        notes.append(f"container: {container}")
    return Fix(steps=(_DELETE_POD,), notes=tuple(notes))


def xtables_lock() -> Fix:
    return Fix(
        steps=(
            Command(
                "sudo fuser -v /run/xtables.lock",
                Where.NODE,
                "which process holds the lock right now",
            ),
        ),
        notes=(
            "Another iptables user on the node held /run/xtables.lock and iptables gave up. "
            "Transient: the next attempt usually succeeds. Callers should wait for the lock "
            "(iptables -w / --wait, iptables-restore -w); containers must share the node's "
            "/run/xtables.lock (hostPath) for the lock to mean anything.",
        ),
    )


def redirect(container: str | None) -> Fix:
    return Fix(
        steps=(
            Command(
                "kubectl --namespace istio-system logs ds/istio-cni-node --since=1h",
                Where.CLUSTER,
                "the CNI plugin's log on that node (Istio; for Linkerd and Kuma read linkerd-cni "
                "or kuma-cni the same way)",
            ),
            Command(
                'kubectl delete pod --namespace "$NAMESPACE" "$POD"',
                Where.CLUSTER,
                "recreate the pod once the CNI plugin is ready on its node",
                ("NAMESPACE", "POD"),
            ),
        ),
        meshready_steps=(
            Command(
                'meshready diagnose "$LOG"',
                Where.CLUSTER,
                "why the CNI plugin could not apply the rules (its log saved in LOG)",
                ("LOG",),
            ),
            Command(
                "meshready check --profile istio-sidecar",
                Where.NODE,
                "the CNI plugin needs the same modules",
            ),
        ),
        notes=(
            "The validation container only checks that redirection works; the rules are written "
            "by the CNI plugin on the node. Make sure its DaemonSet runs on that node and that "
            "the node was ready (taint cni.istio.io/not-ready, cni.repair) before the pod was "
            "scheduled.",
            *(() if container is None else (f"container: {container}",)),
        ),
    )


def nftables(modules: tuple[str, ...], backend: Backend | None, profile: str | None) -> Fix:
    base = load_modules(modules, backend, profile, selinux=False)
    notes = (
        "If the kernel has no nf_tables at all (very old or minimal kernels, some NAS and WSL "
        "kernels), switch the tool to iptables-legacy instead (Linkerd: "
        "proxyInit.iptablesMode=legacy; Istio: FORCE_IPTABLES_BINARY=legacy, "
        "nativeNftables=false; containers: the image's iptables-legacy alternative).",
        *base.notes,
    )
    return Fix(base.steps, base.modules_load_conf, base.meshready_steps, notes)


def rule_rejected(rule: str | None, candidates: tuple[str, ...]) -> Fix:
    mods = safe_modules(candidates)
    notes = [
        "The kernel log says why a rule was refused: read it on the node right after the "
        "failure (x_tables prints e.g. 'xt_owner: ...' or 'nf_tables: ...').",
    ]
    if rule:
        notes.append(f"The rule at the failing line: {rule}")
    if mods:
        notes.append(
            "Modules this rule would need (load them if missing): " + ", ".join(mods) + "."
        )
    return Fix(
        steps=(
            Command("sudo dmesg | tail -n 50", Where.NODE, "the kernel's reason"),
            *((_modprobe(mods),) if mods else ()),
        ),
        modules_load_conf="".join(f"{m}\n" for m in mods) if mods else None,
        meshready_steps=(
            Command(
                'meshready check --rules "$RULES"',
                Where.NODE,
                "which modules the rules file (saved in RULES) needs and which are missing",
                ("RULES",),
            ),
        ),
        notes=tuple(notes),
    )


def unknown() -> Fix:
    return Fix(
        steps=(
            Command("sudo dmesg | tail -n 50", Where.NODE, "kernel messages from the failure"),
            Command(
                'kubectl describe pod --namespace "$NAMESPACE" "$POD"',
                Where.CLUSTER,
                "the container's exit code, reason and events",
                ("NAMESPACE", "POD"),
            ),
        ),
        meshready_steps=(
            Command("meshready check", Where.NODE, "are the modules the mesh needs there?"),
        ),
        notes=(
            "meshready did not recognise this failure. The evidence lines are the closest hints: "
            "run the failing command by hand in the same container or node to see its full "
            "error, and please report the log so the catalogue can learn it.",
        ),
    )
