"""The probe: apply the rules for real and prove that interception works. The ground truth for ready.

Two modes (docs/fix.md has the design):

``netns`` (root with CAP_SYS_ADMIN, e.g. ``meshready probe`` on a node): a forked child enters a new
network namespace, brings ``lo`` up, makes a veth pair (``mr0`` 192.0.2.1/24, peer ``mr1``) so that
outbound traffic leaves through a real interface as it does in a pod, and applies the rules with
the mesh's backend binary (``iptables-legacy-restore``, ``iptables-nft-restore`` and their ip6
twins, or ``nft -f``). The iptables binaries get ``--modprobe`` pointing nowhere, as in a pod where
modprobe cannot work: only the kernel's own autoload may help, exactly as for the mesh's init
container. It then listens on every port the rules REDIRECT to, connects as an application uid to
192.0.2.2:PORT and reads ``SO_ORIGINAL_DST`` on the accepted socket (redirected), and connects as
the proxy (its uid, or its mark) and checks that no listener gets that connection (bypassed). The
namespace, and with it every rule, disappears with the child; the child's process group is killed
on timeout.

``inplace`` (CAP_NET_ADMIN only, e.g. the agent in its pod): never disturbs the namespace's traffic.
The rules are loaded into chains (iptables) or tables (nft) renamed with a unique prefix and hooked
to nothing: the kernel still resolves and validates every table, match, target and expression at
insertion, which proves the modules. A live check adds one REDIRECT hooked first in nat OUTPUT but
scoped to loopback and a port the probe itself holds (and, where the rules use owner matching, to
the probe's own uid), then connects to it as above. Everything with the prefix is removed at the end
(and stale leftovers of an earlier probe at the start).

Modules: ``rules`` (the rule texts and the ports they name), ``tools`` (the binaries that apply
them), ``connect`` (test connections, SO_ORIGINAL_DST), ``netns`` and ``inplace`` (the two modes;
``hide`` and ``cleanup`` serve inplace), ``result`` (what a probe yields), ``run`` (the entry point).
"""

from meshready.actions.probe.hide import hide_nft, hide_xt
from meshready.actions.probe.result import Mode, ProbeFailure, ProbeResult
from meshready.actions.probe.rules import RuleText, redirect_ports, rule_texts, to_restore
from meshready.actions.probe.run import probe

__all__ = [
    "Mode",
    "ProbeFailure",
    "ProbeResult",
    "RuleText",
    "hide_nft",
    "hide_xt",
    "probe",
    "redirect_ports",
    "rule_texts",
    "to_restore",
]
