"""The inplace mode: the rules proven in this network namespace without disturbing its traffic.

The rules are loaded into chains (iptables) or tables (nft) renamed with a unique prefix and hooked
to nothing (hide.py): the kernel still resolves and validates every table, match, target and
expression at insertion, which proves the modules. A live check adds one REDIRECT hooked first in
nat OUTPUT but scoped to loopback and a port the probe itself holds (and, where the rules use owner
matching, to the probe's own uid), then connects to it. Everything with the prefix is removed at
the end, and stale leftovers of an earlier probe at the start (cleanup.py).
"""

from __future__ import annotations

import os
import secrets

from meshready.actions.probe.cleanup import inplace_cleanup, nft_prefix, xt_prefix
from meshready.actions.probe.connect import check_connections, listen
from meshready.actions.probe.hide import hide_nft, hide_xt
from meshready.actions.probe.result import ModeReport, ProbeFailure
from meshready.actions.probe.rules import RuleText, uses_owner
from meshready.actions.probe.tools import apply_command, run_apply
from meshready.actions.probe_targets import ProbeTarget
from meshready.host.process import CAP_SETUID, effective_capabilities
from meshready.knowledge.requests import Backend
from meshready.rules.load import RuleSyntax


def run_inplace(
    texts: list[RuleText], backend: Backend, target: ProbeTarget, timeout: float
) -> ModeReport:
    token = secrets.token_hex(2)
    out = ModeReport()
    live_kind = RuleSyntax.NFT if backend is Backend.NFTABLES else RuleSyntax.IPTABLES
    kinds = {rt.kind for rt in texts} | {live_kind}
    owner = uses_owner(texts)
    try:
        with inplace_cleanup(backend, kinds, token, out.notes):
            for rt in texts:
                if rt.kind is RuleSyntax.NFT:
                    script, _ = hide_nft(rt.text, nft_prefix(token))
                else:
                    script, _ = hide_xt(rt.text, xt_prefix(token))
                run_apply(apply_command(rt, backend, noflush=True), script, rt.source)
                out.applied.append(rt.source)
            out.steps.append(
                f"loaded {len(texts)} rule file(s) into unhooked chains with {backend.value}"
            )
            redirect_to = listen(0, "127.0.0.1")
            real_dest = listen(0, "127.0.0.1")
            with redirect_to, real_dest:
                lport = redirect_to.getsockname()[1]
                tport = real_dest.getsockname()[1]
                uid = os.geteuid()
                script = _live_rules(backend, token, target, uid, owner, tport, lport)
                live_rt = RuleText("live check", live_kind, script)
                run_apply(apply_command(live_rt, backend, noflush=True), script, "live check")
                out.steps.append(f"live REDIRECT 127.0.0.1:{tport} -> :{lport} (uid {uid})")
                check_target = target
                if target.proxy_uid is not None and not _can_setuid():
                    check_target = ProbeTarget(app_uid=uid, dport=tport)
                    out.notes.append("cannot change uid here: the proxy bypass was not checked")
                check = check_connections(
                    {lport: redirect_to},
                    [("127.0.0.1", tport)],
                    check_target,
                    (None, None),
                    timeout,
                    proxy_dest={tport: real_dest},
                )
            out.record(check)
    except ProbeFailure as exc:
        out.error = str(exc)
    if out.error is None:
        out.error = next((n for n in out.notes if n.startswith("cleanup incomplete")), None)
    return out


def _can_setuid() -> bool:
    if os.geteuid() != 0:
        return False
    caps = effective_capabilities()
    # unreadable (no /proc here): root usually holds CAP_SETUID, so assume it does
    return caps is None or bool(caps & (1 << CAP_SETUID))


def _live_rules(
    backend: Backend,
    token: str,
    target: ProbeTarget,
    uid: int,
    uses_owner: bool,
    tport: int,
    lport: int,
) -> str:
    if backend is Backend.NFTABLES:
        table = f"{nft_prefix(token)}-live"
        scope = f"ip daddr 127.0.0.1 tcp dport {tport}"
        lines = [
            f"add table inet {table}",
            f"add chain inet {table} out {{ type nat hook output priority -150 ; }}",
        ]
        if target.proxy_uid is not None:
            lines.append(f"add rule inet {table} out {scope} meta skuid {target.proxy_uid} return")
        if target.proxy_mark is not None:
            lines.append(
                f"add rule inet {table} out {scope} meta mark & {target.proxy_mark_mask:#x} "
                f"== {target.proxy_mark:#x} return"
            )
        owner = f" meta skuid {uid}" if uses_owner else ""
        lines.append(f"add rule inet {table} out {scope}{owner} redirect to :{lport}")
        return "\n".join(lines) + "\n"
    chain = f"{xt_prefix(token)}_LIVE"
    lines = ["*nat", f":{chain} - [0:0]"]
    if target.proxy_uid is not None:
        lines.append(f"-A {chain} -m owner --uid-owner {target.proxy_uid} -j RETURN")
    if target.proxy_mark is not None:
        lines.append(
            f"-A {chain} -m mark --mark {target.proxy_mark:#x}/{target.proxy_mark_mask:#x} -j RETURN"
        )
    owner = f" -m owner --uid-owner {uid}" if uses_owner else ""
    lines.append(f"-A {chain} -p tcp{owner} -j REDIRECT --to-ports {lport}")
    lines.append(f"-I OUTPUT 1 -o lo -d 127.0.0.1/32 -p tcp -m tcp --dport {tport} -j {chain}")
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"
