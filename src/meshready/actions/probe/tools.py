"""The netfilter binaries a probe runs, and how it runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from meshready.actions.probe.result import ProbeFailure
from meshready.actions.probe.rules import RuleText
from meshready.knowledge.requests import Backend
from meshready.rules.load import RuleSyntax

# modprobe pointing nowhere, as in a pod where modprobe cannot work: only the kernel's own
# autoload may help, exactly as for the mesh's init container
NO_MODPROBE = "/nonexistent/meshready-probe-no-modprobe"
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
XT_BINARIES: dict[tuple[Backend, RuleSyntax], tuple[str, str]] = {
    (Backend.LEGACY, RuleSyntax.IPTABLES): ("iptables-legacy-restore", "iptables-legacy-save"),
    (Backend.LEGACY, RuleSyntax.IP6TABLES): ("ip6tables-legacy-restore", "ip6tables-legacy-save"),
    (Backend.NFT, RuleSyntax.IPTABLES): ("iptables-nft-restore", "iptables-nft-save"),
    (Backend.NFT, RuleSyntax.IP6TABLES): ("ip6tables-nft-restore", "ip6tables-nft-save"),
}


def find_binary(name: str) -> str:
    found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:{SBIN_PATH}")
    if found is not None:
        return found
    # Some systems ship only iptables-restore; accept it when it is the variant asked for.
    if name.endswith(("-legacy-restore", "-nft-restore", "-legacy-save", "-nft-save")):
        base, variant, tail = name.rsplit("-", 2)
        plain = shutil.which(f"{base}-{tail}", path=f"{os.environ.get('PATH', '')}:{SBIN_PATH}")
        if plain is not None:
            proc = subprocess.run([plain, "--version"], capture_output=True, text=True, check=False)
            marker = "(legacy)" if variant == "legacy" else "(nf_tables)"
            if marker in proc.stdout + proc.stderr:
                return plain
    raise ProbeFailure(f"{name} not found (install the iptables/nftables package)")


def apply_command(rt: RuleText, backend: Backend, noflush: bool = False) -> list[str]:
    if rt.kind is RuleSyntax.NFT:
        return [find_binary("nft"), "-f", "-"]
    if backend is Backend.NFTABLES:
        raise ProbeFailure(f"{rt.source}: iptables rules cannot be applied with native nftables")
    restore, _ = XT_BINARIES[(backend, rt.kind)]
    argv = [find_binary(restore), "-w", "10", "-M", NO_MODPROBE]
    return [*argv, "--noflush"] if noflush else argv


def save_command(backend: Backend, kind: RuleSyntax) -> list[str]:
    _, save = XT_BINARIES[(backend, kind)]
    return [find_binary(save)]


def run_apply(argv: list[str], text: str, what: str) -> None:
    try:
        proc = subprocess.run(argv, input=text, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        raise ProbeFailure(f"{what}: {Path(argv[0]).name} did not finish in 60 s") from exc
    if proc.returncode != 0:
        msg = " ".join((proc.stderr or proc.stdout).split()) or f"exit {proc.returncode}"
        raise ProbeFailure(f"{what}: {Path(argv[0]).name} failed: {msg[:400]}")
