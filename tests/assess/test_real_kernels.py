"""Module sets derived for every shared rules file on real Debian kernel indexes.

``tests/data/expected/needs-6.1.0-56-cloud-amd64.json`` lists, per file and backend (legacy and
native nftables), the modules the rules need directly and the full load order on Debian's 6.1 cloud
kernel (index cut from the real package by scripts/vm/cut-index). The VM suite (tests/vm) proves
each set complete and minimal by applying the file in a real guest with exactly that set loaded.

``tests/data/expected/iptables-nft-<release>.json`` is what real guests MEASURED for iptables-nft
(scripts/vm/measure-iptables --expected): per file and iptables version, the modules the kernel
loaded while the file applied, and those it could do without (iptables only warned).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshready.assess.assess import assess
from meshready.assess.report import State
from meshready.host.facts import gather_offline
from meshready.knowledge.requests import Backend
from meshready.rules.derive import needs_for
from meshready.rules.load import load_rules_file
from tests.conftest import (
    DATA,
    DEBIAN_61_AMD64,
    DEBIAN_61_ARM64,
    DEBIAN_612_AMD64,
    KERNELS,
    REPO,
    shared_dir,
)

EXPECTED = json.loads((DATA / "expected" / "needs-6.1.0-56-cloud-amd64.json").read_text())


def _files() -> list[tuple[str, Backend]]:
    out = []
    for key in sorted(EXPECTED):
        name, backend = key.rsplit(":", 1)
        out.append((name, Backend(backend)))
    return out


def test_expected_covers_every_shared_file() -> None:
    rules = shared_dir() / "rules"
    files = {
        f"{p.parent.name}/{p.name}" for p in rules.glob("*/*") if p.suffix in (".rules", ".nft")
    }
    covered = {k.rsplit(":", 1)[0] for k in EXPECTED}
    assert files == covered


@pytest.mark.parametrize(("name", "backend"), _files())
def test_module_set_on_debian_61(name: str, backend: Backend) -> None:
    facts = gather_offline(None, None, DEBIAN_61_AMD64)
    ruleset = load_rules_file(str(shared_dir() / "rules" / name))
    report = assess(needs_for([ruleset], backend), facts, backend)
    expected = EXPECTED[f"{name}:{backend.value}"]
    assert sorted(m.name for m in report.modules if m.direct) == expected["direct"]
    assert list(report.load_order) == expected["load_order"]
    assert not report.unresolved


@pytest.mark.parametrize(
    "kernel", [DEBIAN_61_AMD64, DEBIAN_61_ARM64, DEBIAN_612_AMD64], ids=lambda p: p.name
)
def test_load_order_puts_dependencies_first(kernel: Path) -> None:
    facts = gather_offline(None, None, kernel)
    assert facts.index is not None
    ruleset = load_rules_file(str(shared_dir() / "rules" / "sidecar-iptables" / "tproxy.v4.rules"))
    report = assess(needs_for([ruleset], Backend.LEGACY), facts, Backend.LEGACY)
    order = list(report.load_order)
    for module in order:
        for dep in facts.index.deps[module]:
            if dep in order:
                assert order.index(dep) < order.index(module), (module, dep)
    assert order[0] == "x_tables"
    assert {"ip_tables", "iptable_nat", "xt_REDIRECT", "xt_TPROXY", "xt_CT"} <= set(order)


def test_6_12_ships_compressed_modules_and_same_names() -> None:
    facts = gather_offline(None, None, DEBIAN_612_AMD64)
    assert facts.index is not None
    assert facts.index.paths["xt_owner"].endswith(".ko.xz")
    ruleset = load_rules_file(str(shared_dir() / "rules" / "sidecar-nft" / "tproxy.nft"))
    report = assess(needs_for([ruleset], Backend.NFTABLES), facts, Backend.NFTABLES)
    direct = {m.name for m in report.modules if m.direct}
    assert {
        "nf_tables",
        "nfnetlink",
        "nft_chain_nat",
        "nft_redir",
        "nft_tproxy",
        "nft_ct",
    } <= direct
    assert all(m.state is State.LOADABLE for m in report.modules if m.name in direct)


def test_arm64_has_no_crc32c_intel_softdep() -> None:
    ruleset = load_rules_file(str(shared_dir() / "rules" / "sidecar-iptables" / "tproxy.v4.rules"))
    amd = assess(
        needs_for([ruleset], Backend.LEGACY),
        gather_offline(None, None, DEBIAN_61_AMD64),
        Backend.LEGACY,
    )
    arm = assess(
        needs_for([ruleset], Backend.LEGACY),
        gather_offline(None, None, DEBIAN_61_ARM64),
        Backend.LEGACY,
    )
    assert "crc32c_intel" in amd.load_order  # libcrc32c's soft dependency through the crc32c alias
    assert "crc32c_intel" not in arm.load_order


MEASURED = {
    p.name.removeprefix("iptables-nft-").removesuffix(".json"): json.loads(p.read_text())
    for p in sorted((DATA / "expected").glob("iptables-nft-*.json"))
    if not p.name.startswith("iptables-nft-atoms-")  # per extension: tests/rules
}
PROFILE_DIR = REPO / "src" / "meshready" / "knowledge" / "data" / "profiles"
VERSIONS = ("1.8.7", "1.8.9", "1.8.11")


def test_measurements_cover_every_file_and_version() -> None:
    assert MEASURED, "no tests/data/expected/iptables-nft-*.json (scripts/vm/measure-iptables)"
    files = {
        f"sidecar-iptables/{p.name}"
        for p in (shared_dir() / "rules" / "sidecar-iptables").glob("*.rules")
    }
    files |= {f"profile/{p.name}" for p in PROFILE_DIR.glob("*.rules")}
    for release, data in MEASURED.items():
        assert (KERNELS / release / "modules.dep").is_file(), f"no cut index for {release}"
        want = {f"{f}@{v}" for f in files for v in VERSIONS}
        assert sorted(want - set(data)) == [], release


def _measured_cases() -> list[tuple[str, str]]:
    return [(release, key) for release, data in MEASURED.items() for key in data]


@pytest.mark.parametrize(("release", "key"), _measured_cases())
def test_iptables_nft_matches_the_measurement(release: str, key: str) -> None:
    name, version = key.rsplit("@", 1)
    measured = MEASURED[release][key]
    if name.startswith("profile/"):
        path = PROFILE_DIR / name.removeprefix("profile/")
    else:
        path = shared_dir() / "rules" / name
    facts = gather_offline(None, None, KERNELS / release)
    report = assess(
        needs_for([load_rules_file(str(path))], Backend.NFT, version), facts, Backend.NFT
    )
    derived = {m.name for m in report.modules if m.state is not State.BUILTIN}
    # everything the kernel loaded with autoload on = required + recommended, nothing more
    assert sorted(derived) == measured["loaded"]
    recommended = sorted(m.name for m in report.modules if m.direct and not m.required)
    assert recommended == measured["recommended"]
    for m in report.modules:
        if not m.required:
            assert m.warning is not None
            # one module can stand for several warnings (xt_tcpudp: tcp and udp), joined by "; "
            for warning in m.warning.split("; "):
                assert warning in measured["warnings"], (m.name, measured["warnings"])
    assert not [u for u in report.unresolved if u.required]
