"""Profiles: named sets of representative interception rules, one per mesh mode.

The rule files live in ``knowledge/data/profiles`` and are the project's own, written after the shape
of each mesh's rules (sources named in each file's header). They are applied for real in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from meshready.knowledge.requests import Backend


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    files: tuple[str, ...]  # file names under knowledge/data/profiles
    default_backend: Backend
    backends: tuple[Backend, ...]

    def read(self, file: str) -> str:
        data = resources.files("meshready.knowledge").joinpath("data", "profiles", file)
        return data.read_text(encoding="utf-8")


_IPT = (Backend.LEGACY, Backend.NFT)

PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "istio-sidecar",
            "Istio sidecar (istio-init), REDIRECT interception with DNS capture, IPv4 and IPv6",
            ("istio-sidecar.v4.rules", "istio-sidecar.v6.rules"),
            # Istio 1.15-1.21 images force iptables-legacy and the founding case (1.17) is legacy;
            # later versions fall back to nft only when legacy is unusable (istio#57385).
            Backend.LEGACY,
            _IPT,
        ),
        Profile(
            "istio-sidecar-tproxy",
            "Istio sidecar with interceptionMode TPROXY, IPv4 and IPv6",
            ("istio-sidecar-tproxy.v4.rules", "istio-sidecar-tproxy.v6.rules"),
            Backend.LEGACY,
            _IPT,
        ),
        Profile(
            "istio-ambient",
            "Istio ambient: istio-cni in-pod redirection to ztunnel, IPv4 and IPv6",
            ("istio-ambient.v4.rules", "istio-ambient.v6.rules"),
            Backend.LEGACY,
            _IPT,
        ),
        Profile(
            "istio-sidecar-nftables",
            "Istio sidecar in native nftables mode (global.nativeNftables, Istio 1.27+)",
            ("istio-sidecar.nft",),
            Backend.NFTABLES,
            (Backend.NFTABLES,),
        ),
        Profile(
            "istio-ambient-nftables",
            "Istio ambient in native nftables mode (Istio 1.28+)",
            ("istio-ambient.nft",),
            Backend.NFTABLES,
            (Backend.NFTABLES,),
        ),
        Profile(
            "linkerd",
            "Linkerd proxy-init (linkerd-init), IPv4 and IPv6",
            ("linkerd.v4.rules", "linkerd.v6.rules"),
            # The Linkerd Helm chart's default iptables mode became nft (linkerd2#14326).
            Backend.NFT,
            _IPT,
        ),
    )
}

DEFAULT_PROFILE = "istio-sidecar"
