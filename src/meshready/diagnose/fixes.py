"""Fix text for each cause: commands, the modules-load.d file, the meshready route, notes."""

from __future__ import annotations

from meshready.diagnose.model import Fix
from meshready.knowledge.modules import module_symbol

CONF_PATH = "/etc/modules-load.d/meshready.conf"

_SELINUX_MODULE_NOTE = (
    "SELinux is involved: the container's domain (container_t) may not ask the kernel to load "
    "modules. Loading them on the node removes the need to ask. If modules must be loaded on "
    "demand, add a local policy module on the node (for example `ausearch -m avc -ts recent | "
    "audit2allow -M meshready-modreq && semodule -i meshready-modreq.pp`), knowing it lets every "
    "container request module loads; do not switch SELinux to permissive."
)
_SELINUX_NETFILTER_NOTE = (
    "SELinux is involved: on RHEL, Oracle Linux, Fedora CoreOS and OpenShift a container_t process "
    "may be denied netfilter sockets even with NET_ADMIN. Give the init container an SELinux type "
    "that may (securityContext.seLinuxOptions.type: spc_t), or use the mesh's CNI plugin "
    "(istio-cni, linkerd-cni, kuma-cni), which programs the rules from the node."
)
_PLATFORM_NOTE = (
    "Where a node image has no modules-load.d (or it is reset on boot): Talos "
    "`machine.kernel.modules: [{name: ...}]`; Bottlerocket `settings.kernel.modules.<name>.allowed` "
    "and `.autoload`; OKE, EKS and others: add the modprobe line to the node pool's cloud-init / "
    "user data, or run the meshready agent DaemonSet."
)


def load_modules(
    modules: tuple[str, ...],
    backend: str | None,
    profile: str | None,
    selinux: bool,
    extra_notes: tuple[str, ...] = (),
) -> Fix:
    """Load and persist ``modules`` on the node, and the meshready way of doing the same."""
    mods = " ".join(modules)
    check = "meshready check"
    if profile:
        check += f" --profile {profile}"
    if backend:
        check += f" --backend {backend}"
    notes = list(extra_notes)
    if selinux:
        notes.append(_SELINUX_MODULE_NOTE)
    notes.append(_PLATFORM_NOTE)
    return Fix(
        commands=(
            f"sudo modprobe -a {mods}",
            f"printf '%s\\n' {mods} | sudo tee {CONF_PATH}",
            "kubectl delete pod <the failing pod>  # its init container runs again",
        )
        if modules
        else (),
        modules_load_conf="".join(f"{m}\n" for m in modules) if modules else None,
        meshready=(
            f"{check}   # on the node: which of these are loaded, built in, loadable or absent",
            "meshready fix     # on the node: load what is missing and persist it",
            "meshready install # or: the agent DaemonSet does this on every node",
        ),
        notes=tuple(notes),
    )


def not_in_kernel(modules: tuple[str, ...], release: str | None, renamed: tuple[str, ...]) -> Fix:
    symbols = [f"{m} ({module_symbol(m)})" if module_symbol(m) else m for m in modules]
    where = f"/lib/modules/{release}" if release else "/lib/modules/$(uname -r)"
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
    return Fix(
        commands=(
            f"grep -E '/({'|'.join(modules)})\\.ko' {where}/modules.builtin  # built in?",
            "modinfo " + " ".join(modules) + "  # on the node, outside any container",
        ),
        modules_load_conf=None,
        meshready=(
            "meshready check   # on the node: tells built in from absent and names the Kconfig "
            "symbol",
        ),
        notes=tuple(notes),
    )


def permission(selinux: bool, must_be_root: bool, nft: bool) -> Fix:
    notes = [
        "Give the init container the capabilities netfilter needs: securityContext.capabilities.add "
        "[NET_ADMIN, NET_RAW] (NET_ADMIN alone for nft), running as root (runAsUser: 0, "
        "runAsNonRoot: false); a pod security policy or admission rule may be dropping them "
        "(NET_RAW is often dropped by default).",
        "If the namespace's Pod Security level forbids NET_ADMIN, use the mesh's CNI plugin "
        "instead of the init container.",
    ]
    if must_be_root and not selinux:
        notes.insert(0, "iptables says 'you must be root': the kernel answered EPERM/EACCES.")
    if selinux:
        notes.append(_SELINUX_NETFILTER_NOTE)
    else:
        notes.append(
            "On SELinux hosts (RHEL, Oracle Linux, Fedora CoreOS, OpenShift) look for AVC denials "
            "on the node (`ausearch -m avc -ts recent`). If there are, capabilities will not help: "
            "give the init container securityContext.seLinuxOptions.type: spc_t, or use the mesh's "
            "CNI plugin."
        )
    _ = nft
    return Fix(
        commands=(
            "kubectl get pod <pod> -o jsonpath='{.spec.initContainers[*].securityContext}'",
            "ausearch -m avc -ts recent  # on the node, if SELinux is enforcing",
        ),
        meshready=("meshready diagnose <log of the same container after the change>",),
        notes=tuple(notes),
    )


def redirect(container: str | None) -> Fix:
    return Fix(
        commands=(
            "kubectl -n istio-system logs ds/istio-cni-node --since=1h  # Istio CNI; "
            "or linkerd-cni / kuma-cni",
            "kubectl delete pod <the failing pod>  # once the CNI plugin is ready on its node",
        ),
        meshready=(
            "meshready diagnose <the CNI plugin's log>  # why it could not apply the rules",
            "meshready check --profile istio-sidecar  # on the node: the CNI plugin needs the same "
            "modules",
        ),
        notes=(
            "The validation container only checks that redirection works; the rules are written "
            "by the CNI plugin on the node. Make sure its DaemonSet runs on that node and that "
            "the node was ready (taint cni.istio.io/not-ready, cni.repair) before the pod was "
            "scheduled.",
            *(() if container is None else (f"container: {container}",)),
        ),
    )


def nftables(modules: tuple[str, ...], backend: str | None, profile: str | None) -> Fix:
    base = load_modules(modules, backend, profile, selinux=False)
    notes = (
        "If the kernel has no nf_tables at all (very old or minimal kernels), switch the mesh to "
        "iptables-legacy instead (Linkerd: proxyInit.iptablesMode=legacy; Istio: "
        "FORCE_IPTABLES_BINARY=legacy, nativeNftables=false).",
        *base.notes,
    )
    return Fix(base.commands, base.modules_load_conf, base.meshready, notes)


def rule_rejected(rule: str | None, candidates: tuple[str, ...]) -> Fix:
    notes = [
        "The kernel log says why a rule was refused: run `dmesg | tail -n 50` on the node right "
        "after the failure (x_tables prints e.g. 'xt_owner: ...' or 'nf_tables: ...').",
    ]
    if rule:
        notes.append(f"The rule at the failing line: {rule}")
    if candidates:
        notes.append(
            "Modules this rule would need (load them if missing): " + ", ".join(candidates) + "."
        )
    return Fix(
        commands=("dmesg | tail -n 50  # on the node",),
        modules_load_conf="".join(f"{m}\n" for m in candidates) if candidates else None,
        meshready=("meshready check --rules <the rules file>   # on the node",),
        notes=tuple(notes),
    )


def unknown() -> Fix:
    return Fix(
        commands=("dmesg | tail -n 50  # on the node",),
        meshready=("meshready check   # on the node: are the modules the mesh needs there?",),
        notes=(
            "meshready did not recognise this failure. The evidence lines are the closest hints; "
            "please report the log so the catalogue can learn it.",
        ),
    )
