from __future__ import annotations

import shutil
from pathlib import Path

from meshready.host.facts import gather_live, gather_offline
from meshready.host.root import HostRoot
from tests.conftest import CASE, DEBIAN_61_AMD64


def test_host_root_maps_files_but_not_kernel_views() -> None:
    root = HostRoot(Path("/host"))
    assert root.path("/lib/modules/x") == Path("/host/lib/modules/x")
    assert root.path("/proc/modules") == Path("/proc/modules")
    assert root.path("/sys/module") == Path("/sys/module")
    assert HostRoot().path("/etc/modules-load.d") == Path("/etc/modules-load.d")


def _fake_node(tmp_path: Path, release: str) -> HostRoot:
    """A node as the agent sees it: host files under a root, kernel views from fake /proc, /sys."""
    modules = tmp_path / "host" / "lib" / "modules" / release
    shutil.copytree(DEBIAN_61_AMD64, modules)
    proc = tmp_path / "proc"
    (proc / "sys" / "kernel").mkdir(parents=True)
    (proc / "sys" / "kernel" / "osrelease").write_text(release + "\n")
    (proc / "sys" / "kernel" / "modprobe").write_text("/sbin/modprobe\n")
    (proc / "modules").write_text("x_tables 53248 0 - Live 0x0\n")
    (tmp_path / "sys" / "module").mkdir(parents=True)
    return HostRoot(tmp_path / "host", proc=proc, sys=tmp_path / "sys")


def test_live_gather_under_a_host_root(tmp_path: Path) -> None:
    release = (DEBIAN_61_AMD64 / "release").read_text().strip()
    facts = gather_live(_fake_node(tmp_path, release))
    assert facts.release == release
    assert facts.index is not None and facts.index.has("xt_owner")
    assert facts.loaded is not None and facts.loaded.names == {"x_tables"}
    assert facts.config is not None  # /lib/modules/R/config of the copied tree
    assert facts.modprobe_path == "/sbin/modprobe"
    assert facts.source.startswith("host-root:")


def test_offline_gather_from_lsmod_only() -> None:
    facts = gather_offline(CASE / "lsmod.txt", "5.15.0-1.el8uek.aarch64")
    assert facts.index is None and facts.config is None
    assert facts.loaded is not None and "nf_nat" in facts.loaded.names


def test_boot_module_files_are_read_and_checked(tmp_path: Path) -> None:
    from meshready.assess.assess import assess
    from meshready.assess.plan import needs_from_options

    release = (DEBIAN_61_AMD64 / "release").read_text().strip()
    root = _fake_node(tmp_path, release)
    conf = root.root / "etc" / "modules-load.d"
    conf.mkdir(parents=True)
    # The founding case's hand-written file: Istio's documented list, old names included.
    (conf / "istio.conf").write_text("# istio\nbr_netfilter\nnf_conntrack_ipv4\nnf-nat\nxt_owner\n")
    facts = gather_live(root)
    assert facts.boot_modules == {
        "/etc/modules-load.d/istio.conf": (
            "br_netfilter",
            "nf_conntrack_ipv4",
            "nf_nat",
            "xt_owner",
        )
    }
    spec = needs_from_options(None, (), None)
    notes = assess(spec.needs, facts, spec.backend).notes
    flagged = [n for n in notes if "istio.conf lists" in n]
    assert len(flagged) == 1 and "nf_conntrack_ipv4" in flagged[0]
    assert "merged into nf_conntrack" in flagged[0]


def test_kernel_only_forgets_loaded_modules_but_keeps_built_ins(tmp_path: Path) -> None:
    release = (DEBIAN_61_AMD64 / "release").read_text().strip()
    root = _fake_node(tmp_path, release)
    # /sys/module lists loaded modules (x_tables) and built-in ones with parameters (nf_conntrack).
    for name in ("x_tables", "nf_conntrack"):
        (root.sys / "module" / name).mkdir()
    facts = gather_live(root).kernel_only()
    assert facts.loaded is None
    assert facts.sysfs_modules == frozenset({"nf_conntrack"})
