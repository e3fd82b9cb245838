from __future__ import annotations

import errno
import os
import tempfile

import pytest

from meshready import __version__
from meshready.actions.persist import (
    PERSIST_PATH,
    PersistAction,
    check_writable,
    read_persisted,
    remove_persisted,
    render_persist,
    writable_hint,
    write_persisted,
)
from meshready.errors import ActionError
from meshready.knowledge.requests import Backend
from tests.actions.fakehost import FakeHost, persisted_modules

MODULES = ["x_tables", "ip_tables", "iptable_nat", "xt_REDIRECT"]


def content() -> str:
    return render_persist(MODULES, profile="istio-sidecar", backend=Backend.LEGACY)


def test_content_names_writer_and_is_date_free() -> None:
    text = content()
    header = [line for line in text.splitlines() if line.startswith("#")]
    joined = " ".join(header)
    assert f"meshready {__version__}" in joined
    assert "profile istio-sidecar" in joined and "backend legacy" in joined
    assert "meshready unfix" in joined
    assert persisted_modules(text) == MODULES
    assert text == content()  # byte-identical on every run
    assert not any(ch.isdigit() for ch in joined.replace(__version__, ""))  # no date


def test_render_refuses_bad_names() -> None:
    with pytest.raises(ActionError):
        render_persist(["ip_tables", "../../etc/shadow"], profile=None, backend=Backend.LEGACY)
    with pytest.raises(ActionError):
        render_persist(["ip_tables\nevil"], profile=None, backend=Backend.LEGACY)


def test_write_creates_then_is_idempotent(host: FakeHost) -> None:
    first = write_persisted(host.root, content())
    assert first.action is PersistAction.CREATE and first.changed
    path = host.root.path(PERSIST_PATH)
    assert path.read_text() == content()
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    inode, mtime = path.stat().st_ino, path.stat().st_mtime_ns
    second = write_persisted(host.root, content())
    assert second.action is PersistAction.UNCHANGED and not second.changed
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == (inode, mtime)  # not rewritten
    assert sorted(p.name for p in path.parent.iterdir()) == ["meshready.conf"]  # no temp files


def test_update_replaces_atomically(host: FakeHost) -> None:
    write_persisted(host.root, content())
    old_inode = host.root.path(PERSIST_PATH).stat().st_ino
    new = render_persist([*MODULES, "xt_owner"], profile="istio-sidecar", backend=Backend.LEGACY)
    assert write_persisted(host.root, new).action is PersistAction.UPDATE
    assert read_persisted(host.root) == new
    assert host.root.path(PERSIST_PATH).stat().st_ino != old_inode  # renamed into place


def test_failed_write_leaves_nothing(host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace

    def boom(src: str, dst: str) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(ActionError, match="read-only file system"):
        write_persisted(host.root, content())
    monkeypatch.setattr(os, "replace", real_replace)
    d = host.root.path("/etc/modules-load.d")
    assert list(d.iterdir()) == []  # the temporary file was removed


def test_check_writable_real_and_read_only(host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    check_writable(host.root)  # creates and removes a probe file
    assert not host.root.path("/etc/modules-load.d").exists()
    assert list(host.root.path("/etc").iterdir()) == []
    assert writable_hint(host.root) is None

    def rofs(*args: object, **kwargs: object) -> tuple[int, str]:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", rofs)
    with pytest.raises(ActionError) as err:
        check_writable(host.root)
    assert "read-only file system" in err.value.one_line()
    assert "\n" not in err.value.one_line()


def test_remove(host: FakeHost) -> None:
    assert remove_persisted(host.root) is False
    write_persisted(host.root, content())
    assert remove_persisted(host.root) is True
    assert not host.root.path(PERSIST_PATH).exists()
    assert remove_persisted(host.root) is False


def test_remove_refuses_foreign_file(host: FakeHost) -> None:
    host.write(PERSIST_PATH, "ip_tables\n")
    with pytest.raises(ActionError, match="not written by meshready"):
        remove_persisted(host.root)
    assert host.root.path(PERSIST_PATH).exists()
