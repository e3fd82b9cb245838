"""The running kernel's state as host/kernel_state reads it (a fake /proc and /sys)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshready.errors import InputError
from meshready.host.kernel_state import (
    kernel_guard,
    loaded_modules,
    modprobe_helper,
    module_refcount,
    modules_disabled,
    read_proc_modules,
    running_release,
    sysfs_modules,
)
from meshready.host.root import HostRoot


@pytest.fixture
def root(tmp_path: Path) -> HostRoot:
    (tmp_path / "proc/sys/kernel").mkdir(parents=True)
    (tmp_path / "sys").mkdir()
    return HostRoot(tmp_path / "root", tmp_path / "proc", tmp_path / "sys")


def _write(root: HostRoot, host_path: str, text: str) -> None:
    path = root.path(host_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_proc_modules_is_read_once_for_names_and_users(root: HostRoot) -> None:
    assert read_proc_modules(root) is None and loaded_modules(root) is None  # no module support
    _write(
        root,
        "/proc/modules",
        "nf_nat 57344 1 xt_REDIRECT, Live 0x0\nxt_REDIRECT 16384 0 - Live 0x0\n"
        "nf-defrag-ipv4 16384 1 nf_conntrack, Live 0x0\n",
    )
    loaded = read_proc_modules(root)
    assert loaded is not None
    assert loaded.users["nf_nat"] == {"xt_REDIRECT"}
    assert loaded_modules(root) == frozenset({"nf_nat", "xt_REDIRECT", "nf_defrag_ipv4"})


def test_a_broken_proc_modules_line_names_the_file(root: HostRoot) -> None:
    _write(root, "/proc/modules", "nf_nat 57344 1 - Live 0x0\n../x\n")
    with pytest.raises(InputError) as exc:
        loaded_modules(root)
    assert exc.value.one_line().startswith(f"{root.path('/proc/modules')}:2: ")


def test_release_helper_and_sysfs(root: HostRoot) -> None:
    _write(root, "/proc/sys/kernel/osrelease", "6.1.0-56-cloud-amd64\n")
    _write(root, "/proc/sys/kernel/modprobe", "/sbin/modprobe\n")
    assert running_release(root) == "6.1.0-56-cloud-amd64"
    assert modprobe_helper(root) == "/sbin/modprobe"
    assert sysfs_modules(root) is None  # no /sys/module
    _write(root, "/sys/module/nf_nat/refcnt", "2\n")
    _write(root, "/sys/module/bridge/parameters/x", "")
    assert sysfs_modules(root) == frozenset({"nf_nat", "bridge"})


def test_refcount(root: HostRoot) -> None:
    _write(root, "/sys/module/nf_nat/refcnt", "2\n")
    _write(root, "/sys/module/odd/refcnt", "many\n")
    assert module_refcount(root, "nf_nat") == 2
    assert module_refcount(root, "odd") is None
    assert module_refcount(root, "xt_owner") is None  # not loaded
    _write(root, "/sys/module/refcnt", "7\n")
    assert module_refcount(root, "../module") is None  # a name, never a path


@pytest.mark.parametrize(
    ("text", "want"), [(None, None), ("", None), ("0\n", False), ("1\n", True)]
)
def test_modules_disabled(root: HostRoot, text: str | None, want: bool | None) -> None:
    if text is not None:
        _write(root, "/proc/sys/kernel/modules_disabled", text)
    assert modules_disabled(root) is want
    assert kernel_guard(root).modules_disabled is want


def test_guard_reads_lockdown_and_signature_enforcement(root: HostRoot) -> None:
    guard = kernel_guard(root)
    assert (guard.lockdown, guard.sig_enforce, guard.needs_signed) == (None, None, False)
    _write(root, "/sys/module/module/parameters/sig_enforce", "Y\n")
    guard = kernel_guard(root)
    assert guard.sig_enforce and guard.needs_signed
    assert guard.why_signed() == "module signature enforcement (module.sig_enforce)"
    _write(root, "/sys/module/module/parameters/sig_enforce", "N\n")
    _write(root, "/sys/kernel/security/lockdown", "none integrity [confidentiality]\n")
    guard = kernel_guard(root)
    assert guard.lockdown == "confidentiality" and guard.needs_signed
    assert guard.why_signed() == "kernel lockdown (confidentiality)"
