from __future__ import annotations

import errno
import gzip
import lzma
import os
import subprocess
from pathlib import Path

import pytest

from meshready.actions import kernel, loader
from meshready.actions.kernel import (
    MODULE_INIT_COMPRESSED_FILE,
    explain,
    syscall_numbers,
    valid_module_name,
)
from meshready.actions.loader import (
    LoaderKind,
    ModprobeLoader,
    PythonLoader,
    choose_loader,
    module_file,
    read_module_image,
)
from meshready.errors import ActionError
from meshready.host.kernel_state import kernel_guard
from meshready.host.modindex import ModuleIndex
from tests.actions.fakehost import FakeHost


@pytest.mark.parametrize("name", ["x_tables", "xt_REDIRECT", "nf-nat", "ip6table_raw"])
def test_valid_names(name: str) -> None:
    assert valid_module_name(name) == name.replace("-", "_")


@pytest.mark.parametrize(
    "name", ["", "-r", "../x", "a/b", "a b", "x;y", "ip_tables\n", "$(reboot)", "x" * 80]
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(ActionError, match="not a kernel module name"):
        valid_module_name(name)


def test_syscall_numbers() -> None:
    assert syscall_numbers("x86_64") == {
        "finit_module": 313,
        "init_module": 175,
        "delete_module": 176,
    }
    assert syscall_numbers("aarch64")["finit_module"] == 273
    assert syscall_numbers("arm64")["init_module"] == 105
    with pytest.raises(ActionError, match="not riscv64"):
        syscall_numbers("riscv64")


def test_module_file_comes_from_the_index(host: FakeHost) -> None:
    path = module_file("xt_owner", host.index, host.root)
    assert path == host.moddir / "kernel/net/netfilter/xt_owner.ko"
    with pytest.raises(ActionError, match=r"not in this kernel's modules\.dep"):
        module_file("no_such_thing", host.index, host.root)


def _index(paths: dict[str, str]) -> ModuleIndex:
    return ModuleIndex("/lib/modules/R", {n: () for n in paths}, paths, {}, (), frozenset())


def test_module_file_refuses_odd_index_paths(host: FakeHost) -> None:
    with pytest.raises(ActionError, match="unexpected path"):
        module_file("xt_owner", _index({"xt_owner": "../../../tmp/xt_owner.ko"}), host.root)
    with pytest.raises(ActionError, match="unexpected path"):
        module_file("xt_owner", _index({"xt_owner": "kernel/evil.ko"}), host.root)
    absolute = module_file(
        "xt_owner", _index({"xt_owner": "/lib/modules/R/xt_owner.ko"}), host.root
    )
    assert absolute == Path("/lib/modules/R/xt_owner.ko")  # old depmod: the tree's own path
    moved = ModuleIndex(
        str(host.moddir),
        {"xt_owner": ()},
        {"xt_owner": f"/lib/modules/{host.moddir.name}/x/xt_owner.ko"},
        {},
        (),
        frozenset(),
    )
    assert module_file("xt_owner", moved, host.root) == host.moddir / "x/xt_owner.ko"
    # an absolute path outside the module directory is never opened
    with pytest.raises(ActionError, match="outside the module directory"):
        module_file("xt_owner", _index({"xt_owner": "/etc/xt_owner.ko"}), host.root)
    with pytest.raises(ActionError, match="outside the module directory"):
        module_file("xt_owner", _index({"xt_owner": "/lib/modules/OTHER/xt_owner.ko"}), host.root)


def test_module_file_refuses_a_link_out_of_the_tree(host: FakeHost, tmp_path: Path) -> None:
    outside = tmp_path / "outside.ko"
    outside.write_bytes(b"\x7fELF")
    link = host.moddir / "kernel/net/netfilter/xt_owner.ko"
    link.unlink()
    link.symlink_to(outside)
    with pytest.raises(ActionError, match="leads outside the module directory"):
        module_file("xt_owner", host.index, host.root)


def test_read_module_image_decompresses(tmp_path: Path) -> None:
    image = b"\x7fELF" + os.urandom(64)
    (tmp_path / "a.ko.xz").write_bytes(lzma.compress(image, format=lzma.FORMAT_XZ))
    (tmp_path / "b.ko.gz").write_bytes(gzip.compress(image))
    (tmp_path / "c.ko").write_bytes(image)
    for name in ("a.ko.xz", "b.ko.gz", "c.ko"):
        assert read_module_image(tmp_path / name) == image
    (tmp_path / "bad.ko.xz").write_bytes(b"not xz")
    with pytest.raises(ActionError, match="cannot decompress"):
        read_module_image(tmp_path / "bad.ko.xz")


def test_read_module_image_zstd(tmp_path: Path) -> None:
    image = b"\x7fELF" + os.urandom(64)
    (tmp_path / "c.ko").write_bytes(image)
    subprocess.run(
        ["zstd", "-q", str(tmp_path / "c.ko"), "-o", str(tmp_path / "c.ko.zst")], check=True
    )
    assert read_module_image(tmp_path / "c.ko.zst") == image


class Calls:
    def __init__(self, finit_errors: list[int | None], init_errors: list[int | None] | None = None):
        self.finit_errors = finit_errors
        self.init_errors = init_errors or [None]
        self.finit: list[int] = []
        self.init: list[bytes] = []

    def do_finit(self, fd: int, flags: int = 0) -> None:
        self.finit.append(flags)
        err = self.finit_errors.pop(0) if self.finit_errors else None
        if err is not None:
            raise OSError(err, os.strerror(err))

    def do_init(self, image: bytes) -> None:
        self.init.append(image)
        err = self.init_errors.pop(0) if self.init_errors else None
        if err is not None:
            raise OSError(err, os.strerror(err))


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    c = Calls([])
    monkeypatch.setattr(loader, "finit_module", c.do_finit)
    monkeypatch.setattr(loader, "init_module", c.do_init)
    return c


def test_python_loader_plain_ko(host: FakeHost, calls: Calls) -> None:
    PythonLoader("x86_64").load("xt_owner", host.index, host.root)
    assert calls.finit == [0] and calls.init == []


def test_python_loader_skips_loaded(host: FakeHost, calls: Calls) -> None:
    host.set_loaded(["xt_owner"])
    PythonLoader("x86_64").load("xt_owner", host.index, host.root)
    assert calls.finit == []


def _compress(host: FakeHost, name: str) -> bytes:
    """Make NAME's file .ko.xz (as Debian 6.12 ships) and point modules.dep at it."""
    path = host.module_path(name)
    image = path.read_bytes()
    path.with_name(path.name + ".xz").write_bytes(lzma.compress(image))
    path.unlink()
    dep = host.moddir / "modules.dep"
    rel = str(path.relative_to(host.moddir))
    dep.write_text(
        dep.read_text().replace(rel + ":", rel + ".xz:").replace(rel + " ", rel + ".xz ")
    )
    return image


def test_python_loader_kernel_decompresses(host: FakeHost, calls: Calls) -> None:
    _compress(host, "xt_owner")
    PythonLoader("x86_64").load("xt_owner", host.index, host.root)
    assert calls.finit == [MODULE_INIT_COMPRESSED_FILE] and calls.init == []


@pytest.mark.parametrize("err", [errno.EOPNOTSUPP, errno.EINVAL])
def test_python_loader_decompresses_when_kernel_cannot(
    host: FakeHost, calls: Calls, err: int
) -> None:
    image = _compress(host, "xt_owner")
    _compress(host, "xt_mark")
    calls.finit_errors = [err]
    py = PythonLoader("x86_64")
    py.load("xt_owner", host.index, host.root)
    assert calls.finit == [MODULE_INIT_COMPRESSED_FILE]
    assert calls.init == [image]
    py.load("xt_mark", host.index, host.root)
    # EOPNOTSUPP is remembered: no second try of the compressed-file flag
    assert len(calls.finit) == (1 if err == errno.EOPNOTSUPP else 2)


@pytest.mark.parametrize("compressed", [False, True])
def test_python_loader_eexist_is_fine(host: FakeHost, calls: Calls, compressed: bool) -> None:
    """EEXIST: the module got loaded meanwhile (autoload raced us): done, no error, no retry."""
    if compressed:
        _compress(host, "xt_owner")
    calls.finit_errors = [errno.EEXIST]
    py = PythonLoader("x86_64")
    py.load("xt_owner", host.index, host.root)
    assert calls.finit == [MODULE_INIT_COMPRESSED_FILE if compressed else 0]
    assert calls.init == [] and not py.used_init_module


def test_python_loader_absent_file(host: FakeHost, calls: Calls) -> None:
    host.module_path("xt_owner").unlink()
    with pytest.raises(
        ActionError, match=r"cannot load xt_owner: module file .* is absent on disk"
    ):
        PythonLoader("x86_64").load("xt_owner", host.index, host.root)


@pytest.mark.parametrize(
    ("err", "setup", "expect"),
    [
        (errno.EKEYREJECTED, None, "rejected its signature"),
        (errno.EBADMSG, None, "rejected its signature"),
        (errno.EPERM, ("/proc/sys/kernel/modules_disabled", "1\n"), "kernel.modules_disabled=1"),
        (
            errno.EPERM,
            ("/sys/kernel/security/lockdown", "none integrity [confidentiality]\n"),
            "kernel lockdown (confidentiality) refuses it",
        ),
        (errno.EPERM, None, "needs CAP_SYS_MODULE"),
        (errno.EACCES, None, "permission denied by a security module"),
        (errno.ENOEXEC, None, "invalid module format"),
        (errno.ENOENT, None, "unknown symbol"),
    ],
)
def test_python_loader_errors(host: FakeHost, calls: Calls, err: int, setup, expect: str) -> None:  # type: ignore[no-untyped-def]
    if setup:
        host.write(*setup)
    calls.finit_errors = [err]
    with pytest.raises(ActionError) as exc:
        PythonLoader("x86_64").load("xt_owner", host.index, host.root)
    line = exc.value.one_line()
    assert line.startswith("cannot load xt_owner: ") and expect in line
    assert "\n" not in str(exc.value)


def test_kernel_guard(host: FakeHost) -> None:
    g = kernel_guard(host.root)
    assert (g.modules_disabled, g.lockdown, g.sig_enforce, g.needs_signed) == (
        False,
        "none",
        False,
        False,
    )
    host.write("/sys/kernel/security/lockdown", "none [integrity] confidentiality\n")
    assert kernel_guard(host.root).needs_signed


def test_explain_unknown_errno(host: FakeHost) -> None:
    assert "ENOMEM" in explain("x", errno.ENOMEM, host.root)


# modprobe: the real binary runs in the VM tests; here its messages are mapped


class FakeRun:
    def __init__(self, host: FakeHost, code: int, stderr: str, loads: bool) -> None:
        self.host, self.code, self.stderr, self.loads = host, code, stderr, loads
        self.argv: list[str] = []

    def __call__(self, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        self.argv = argv
        assert kwargs.get("env") is not None and "shell" not in kwargs
        if self.loads:
            self.host.add_loaded(argv[-1])
        return subprocess.CompletedProcess(argv, self.code, "", self.stderr)


def _modprobe(
    host: FakeHost, monkeypatch: pytest.MonkeyPatch, code: int, stderr: str, loads: bool
) -> FakeRun:
    host.write("/usr/sbin/modprobe", "#!/bin/sh\n")
    run = FakeRun(host, code, stderr, loads)
    monkeypatch.setattr(subprocess, "run", run)
    return run


def test_modprobe_argv_and_success(host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _modprobe(host, monkeypatch, 0, "", loads=True)
    mp = ModprobeLoader(host.root)
    assert mp.method == "chroot"  # a host root that is not /
    mp.load("xt_owner", host.index, host.root)
    assert run.argv == ["/usr/sbin/modprobe", "-b", "--", "xt_owner"]


@pytest.mark.parametrize(
    ("stderr", "expect"),
    [
        ("modprobe: ERROR: could not insert 'xt_owner': Key was rejected by service", "rejected its signature"),
        ("modprobe: ERROR: could not insert 'xt_owner': Operation not permitted", "CAP_SYS_MODULE"),
        ("modprobe: ERROR: could not insert 'xt_owner': Permission denied", "security module"),
        ("modprobe: FATAL: Module xt_owner not found in directory /lib/modules/R", "absent from the host's module tree"),
        ("modprobe: ERROR: could not insert 'xt_owner': Unknown symbol in module, or unknown parameter (see dmesg)", "unknown symbol"),
        ("modprobe: ERROR: something new", "modprobe exit 1: modprobe: ERROR: something new"),
    ],
)  # fmt: skip
def test_modprobe_errors(
    host: FakeHost, monkeypatch: pytest.MonkeyPatch, stderr: str, expect: str
) -> None:
    _modprobe(host, monkeypatch, 1, stderr, loads=False)
    with pytest.raises(ActionError) as exc:
        ModprobeLoader(host.root).load("xt_owner", host.index, host.root)
    assert expect in exc.value.one_line()


def test_modprobe_blacklisted(host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    _modprobe(host, monkeypatch, 0, "", loads=False)  # -b and a blacklist: exit 0, nothing loaded
    with pytest.raises(ActionError, match="blacklists it"):
        ModprobeLoader(host.root).load("xt_owner", host.index, host.root)


def test_choose_loader(host: FakeHost) -> None:
    # no modprobe on this host
    assert isinstance(choose_loader(LoaderKind.AUTO, host.root), PythonLoader)
    with pytest.raises(ActionError, match="no modprobe on the host"):
        choose_loader(LoaderKind.MODPROBE, host.root)
    host.write("/sbin/modprobe", "")
    assert isinstance(choose_loader(LoaderKind.AUTO, host.root), ModprobeLoader)
    assert isinstance(choose_loader(LoaderKind.PYTHON, host.root), PythonLoader)
    assert isinstance(choose_loader(LoaderKind.MODPROBE, host.root), ModprobeLoader)


def test_loader_kinds_in_order() -> None:
    """``--loader`` offers these, in this order (cli/fix.py builds its choice from LoaderKind)."""
    assert [kind.value for kind in LoaderKind] == ["auto", "modprobe", "python"]


def test_unload_not_loaded_is_fine(monkeypatch: pytest.MonkeyPatch, host: FakeHost) -> None:
    def gone(name: str) -> None:
        raise OSError(errno.ENOENT, "gone")

    monkeypatch.setattr(loader, "delete_module", gone)
    PythonLoader("x86_64").unload("xt_owner", host.root)

    def busy(name: str) -> None:
        raise OSError(errno.EWOULDBLOCK, os.strerror(errno.EWOULDBLOCK))

    monkeypatch.setattr(loader, "delete_module", busy)
    with pytest.raises(ActionError, match="cannot unload xt_owner"):
        PythonLoader("x86_64").unload("xt_owner", host.root)


def test_real_syscall_reports_enosys_or_eperm_here() -> None:
    """The ctypes call reaches the kernel: this machine has no module support (ENOSYS) or refuses."""
    if os.uname().machine not in ("x86_64", "aarch64"):
        pytest.fail("the python loader supports x86_64 and aarch64 only")
    with pytest.raises(OSError) as exc:
        kernel.delete_module("meshready_no_such_module")
    assert exc.value.errno in (errno.ENOSYS, errno.ENOENT, errno.EPERM)
