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
    # The iptables the mesh's own image ships (its requests under iptables-nft depend on it), and
    # where that was found. None for native nftables profiles.
    iptables_version: str | None = None
    iptables_source: str = ""

    def read(self, file: str) -> str:
        data = resources.files("meshready.knowledge").joinpath("data", "profiles", file)
        return data.read_text(encoding="utf-8")


_IPT = (Backend.LEGACY, Backend.NFT)

# Istio's proxyv2 image (istio-init) and install-cni image (ambient's in-pod rules) are built on
# Istio's base image, docker/Dockerfile.base: `FROM ubuntu:noble` + `apt-get install iptables`
# (github.com/istio/istio, docker/Dockerfile.base at defb9210ba95; pilot/docker/Dockerfile.proxyv2
# uses it as the default "debug" base). Ubuntu 24.04 (noble) ships iptables 1.8.10.
_ISTIO_IPTABLES = "1.8.10"
_ISTIO_SOURCE = (
    "Istio's base image (docker/Dockerfile.base: ubuntu:noble, apt iptables) = Ubuntu 24.04's "
    "iptables 1.8.10"
)

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
            _ISTIO_IPTABLES,
            _ISTIO_SOURCE,
        ),
        Profile(
            "istio-sidecar-tproxy",
            "Istio sidecar with interceptionMode TPROXY, IPv4 and IPv6",
            ("istio-sidecar-tproxy.v4.rules", "istio-sidecar-tproxy.v6.rules"),
            Backend.LEGACY,
            _IPT,
            _ISTIO_IPTABLES,
            _ISTIO_SOURCE,
        ),
        Profile(
            "istio-ambient",
            "Istio ambient: istio-cni in-pod redirection to ztunnel, IPv4 and IPv6",
            ("istio-ambient.v4.rules", "istio-ambient.v6.rules"),
            Backend.LEGACY,
            _IPT,
            _ISTIO_IPTABLES,
            _ISTIO_SOURCE,
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
            # linkerd2-proxy-init's Dockerfile (github.com/linkerd/linkerd2-proxy-init at
            # 183e791d99dc): `FROM alpine:3.24.1`, `apk add iptables-legacy iptables`. Alpine has
            # shipped iptables 1.8.11 since 3.21; the 3.24 package version was not checked here.
            "1.8.11",
            "linkerd2-proxy-init's image (Dockerfile: alpine:3.24.1, apk iptables) = Alpine's "
            "iptables 1.8.11",
        ),
    )
}

DEFAULT_PROFILE = "istio-sidecar"
