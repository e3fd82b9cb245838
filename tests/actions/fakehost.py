"""A fake node for the actions tests: a host root in a temporary directory, with its own /proc and
/sys, a real Debian module index (tests/data/kernels) and module files that are just bytes."""

from __future__ import annotations

import errno
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from meshready.actions.kernel import MODULE_SIG_MAGIC
from meshready.actions.loader import Loader
from meshready.assess.assess import assess
from meshready.assess.plan import needs_from_options
from meshready.assess.report import Report
from meshready.errors import ActionError
from meshready.host.facts import HostFacts, gather_live
from meshready.host.modindex import ModuleIndex
from meshready.host.root import HostRoot
from meshready.knowledge.requests import Backend

DATA = Path(__file__).resolve().parents[1] / "data" / "kernels"
RELEASE = "6.1.0-56-cloud-amd64"


def persisted_modules(content: str) -> list[str]:
    """The modules a modules-load.d file names, as systemd-modules-load reads it: one per line,
    ``#`` and ``;`` start comments (modules-load.d(5))."""
    return [
        line.strip()
        for line in content.splitlines()
        if line.strip() and not line.lstrip().startswith(("#", ";"))
    ]


@dataclass
class FakeHost:
    base: Path
    release: str = RELEASE
    refcounts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = HostRoot(self.base / "root", self.base / "proc", self.base / "sys")
        moddir = self.moddir
        moddir.mkdir(parents=True)
        for name in ("modules.dep", "modules.alias", "modules.builtin", "modules.softdep",
                     "modules.builtin.modinfo"):  # fmt: skip
            shutil.copy(DATA / self.release / name, moddir / name)
        for line in (moddir / "modules.dep").read_text().splitlines():
            rel = line.split(":", 1)[0]
            path = moddir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"\x7fELF fake module " + rel.encode() + b"\n" + MODULE_SIG_MAGIC)
        (self.base / "proc/sys/kernel").mkdir(parents=True)
        (self.base / "proc/sys/kernel/osrelease").write_text(self.release + "\n")
        (self.base / "proc/sys/kernel/modprobe").write_text("/sbin/modprobe\n")
        (self.base / "proc/sys/kernel/modules_disabled").write_text("0\n")
        (self.base / "sys/module/module/parameters").mkdir(parents=True)
        (self.base / "sys/module/module/parameters/sig_enforce").write_text("N\n")
        (self.base / "sys/kernel/security").mkdir(parents=True)
        (self.base / "sys/kernel/security/lockdown").write_text(
            "[none] integrity confidentiality\n"
        )
        (self.root.root / "etc").mkdir(parents=True)
        self.set_loaded([])

    @property
    def moddir(self) -> Path:
        return self.base / "root/lib/modules" / self.release

    def module_path(self, name: str) -> Path:
        for line in (self.moddir / "modules.dep").read_text().splitlines():
            rel = line.split(":", 1)[0]
            if rel.rsplit("/", 1)[-1].split(".ko")[0].replace("-", "_") == name:
                return self.moddir / rel
        raise KeyError(name)

    # /proc/modules and /sys/module/<name>/refcnt
    def loaded(self) -> list[str]:
        text = (self.base / "proc/modules").read_text()
        return [line.split()[0] for line in text.splitlines() if line.strip()]

    def set_loaded(self, names: list[str], refcounts: dict[str, int] | None = None) -> None:
        self.refcounts.update(refcounts or {})
        refcounts = self.refcounts
        lines = [f"{n} 16384 {refcounts.get(n, 0)} - Live 0x0000000000000000" for n in names]
        (self.base / "proc/modules").write_text("".join(line + "\n" for line in lines))
        for n in names:
            d = self.base / "sys/module" / n
            d.mkdir(parents=True, exist_ok=True)
            (d / "refcnt").write_text(f"{refcounts.get(n, 0)}\n")

    def add_loaded(self, name: str) -> None:
        self.set_loaded([*self.loaded(), name])

    def remove_loaded(self, name: str) -> None:
        self.refcounts.pop(name, None)
        self.set_loaded([n for n in self.loaded() if n != name])
        shutil.rmtree(self.base / "sys/module" / name, ignore_errors=True)

    def write(self, host_path: str, text: str) -> None:
        path = self.root.path(host_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def facts(self) -> HostFacts:
        return gather_live(self.root)

    def report(self, profile: str = "istio-sidecar", backend: Backend | None = None) -> Report:
        spec = needs_from_options(profile, (), backend)
        return assess(spec.needs, self.facts(), spec.backend, spec.profile, spec.rules)

    @property
    def index(self) -> ModuleIndex:
        index = self.facts().index
        assert index is not None
        return index


@dataclass
class FakeLoader(Loader):
    """Loads by writing /proc/modules of a FakeHost; fails on ``fail_on`` with ``fail_message``."""

    host: FakeHost
    fail_on: str | None = None
    fail_message: str = "cannot load it: simulated"
    calls: list[str] = field(default_factory=list)
    unloaded: list[str] = field(default_factory=list)
    name: str = "fake"

    def load(self, module: str, index: ModuleIndex, root: HostRoot) -> None:
        self.calls.append(module)
        if module == self.fail_on:
            raise ActionError(self.fail_message)
        if module not in self.host.loaded():
            self.host.add_loaded(module)

    def unload(self, module: str, root: HostRoot) -> None:
        if module not in self.host.loaded():
            raise ActionError(f"cannot unload {module}: {errno.errorcode[errno.ENOENT]}")
        self.unloaded.append(module)
        self.host.remove_loaded(module)
