"""Persisting modules across reboots: ``/etc/modules-load.d/meshready.conf``.

systemd-modules-load reads ``/etc/modules-load.d/*.conf`` at boot (one module per line, ``#``
comments). The file is written atomically (a temporary file in the same directory, fsync, rename,
fsync of the directory), only when its content changes, and its content carries no date, so that
repeated runs give byte-identical files. ``remove_persisted`` removes it again, and only a file whose
header says meshready wrote it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from meshready import __version__
from meshready.actions.kernel import valid_module_name
from meshready.boundedio import SMALL_CAP, open_regular
from meshready.errors import ActionError, InputError
from meshready.host.root import HostRoot
from meshready.knowledge.requests import Backend
from meshready.safetext import one_line

PERSIST_DIR = "/etc/modules-load.d"
PERSIST_PATH = f"{PERSIST_DIR}/meshready.conf"
MARKER = "# Written by meshready"


class PersistAction(StrEnum):
    """What persisting does to the file (in plans and results, JSON as the value)."""

    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"  # the file already holds exactly this content
    NONE = "none"  # nothing to persist

    @property
    def changes(self) -> bool:
        """The file is written."""
        return self in (PersistAction.CREATE, PersistAction.UPDATE)


def header_lines(
    profile: str | None,
    backend: Backend | None,
    rules: Sequence[str] = (),
    purpose: str = "meshready fix",
) -> list[str]:
    # Every value here that comes from input lands in a comment: one line each, or refused (a
    # newline would start a line systemd-modules-load loads as a module). A backend is one of
    # Backend's values.
    if profile is not None:
        one_line(profile, "--profile", "profile name")
    for rule_file in rules:
        one_line(rule_file, "--rules", "rules file name")
    one_line(purpose, "header", "purpose")
    what = f"profile {profile}" if profile else f"rules {', '.join(rules) or '(none)'}"
    backend_text = "?" if backend is None else backend.value
    return [
        f"{MARKER} {__version__} ({purpose}): kernel modules that service-mesh traffic",
        f"# interception needs ({what}, backend {backend_text}), dependencies first.",
        "# Loaded at boot by systemd-modules-load. Rewritten by `meshready fix`, removed by",
        "# `meshready unfix`; local changes are overwritten.",
    ]


def render_persist(
    modules: Sequence[str],
    *,
    profile: str | None,
    backend: Backend | None,
    rules: Sequence[str] = (),
) -> str:
    """The file's exact content: a header, then one module per line in load order."""
    names = []
    for module in modules:
        name = valid_module_name(module)
        if name not in names:
            names.append(name)
    return "\n".join([*header_lines(profile, backend, rules), *names]) + "\n"


def read_persisted(root: HostRoot) -> str | None:
    """The file's content (None: there is none; "" when it is not UTF-8, so it is rewritten)."""
    path = root.path(PERSIST_PATH)
    if not os.path.lexists(path):
        return None
    try:
        fd = open_regular(path, PERSIST_PATH)
    except InputError as exc:
        raise ActionError(f"cannot read {exc.one_line()}") from exc
    try:
        data = os.read(fd, SMALL_CAP + 1)
    except OSError as exc:
        raise ActionError(f"cannot read {PERSIST_PATH}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if len(data) > SMALL_CAP:
        raise ActionError(f"cannot read {PERSIST_PATH}: larger than 1 MiB, not meshready's file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return ""


def persist_action(root: HostRoot, content: str | None) -> PersistAction:
    if content is None:
        return PersistAction.NONE
    current = read_persisted(root)
    if current is None:
        return PersistAction.CREATE
    return PersistAction.UNCHANGED if current == content else PersistAction.UPDATE


def _error(path: str, exc: OSError) -> ActionError:
    if exc.errno == errno.EROFS:
        return ActionError(
            f"cannot write {path}: read-only file system (this host's /etc cannot be changed; "
            "persist through the node's bootstrap instead: meshready render bootstrap, "
            "or --no-persist)"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ActionError(
            f"cannot write {path}: permission denied (needs root on the node; an immutable file, "
            "or a security module, may refuse it)"
        )
    if exc.errno == errno.ENOSPC:
        return ActionError(f"cannot write {path}: no space left on device")
    return ActionError(f"cannot write {path}: {exc.strerror}")


def check_writable(root: HostRoot) -> None:
    """Prove that the file can be written: create and remove a temporary file where it will go.

    Raises ActionError with the reason (read-only /etc, permission) before anything changes.
    """
    target = root.path(PERSIST_DIR)
    probe_dir = target
    while not probe_dir.is_dir():
        if probe_dir.parent == probe_dir:
            break
        probe_dir = probe_dir.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=".meshready-check.", dir=probe_dir)
    except OSError as exc:
        raise _error(PERSIST_PATH, exc) from exc
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def writable_hint(root: HostRoot) -> str | None:
    """Why the file could not be written, from reads only (for plans and --dry-run); None if fine."""
    target = root.path(PERSIST_DIR)
    probe_dir = target
    while not probe_dir.is_dir() and probe_dir.parent != probe_dir:
        probe_dir = probe_dir.parent
    try:
        flags = os.statvfs(probe_dir).f_flag
    except OSError as exc:
        return f"cannot check {PERSIST_DIR}: {exc.strerror}"
    if flags & os.ST_RDONLY:
        return _error(PERSIST_PATH, OSError(errno.EROFS, os.strerror(errno.EROFS))).one_line()
    if not os.access(probe_dir, os.W_OK):
        return _error(PERSIST_PATH, OSError(errno.EACCES, os.strerror(errno.EACCES))).one_line()
    return None


@dataclass(frozen=True)
class PersistResult:
    path: str  # host path
    action: PersistAction  # create, update or unchanged

    @property
    def changed(self) -> bool:
        return self.action.changes


def write_persisted(root: HostRoot, content: str) -> PersistResult:
    """Write ``content`` atomically; nothing is written when the file already holds it."""
    action = persist_action(root, content)
    if action is PersistAction.UNCHANGED:
        return PersistResult(PERSIST_PATH, PersistAction.UNCHANGED)
    directory = root.path(PERSIST_DIR)
    tmp: str | None = None
    try:
        if not directory.is_dir():
            directory.mkdir(mode=0o755, parents=True)
        fd, tmp = tempfile.mkstemp(prefix=".meshready.conf.", dir=directory)
        try:
            os.write(fd, content.encode("utf-8"))
            os.fchmod(fd, 0o644)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, root.path(PERSIST_PATH))
        tmp = None
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise _error(PERSIST_PATH, exc) from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return PersistResult(PERSIST_PATH, action)


def remove_persisted(root: HostRoot) -> bool:
    """Remove the file meshready wrote. False when there was none; ActionError for a foreign file."""
    path = root.path(PERSIST_PATH)
    current = read_persisted(root)
    if current is None:
        return False
    if MARKER not in current:
        raise ActionError(
            f"{PERSIST_PATH} was not written by meshready (no '{MARKER}' header); left in place"
        )
    try:
        path.unlink()
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno == errno.EROFS:
            raise ActionError(f"cannot remove {PERSIST_PATH}: read-only file system") from exc
        raise ActionError(f"cannot remove {PERSIST_PATH}: {exc.strerror}") from exc
    return True
