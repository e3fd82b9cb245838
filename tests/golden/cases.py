"""The command lines whose outputs are kept as golden files (tests/data/golden).

Every command that prints a machine-readable result is run on every shared rules file, every
profile, the founding case and every real log in tests/data/logs, offline against the real Debian
kernel indexes in tests/data/kernels, so that the outputs do not depend on the machine. Paths in
the outputs are replaced by $REPO and $SHARED so that a clone anywhere gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import CASE as _CASE
from tests.conftest import DATA, KERNELS
from tests.conftest import SHARED as _SHARED

SHARED = _SHARED.resolve()
CASE = _CASE.resolve()
REPO = DATA.parents[1].resolve()

GOLDEN = DATA / "golden"
# A Debian cloud node on which nothing netfilter is loaded yet: only the header, as lsmod prints.
EMPTY_LSMOD = GOLDEN / "inputs" / "lsmod-nothing-loaded.txt"
CASE_RELEASE = "5.15.0-100.96.32.el8uek.aarch64"
PROFILES = (
    "istio-sidecar",
    "istio-sidecar-tproxy",
    "istio-ambient",
    "istio-sidecar-nftables",
    "istio-ambient-nftables",
    "linkerd",
)
PROVIDERS = ("oke", "cloud-init", "modules-load", "talos", "bottlerocket")
# needs: every rules file on two kernels, the profiles on every index we hold; check on the main
# one (and on the founding case's node)
NEEDS_KERNELS = ("6.1.0-56-cloud-amd64", "6.12.117+deb12-cloud-amd64")
PROFILE_KERNELS = ("5.10.0-32-cloud-amd64", *NEEDS_KERNELS, "6.1.0-56-cloud-arm64")
CHECK_KERNEL = "6.1.0-56-cloud-amd64"


@dataclass(frozen=True)
class Case:
    name: str  # the golden file's path under tests/data/golden, without suffix
    argv: tuple[str, ...]
    suffix: str  # .json or .txt

    @property
    def path(self) -> Path:
        return GOLDEN / (self.name + self.suffix)


def _kernel(release: str) -> tuple[str, ...]:
    index = KERNELS / release
    return ("--kernel-release", release, "--modules-dir", str(index),
            "--kernel-config", str(index / "config"))  # fmt: skip


def _rules_files() -> list[tuple[str, Path, tuple[str, ...]]]:
    """(case stem, file, backends) for every shared rules file."""
    found: list[tuple[str, Path, tuple[str, ...]]] = []
    for path in sorted((SHARED / "rules" / "sidecar-iptables").glob("*.rules")):
        found.append((f"iptables/{path.stem}", path, ("legacy", "nft")))
    for path in sorted((SHARED / "rules" / "sidecar-nft").glob("*.nft")):
        found.append((f"nft/{path.stem}", path, ("nftables",)))
    return found


def _inputs() -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """(stem, the options naming the rules, backends) for every rules file and every profile."""
    found: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
        (stem, ("--rules", str(path)), backends) for stem, path, backends in _rules_files()
    ]
    for profile in PROFILES:
        found.append((f"profile/{profile}", ("--profile", profile), ("",)))
    return found


def cases() -> Iterator[Case]:
    yield Case("profiles", ("profiles", "-o", "json"), ".json")
    for stem, rules, backends in _inputs():
        for backend in backends:
            tag = f"{stem}.{backend}" if backend else stem
            chosen = ("--backend", backend) if backend else ()
            for release in PROFILE_KERNELS if stem.startswith("profile/") else NEEDS_KERNELS:
                argv = ("needs", *rules, *chosen, *_kernel(release), "-o", "json")
                yield Case(f"needs/{tag}.{release}", argv, ".json")
            argv = ("check", *rules, *chosen, *_kernel(CHECK_KERNEL), "--lsmod", str(EMPTY_LSMOD))
            yield Case(f"check/{tag}.nothing-loaded", (*argv, "-o", "json"), ".json")
            argv = ("check", *rules, *chosen, "--lsmod", str(CASE / "lsmod.txt"),
                    "--kernel-release", CASE_RELEASE)  # fmt: skip
            yield Case(f"check/{tag}.founding-node", (*argv, "-o", "json"), ".json")
            yield Case(f"check/{tag}.founding-node.fix-script", (*argv, "--fix-script"), ".txt")
            argv = ("render", "bootstrap", "--provider", "modules-load", *rules, *chosen,
                    *_kernel(CHECK_KERNEL))  # fmt: skip
            yield Case(f"render-bootstrap/{tag}", argv, ".txt")
    for provider in PROVIDERS:
        argv = ("render", "bootstrap", "--provider", provider)
        yield Case(f"render-bootstrap/provider/{provider}", argv, ".txt")
    yield from _diagnose_cases()
    yield from _manifest_cases()


def _diagnose_cases() -> Iterator[Case]:
    logs = [("founding-case", CASE / "istio-init.log")]
    logs += [(p.stem, p) for p in sorted((DATA / "logs").glob("*.log"))]
    for stem, log in logs:
        yield Case(f"diagnose/{stem}", ("diagnose", str(log), "-o", "json"), ".json")
        yield Case(f"diagnose/{stem}.fix-script", ("diagnose", str(log), "--fix-script"), ".txt")
    case_log = str(CASE / "istio-init.log")
    for backend in ("legacy", "nft", "nftables"):
        argv = ("diagnose", case_log, "--backend", backend, "--kernel-release", CASE_RELEASE)
        yield Case(f"diagnose/founding-case.{backend}", (*argv, "-o", "json"), ".json")
    for container in ("istio-init", "istio-validation", "install-cni", "linkerd-init"):
        argv = ("diagnose", case_log, "--container", container, "-o", "json")
        yield Case(f"diagnose/founding-case.container-{container}", argv, ".json")


def _manifest_cases() -> Iterator[Case]:
    base = ("render", "manifests", "--image", "registry.example/meshready@sha256:" + "0" * 64)
    yield Case("render-manifests/default", base, ".txt")
    for profile in PROFILES:
        yield Case(f"render-manifests/{profile}", (*base, "--profile", profile), ".txt")
    yield Case("render-manifests/admission-policy", (*base, "--admission-policy"), ".txt")
    options = ("--no-taint", "--probe-mode", "off", "--no-persist", "--backend", "nft")
    yield Case("render-manifests/no-taint-no-probe", (*base, *options), ".txt")


def normalise(text: str) -> str:
    """The output with this clone's paths replaced, so that it is the same in any clone."""
    return text.replace(str(SHARED), "$SHARED").replace(str(REPO), "$REPO")
