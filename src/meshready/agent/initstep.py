"""Loading in a container that runs and exits: the agent pod's init container, and what the
long-running agent learns from it.

No long-running process holds CAP_SYS_MODULE (``init_module`` takes a buffer: a compromised
process holding it could load anything). The DaemonSet's init container (``meshready agent
--init``) is the only one with it: it assesses, loads and persists once, writes what it did to a
small JSON record on a pod-local memory volume (``--fix-record``), and exits 0 (a node it cannot
fix must still get an agent that says why; only bad input exits 2). The agent container, without
SYS_MODULE, never loads (``--loader none``): it reads that record and publishes it (loaded
modules, load failures as ``LoadFailed``), and assesses, probes and publishes as before.

When does loading run again?

- Reboot: the kubelet creates a new sandbox for every pod after a node restarts, and a new
  sandbox runs the init containers again (kubernetes.io/docs/concepts/workloads/pods/init-containers,
  "Pod restart reasons"). The record lives on a ``medium: Memory`` emptyDir, gone with the reboot
  too, and it carries the boot ID it was made in: a record of another boot is ignored. Before
  the kubelet even starts, systemd-modules-load has loaded the persisted list.
- A changed need (profile, rules, backend, version): these are DaemonSet arguments, so a change
  rolls out new pods, whose init containers load for the new need.
- Modules unloaded by hand while the pod runs: the agent reports ``ModulesNotLoaded`` (the node
  is not ready, the condition says how to get them back: restart the agent pod), and never loads
  them itself. Re-adding the capability for this rare case would undo the point.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshready.agent.work import CheckResult, FixOutcome
from meshready.assess.report import Report
from meshready.boundedio import read_text
from meshready.cluster.published import NodeEvent, cut_message
from meshready.errors import InputError
from meshready.host.facts import HostFacts

log = logging.getLogger("meshready.agent")

RECORD_SCHEMA = "meshready.io/fix-record/v1"
RECORD_CAP = 256 * 1024


@dataclass(frozen=True)
class FixRecord:
    boot_id: str | None
    loaded: tuple[str, ...]
    failed: dict[str, str]
    persisted: tuple[str, ...] | None
    persist_changed: bool
    skipped: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": RECORD_SCHEMA,
            "bootID": self.boot_id,
            "loaded": list(self.loaded),
            "failed": dict(self.failed),
            "persisted": list(self.persisted) if self.persisted is not None else None,
            "persistChanged": self.persist_changed,
            "skipped": self.skipped,
        }

    @classmethod
    def from_result(cls, result: CheckResult, boot_id: str | None) -> FixRecord:
        fix = result.fix
        failed = dict(fix.failed)
        if result.ready is None and result.error:
            failed = {"check": result.error}
        return cls(
            boot_id=boot_id,
            loaded=fix.loaded,
            failed=failed,
            persisted=fix.persisted,
            persist_changed=fix.persist_changed,
            skipped=fix.skipped,
        )


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")
    return tuple(value)


def parse_record(text: str, source: str) -> FixRecord:
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("schema") != RECORD_SCHEMA:
            raise ValueError(f"not a {RECORD_SCHEMA} record")
        failed = data.get("failed") or {}
        if not isinstance(failed, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in failed.items()
        ):
            raise ValueError("failed: expected strings")
        persisted = data.get("persisted")
        boot = data.get("bootID")
        skipped = data.get("skipped")
        return FixRecord(
            boot_id=boot if isinstance(boot, str) else None,
            loaded=_strings(data.get("loaded") or []),
            failed={k: cut_message(v) for k, v in failed.items()},
            persisted=_strings(persisted) if persisted is not None else None,
            persist_changed=data.get("persistChanged") is True,
            skipped=skipped if isinstance(skipped, str) else None,
        )
    except (ValueError, RecursionError) as exc:
        raise InputError(source, f"not a fix record ({exc})") from exc


def write_record(path: Path, record: FixRecord) -> None:
    """Atomically: the agent never reads half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".fix-record.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record.to_dict(), fh, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class RecordedFixer:
    """The agent's Fixer without CAP_SYS_MODULE: it loads nothing and reports what the init
    container did in this boot (the record at PATH), or that loading is left to it."""

    persist = False  # the init container persists

    def __init__(self, path: Path, boot_id: Callable[[], str | None]) -> None:
        self.path = path
        self._boot_id = boot_id  # a callable returning the current boot ID (or None)
        self._announced = False

    def record(self) -> FixRecord | None:
        if not os.path.lexists(self.path):
            return None
        try:
            record = parse_record(read_text(self.path, cap=RECORD_CAP), str(self.path))
        except InputError as exc:
            log.warning("ignoring the init container's record: %s", exc.one_line())
            return None
        now = self._boot_id()
        if record.boot_id is not None and now is not None and record.boot_id != now:
            return None  # made in another boot: says nothing about this one
        return record

    def fix(self, report: Report, facts: HostFacts) -> FixOutcome:
        record = self.record()
        why = (
            "loading runs only in the agent pod's init container, at pod start; "
            "restart the agent pod to load again"
        )
        if record is None:
            return FixOutcome(skipped=f"no record of the init container in this boot; {why}")
        return FixOutcome(failed=dict(record.failed), persisted=record.persisted, skipped=why)

    def observed(self) -> FixOutcome:
        """For a ready node: what the init container persisted."""
        record = self.record()
        if record is None:
            return FixOutcome(skipped="ready")
        return FixOutcome(persisted=record.persisted, skipped="ready")

    def startup_events(self) -> list[NodeEvent]:
        """Once: what the init container changed, as the agent used to report it itself."""
        if self._announced:
            return []
        self._announced = True
        record = self.record()
        if record is None:
            return []
        events = []
        if record.loaded:
            where = " and persisted them" if record.persist_changed else ""
            events.append(
                NodeEvent(
                    "Normal",
                    "ModulesLoaded",
                    cut_message(f"init container loaded {', '.join(record.loaded)}{where}"),
                )
            )
        elif record.persist_changed:
            events.append(
                NodeEvent("Normal", "ModulesPersisted", "wrote /etc/modules-load.d/meshready.conf")
            )
        return events


def run_init(result: CheckResult, path: Path | None, boot_id: str | None) -> int:
    """Record the init step's result; exit 0 whatever the node's state (the agent reports it)."""
    record = FixRecord.from_result(result, boot_id)
    if path is not None:
        write_record(path, record)
    state = "ready" if result.ready else "not ready"
    log.info(
        "init: node %s (%s); loaded %s; persisted %s%s",
        state,
        result.reason.value,
        ", ".join(record.loaded) or "nothing",
        "yes" if record.persist_changed else "unchanged",
        f"; failed: {next(iter(record.failed.values()))}" if record.failed else "",
    )
    return 0
