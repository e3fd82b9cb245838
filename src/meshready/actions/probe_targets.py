"""Who the proxy is, per profile: the identity whose traffic the rules must let through.

Istio's sidecar runs Envoy as uid/gid 1337 (istio-iptables ``--proxy-uid``/``--proxy-gid``); Linkerd's
proxy runs as uid 2102 (proxy-init ``--proxy-uid``); Istio ambient's ztunnel marks its own packets
with 0x3 in the mask 0xfff (istio-cni ``default.golden``: ``-m mark ! --mark 0x3/0xfff``).

For ``--rules`` files without a profile, the identity is read from the rules themselves (the first
``--uid-owner N ... -j RETURN`` or ``skuid N ... return``), or given explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ProbeTarget:
    proxy_uid: int | None = None  # connections from this uid must not be redirected
    proxy_gid: int | None = None
    proxy_mark: int | None = None  # ... or connections carrying this SO_MARK
    proxy_mark_mask: int = 0xFFFFFFFF
    app_uid: int = 4242  # a uid that is neither root nor the proxy: its traffic must be redirected
    app_gid: int = 4242
    dport: int = 8080  # the outbound port the app connects to (one the rules capture)

    @property
    def has_proxy(self) -> bool:
        return self.proxy_uid is not None or self.proxy_mark is not None

    def describe_proxy(self) -> str:
        if self.proxy_uid is not None:
            return f"uid {self.proxy_uid}"
        if self.proxy_mark is not None:
            return f"mark {self.proxy_mark:#x}/{self.proxy_mark_mask:#x}"
        return "none"


_ISTIO = ProbeTarget(proxy_uid=1337, proxy_gid=1337)
_AMBIENT = ProbeTarget(proxy_mark=0x3, proxy_mark_mask=0xFFF)

PROBE_TARGETS: dict[str, ProbeTarget] = {
    "istio-sidecar": _ISTIO,
    "istio-sidecar-tproxy": _ISTIO,
    "istio-sidecar-nftables": _ISTIO,
    "istio-ambient": _AMBIENT,
    "istio-ambient-nftables": _AMBIENT,
    "linkerd": ProbeTarget(proxy_uid=2102, proxy_gid=2102),
}

_XT_UID_RETURN = re.compile(r"(?<!! )--uid-owner\s+(\d+)\b[^\n]*-j\s+RETURN")
_NFT_UID_RETURN = re.compile(r"(?<!!= )skuid\s+(\d+)\b[^\n]*\breturn\b")
_CANDIDATE_PORTS = (8080, 80, 9080, 18080, 28080, 38080)


def derive_target(texts: Iterable[str]) -> ProbeTarget:
    """A target for rules without a profile: the proxy uid from their RETURN rules, a free port."""
    all_text = "\n".join(texts)
    uid = None
    for line in all_text.splitlines():
        match = _XT_UID_RETURN.search(line) or _NFT_UID_RETURN.search(line)
        if match:
            uid = int(match.group(1))
            break
    port = next(p for p in (*_CANDIDATE_PORTS, 48080) if not re.search(rf"\b{p}\b", all_text))
    app = 4242 if uid != 4242 else 4343
    return ProbeTarget(proxy_uid=uid, proxy_gid=uid, app_uid=app, app_gid=app, dport=port)


def target_for(
    profile: str | None, texts: Iterable[str], proxy_uid: int | None = None
) -> ProbeTarget:
    target = PROBE_TARGETS.get(profile or "") or derive_target(texts)
    if proxy_uid is not None:
        target = replace(target, proxy_uid=proxy_uid, proxy_gid=proxy_uid, proxy_mark=None)
    return target
