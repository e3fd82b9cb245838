"""A node for the agent to look at: real Debian kernel data under a host root, a fake /proc and /sys.

The module index (modules.dep, .alias, .builtin, .softdep, config) is a real kernel's, cut by
scripts/vm/cut-index (tests/data/kernels/<release>/). The kernel views the agent reads (/proc/modules,
/proc/sys/kernel/*, /sys/module) are files here, because this machine's kernel has no loadable
module support: `FakeLoader` "loads" a module by adding its line to the fake /proc/modules (and
/sys/module/NAME), which is what the kernel's own views would then show. Real loading is proven
in the VM tests of the actions package.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from meshready.actions.loader import Loader
from meshready.errors import ActionError
from meshready.host.modindex import ModuleIndex
from meshready.host.root import HostRoot

REPO = Path(__file__).resolve().parents[2]
KERNELS = REPO / "tests" / "data" / "kernels"
DEFAULT_RELEASE = "6.1.0-56-cloud-amd64"


@dataclass(frozen=True)
class FakeNode:
    base: Path
    release: str

    @property
    def host(self) -> Path:
        return self.base / "host"

    @property
    def proc(self) -> Path:
        return self.base / "proc"

    @property
    def sys(self) -> Path:
        return self.base / "sys"

    @property
    def root(self) -> HostRoot:
        return HostRoot(self.host, proc=self.proc, sys=self.sys)

    def agent_args(self) -> list[str]:
        return ["--host-root", str(self.host), "--proc", str(self.proc), "--sys", str(self.sys)]

    def loaded(self) -> set[str]:
        text = (self.proc / "modules").read_text()
        return {line.split()[0] for line in text.splitlines() if line.strip()}

    def load(self, *names: str) -> None:
        add_loaded(self.proc, self.sys, names)

    def unload_all(self) -> None:
        (self.proc / "modules").write_text("")
        shutil.rmtree(self.sys / "module")
        (self.sys / "module").mkdir()

    def reboot(self, boot_id: str) -> None:
        self.unload_all()
        (self.proc / "sys" / "kernel" / "random" / "boot_id").write_text(boot_id + "\n")

    def persisted(self) -> str | None:
        path = self.host / "etc" / "modules-load.d" / "meshready.conf"
        return path.read_text() if path.is_file() else None


def make_node(
    base: Path,
    release: str = DEFAULT_RELEASE,
    loaded: tuple[str, ...] = (),
    boot_id: str = "11111111-2222-3333-4444-555555555555",
) -> FakeNode:
    """A host root with RELEASE's real module index, and kernel views listing LOADED."""
    node = FakeNode(base, release)
    modules = node.host / "lib" / "modules" / release
    modules.parent.mkdir(parents=True)
    shutil.copytree(KERNELS / release, modules)
    # The cut index has no module files; modules.dep's paths must exist for a fix to be planned.
    for line in (modules / "modules.dep").read_text().splitlines():
        rel = line.partition(":")[0].strip()
        if rel:
            (modules / rel).parent.mkdir(parents=True, exist_ok=True)
            (modules / rel).write_bytes(b"")
    (node.host / "etc" / "modules-load.d").mkdir(parents=True)
    kernel = node.proc / "sys" / "kernel"
    (kernel / "random").mkdir(parents=True)
    (kernel / "osrelease").write_text(release + "\n")
    (kernel / "modprobe").write_text("/sbin/modprobe\n")
    (kernel / "modules_disabled").write_text("0\n")
    (kernel / "random" / "boot_id").write_text(boot_id + "\n")
    (node.proc / "modules").write_text("")
    (node.sys / "module").mkdir(parents=True)
    node.load(*loaded)
    return node


_lock = threading.Lock()


def add_loaded(proc: Path, sys: Path, names: tuple[str, ...] | list[str]) -> None:
    with _lock:
        path = proc / "modules"
        text = path.read_text() if path.exists() else ""
        have = {line.split()[0] for line in text.splitlines() if line.strip()}
        for name in names:
            if name in have:
                continue
            text += f"{name} 16384 0 - Live 0x0000000000000000\n"
            (sys / "module" / name).mkdir(parents=True, exist_ok=True)
            (sys / "module" / name / "refcnt").write_text("0\n")
            have.add(name)
        tmp = path.with_name("modules.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)


class FakeLoader(Loader):
    """Loads by writing the kernel's views; FAIL names modules the kernel "refuses"."""

    name = "fake"

    def __init__(self, fail: frozenset[str] = frozenset(), delay: float = 0.0) -> None:
        self.fail = fail
        self.delay = delay
        self.calls: list[str] = []

    def describe(self) -> str:
        return "fake loader (test)"

    def load(self, module: str, index: ModuleIndex, root: HostRoot) -> None:
        self.calls.append(module)
        if module in self.fail:
            raise ActionError(
                f"cannot load {module}: permission denied by a security module (test refusal)"
            )
        if not index.has(module):
            raise ActionError(f"refusing {module}: not in this kernel's modules.dep")
        if self.delay:
            time.sleep(self.delay)
        add_loaded(root.proc, root.sys, [module])

    def unload(self, module: str, root: HostRoot) -> None:
        path = root.proc / "modules"
        lines = [ln for ln in path.read_text().splitlines() if ln.split()[0] != module]
        path.write_text("".join(line + "\n" for line in lines))


def loader_from_env() -> FakeLoader | None:
    """MESHREADY_TEST_LOADER=fake[:fail=a,b][:delay=S] (the process launcher reads it)."""
    spec = os.environ.get("MESHREADY_TEST_LOADER", "")
    if not spec.startswith("fake"):
        return None
    fail: frozenset[str] = frozenset()
    delay = 0.0
    for part in spec.split(":")[1:]:
        key, _, value = part.partition("=")
        if key == "fail":
            fail = frozenset(v for v in value.split(",") if v)
        elif key == "delay":
            delay = float(value)
    return FakeLoader(fail, delay)


def needed_modules(node: FakeNode, profile: str = "istio-sidecar") -> list[str]:
    """Every module the profile needs on NODE's kernel that is not built in (load order)."""
    from meshready.actions.fix import assess_live
    from meshready.assess.plan import needs_from_options
    from meshready.assess.report import State

    report, _ = assess_live(needs_from_options(profile, (), None), node.root)
    return [m.name for m in report.modules if m.state is not State.BUILTIN]
