"""One check, node-local: real assessment on real kernel data, fixing with a fake loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshready.actions.loader import LoaderKind
from meshready.actions.probe import Mode
from meshready.agent.work import ActionsFixer, AgentLoader, AgentProbeMode, FixOutcome, NodeWork
from meshready.assess.plan import needs_from_options
from meshready.cluster.published import ProbeSummary, Reason
from tests.agent.fakes import FakeLoader, FakeNode, make_node, needed_modules

SPEC = needs_from_options("istio-sidecar", (), None)


class _Probe:
    def __init__(self, ok: bool = True, error: str | None = None) -> None:
        self.ok = ok
        self.error = error
        self.calls = 0

    def probe(self) -> ProbeSummary:
        self.calls += 1
        return ProbeSummary("inplace", self.ok, redirected=self.ok, seconds=0.01, error=self.error)


@pytest.fixture
def node(tmp_path: Path) -> FakeNode:
    return make_node(tmp_path)


def _fixer(node: FakeNode, loader: FakeLoader, persist: bool = True) -> ActionsFixer:
    fixer = ActionsFixer(SPEC, node.root, LoaderKind.PYTHON, persist)
    fixer._loader = loader
    return fixer


def test_loads_in_order_persists_and_probes(node: FakeNode) -> None:
    loader = FakeLoader()
    probe = _Probe()
    work = NodeWork(SPEC, node.root, fixer=_fixer(node, loader), prober=probe)
    result = work.check()
    needed = needed_modules(make_node(node.base.parent / "twin"))
    assert result.ready is True
    assert result.reason is Reason.VERIFIED
    assert loader.calls == needed  # dependencies first, nothing else
    assert list(result.fix.loaded) == needed
    assert node.loaded() == set(needed)
    persisted = node.persisted()
    assert persisted is not None and persisted.splitlines()[-len(needed) :] == needed
    assert probe.calls == 1
    assert [e.reason for e in result.events] == ["ModulesLoaded"]
    pub = result.publication("boot-1")
    assert pub.labels() == {"meshready.io/ready": "true", "meshready.io/backend": "legacy"}
    assert pub.report["bootID"] == "boot-1" and pub.report["persisted"] == needed
    assert pub.report["modules"]["loaded"] == needed

    # The next check has nothing to do.
    again = work.check()
    assert again.ready and not again.fix.loaded and not again.events
    assert loader.calls == needed


def test_absent_module_is_missing_and_nothing_is_loaded(node: FakeNode) -> None:
    dep = node.host / "lib" / "modules" / node.release / "modules.dep"
    dep.write_text("".join(line + "\n" for line in dep.read_text().splitlines()
                           if not line.startswith("kernel/net/netfilter/xt_owner")))  # fmt: skip
    loader = FakeLoader()
    result = NodeWork(SPEC, node.root, fixer=_fixer(node, loader), prober=_Probe()).check()
    assert result.ready is False
    assert result.reason is Reason.MODULES_MISSING
    assert "xt_owner" in result.message
    assert loader.calls == []  # all or nothing: no partial fix


def test_kernel_refusal_is_load_failed_and_rolled_back(node: FakeNode) -> None:
    loader = FakeLoader(fail=frozenset({"xt_owner"}))
    work = NodeWork(SPEC, node.root, fixer=_fixer(node, loader), prober=_Probe())
    result = work.check()
    assert result.ready is False and result.reason is Reason.LOAD_FAILED
    assert "xt_owner" in result.message and "security module" in result.message
    assert [e.reason for e in result.events] == ["ModuleLoadFailed"]
    assert node.loaded() == set()  # apply_fix unloaded what it had loaded
    assert node.persisted() is None
    # The same failure again: no second event.
    assert work.check().events == ()


def test_loading_off(node: FakeNode) -> None:
    result = NodeWork(SPEC, node.root, fixer=None, prober=None).check()
    assert result.ready is False and result.reason is Reason.NOT_LOADED
    assert "loading is off" in result.message


def test_modules_disabled_blocks_loading(node: FakeNode) -> None:
    (node.proc / "sys" / "kernel" / "modules_disabled").write_text("1\n")
    loader = FakeLoader()
    result = NodeWork(SPEC, node.root, fixer=_fixer(node, loader), prober=None).check()
    assert result.reason is Reason.LOAD_FAILED and "modules_disabled" in result.message
    assert loader.calls == []


def test_probe_failure_makes_the_node_not_ready(node: FakeNode) -> None:
    node.load(*needed_modules(node))
    probe = _Probe(ok=False, error="application connection: refused")
    result = NodeWork(SPEC, node.root, fixer=None, prober=probe).check()
    assert result.ready is False and result.reason is Reason.PROBE_FAILED
    assert "refused" in result.message
    off = NodeWork(SPEC, node.root, fixer=None, prober=None).check()
    assert off.ready is True and off.reason is Reason.MODULES_READY


def test_ready_node_gets_its_persisted_file(node: FakeNode) -> None:
    node.load(*needed_modules(node))
    loader = FakeLoader()
    result = NodeWork(SPEC, node.root, fixer=_fixer(node, loader), prober=None).check()
    assert result.ready and loader.calls == []
    assert node.persisted() is not None
    assert [e.reason for e in result.events] == ["ModulesPersisted"]
    no_persist = make_node(node.base.parent / "np", loaded=tuple(needed_modules(node)))
    plain = NodeWork(SPEC, no_persist.root, fixer=_fixer(no_persist, loader, persist=False),
                     prober=None).check()  # fmt: skip
    assert plain.ready and no_persist.persisted() is None


def test_assessment_failure_is_unknown_not_a_crash(node: FakeNode) -> None:
    (node.proc / "modules").write_text("this is not /proc/modules\n")
    result = NodeWork(SPEC, node.root, fixer=None, prober=None).check()
    assert result.ready is None and result.reason is Reason.CHECK_FAILED
    pub = result.publication(None)
    assert pub.condition_status == "Unknown"
    assert pub.labels() == {"meshready.io/ready": "unknown"}
    assert "cannot assess" in pub.message


def test_fixer_protocol_errors_become_load_failed(node: FakeNode) -> None:
    from meshready.errors import ActionError

    class Broken:
        persist = False

        def fix(self, report: object, facts: object) -> FixOutcome:
            raise ActionError("boom")

    result = NodeWork(SPEC, node.root, fixer=Broken(), prober=None).check()
    assert result.reason is Reason.LOAD_FAILED and "boom" in result.message


def test_agent_loader_is_a_loader_kind_or_none() -> None:
    """``--loader``: every LoaderKind, in its order, then none (no loading at all)."""
    assert [m.value for m in AgentLoader] == ["auto", "modprobe", "python", "none"]
    assert [m.loader_kind() for m in AgentLoader] == [*LoaderKind, None]


def test_agent_probe_mode_is_a_probe_mode_or_off() -> None:
    """``--probe-mode``: inplace, netns (the probe's modes), then off (no probe)."""
    assert [m.value for m in AgentProbeMode] == ["inplace", "netns", "off"]
    assert [m.probe_mode() for m in AgentProbeMode] == [Mode.INPLACE, Mode.NETNS, None]
