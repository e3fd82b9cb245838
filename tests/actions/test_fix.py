from __future__ import annotations

import dataclasses
import errno
import os

import pytest

from meshready.actions import persist
from meshready.actions.fix import FixOptions, apply_fix, plan_fix
from meshready.actions.persist import PERSIST_PATH, PersistAction
from meshready.assess.report import State
from meshready.errors import ActionError, InputError
from meshready.knowledge.requests import Backend
from tests.actions.fakehost import FakeHost, FakeLoader, persisted_modules

ISTIO_61 = [
    "x_tables", "ip_tables", "crc32c_intel", "libcrc32c", "nf_defrag_ipv4", "nf_defrag_ipv6",
    "nf_conntrack", "nf_nat", "iptable_nat", "xt_tcpudp", "xt_REDIRECT", "xt_multiport",
    "xt_owner", "iptable_raw", "xt_CT", "ip6_tables", "ip6table_nat", "ip6table_raw",
]  # fmt: skip


def test_plan_loads_in_dependency_order(host: FakeHost) -> None:
    report = host.report()
    plan = plan_fix(report, host.root)
    assert plan.ok, plan.blockers
    assert plan.load == report.load_order == tuple(ISTIO_61)
    assert plan.persist_action is PersistAction.CREATE
    assert plan.persist_content is not None
    assert persisted_modules(plan.persist_content) == ISTIO_61
    assert plan.changes[-1].startswith(f"create {PERSIST_PATH}")
    assert type(plan.to_dict()["persist_action"]) is str  # JSON carries the value
    # reads only: nothing was written
    assert not host.root.path("/etc/modules-load.d").exists()


def test_plan_skips_loaded_but_persists_them(host: FakeHost) -> None:
    host.set_loaded(["x_tables", "ip_tables", "nf_conntrack", "libcrc32c", "crc32c_intel",
                     "nf_defrag_ipv4", "nf_defrag_ipv6"])  # fmt: skip
    plan = plan_fix(host.report(), host.root)
    assert "ip_tables" not in plan.load and "ip_tables" in plan.present
    assert plan.load[0] == "nf_nat"
    assert plan.persist_content is not None
    assert persisted_modules(plan.persist_content) == ISTIO_61  # loaded now, needed at boot too


def test_apply_loads_and_persists_then_is_idempotent(host: FakeHost) -> None:
    loader = FakeLoader(host)
    plan = plan_fix(host.report(), host.root)
    result = apply_fix(plan, host.index, host.root, loader)
    assert loader.calls == ISTIO_61
    assert result.loaded == tuple(ISTIO_61)
    assert result.persist_action is PersistAction.CREATE and result.persist_changed
    assert result.to_dict()["persist_action"] == "create"
    assert type(result.to_dict()["persist_action"]) is str
    assert host.root.path(PERSIST_PATH).read_text() == plan.persist_content
    after = host.report()
    assert after.ready
    again = plan_fix(after, host.root)
    assert (
        again.nothing_to_do and again.persist_action is PersistAction.UNCHANGED and again.load == ()
    )


def test_no_persist(host: FakeHost) -> None:
    plan = plan_fix(host.report(), host.root, FixOptions(persist=False))
    assert plan.persist_path is None and plan.persist_content is None
    result = apply_fix(plan, host.index, host.root, FakeLoader(host))
    assert result.persist_action is PersistAction.NONE and result.persist_path is None
    assert not host.root.path(PERSIST_PATH).exists()


def test_failure_midway_rolls_back_and_writes_nothing(host: FakeHost) -> None:
    host.set_loaded(["x_tables"], refcounts={"x_tables": 3})  # there before: must stay
    loader = FakeLoader(host, fail_on="xt_owner", fail_message="cannot load xt_owner: denied")
    plan = plan_fix(host.report(), host.root)
    with pytest.raises(ActionError) as err:
        apply_fix(plan, host.index, host.root, loader)
    message = err.value.one_line()
    assert message.startswith("cannot load xt_owner: denied; nothing was persisted")
    assert "unloaded what this run had loaded" in message
    # reverse order, only what this run loaded
    loaded_by_run = ISTIO_61[1 : ISTIO_61.index("xt_owner")]
    assert loader.unloaded == list(reversed(loaded_by_run))
    assert host.loaded() == ["x_tables"]
    assert not host.root.path(PERSIST_PATH).exists()
    assert not host.root.path("/etc/modules-load.d").exists() or not any(
        host.root.path("/etc/modules-load.d").iterdir()
    )


def test_rollback_keeps_modules_in_use(host: FakeHost) -> None:
    class Sticky(FakeLoader):
        def load(self, module, index, root):  # type: ignore[no-untyped-def]
            super().load(module, index, root)
            if module == "nf_conntrack":  # something else starts using it meanwhile
                host.set_loaded(host.loaded(), refcounts={"nf_conntrack": 1})

    loader = Sticky(host, fail_on="iptable_raw")
    plan = plan_fix(host.report(), host.root)
    with pytest.raises(ActionError, match="left loaded because in use: nf_conntrack"):
        apply_fix(plan, host.index, host.root, loader)
    assert "nf_conntrack" in host.loaded()
    assert "nf_conntrack" not in loader.unloaded


def test_persist_failure_rolls_back_loads(host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    def rofs(src: str, dst: str) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(persist.os, "replace", rofs)
    loader = FakeLoader(host)
    plan = plan_fix(host.report(), host.root)
    with pytest.raises(ActionError, match=r"read-only file system.*nothing was persisted"):
        apply_fix(plan, host.index, host.root, loader)
    assert host.loaded() == []
    assert not host.root.path(PERSIST_PATH).exists()


@pytest.mark.parametrize(
    ("setup", "expect"),
    [
        (
            lambda h: h.write("/proc/sys/kernel/modules_disabled", "1\n"),
            "kernel.modules_disabled=1",
        ),
        (lambda h: h.module_path("xt_owner").unlink(), "module xt_owner is absent on disk"),
        (
            lambda h: (
                h.write("/sys/kernel/security/lockdown", "none [integrity] confidentiality\n"),
                h.module_path("xt_CT").write_bytes(b"\x7fELF unsigned"),
            ),
            "kernel lockdown (integrity) loads only signed modules",
        ),
        (
            lambda h: (
                h.write("/sys/module/module/parameters/sig_enforce", "Y\n"),
                h.module_path("xt_CT").write_bytes(b"\x7fELF unsigned"),
            ),
            "module signature enforcement",
        ),
    ],
    ids=["modules-disabled", "absent-on-disk", "lockdown-unsigned", "sig-enforce-unsigned"],
)
def test_preconditions_block_before_any_change(host: FakeHost, setup, expect) -> None:  # type: ignore[no-untyped-def]
    setup(host)
    plan = plan_fix(host.report(), host.root)
    assert not plan.ok
    assert any(expect in b for b in plan.blockers), plan.blockers
    loader = FakeLoader(host)
    with pytest.raises(ActionError) as err:
        apply_fix(plan, host.index, host.root, loader)
    assert expect in err.value.one_line()
    assert "nothing was changed" in err.value.one_line()
    assert loader.calls == [] and host.loaded() == []
    assert not host.root.path(PERSIST_PATH).exists()


def test_read_only_etc_blocks(host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    class RO:
        f_flag = os.ST_RDONLY

    monkeypatch.setattr(persist.os, "statvfs", lambda path: RO())
    plan = plan_fix(host.report(), host.root)
    assert any("read-only file system" in b for b in plan.blockers)
    # --no-persist needs no writable /etc
    assert plan_fix(host.report(), host.root, FixOptions(persist=False)).ok


def test_signed_modules_pass_lockdown(host: FakeHost) -> None:
    host.write("/sys/kernel/security/lockdown", "none [integrity] confidentiality\n")
    assert plan_fix(host.report(), host.root).ok  # the fake files carry the signature marker


def test_absent_module_cannot_be_fixed(host: FakeHost) -> None:
    dep = host.moddir / "modules.dep"
    dep.write_text("".join(line + "\n" for line in dep.read_text().splitlines()
                           if "xt_owner" not in line))  # fmt: skip
    report = host.report()
    assert any(m.name == "xt_owner" and m.state is State.ABSENT for m in report.modules)
    plan = plan_fix(report, host.root)
    assert plan.blockers and "xt_owner (absent)" in plan.blockers[0]


def test_allow_adds_module_with_dependencies(host: FakeHost) -> None:
    plan = plan_fix(host.report(), host.root, FixOptions(allow=("br_netfilter",)))
    assert plan.ok
    assert plan.load[-1] == "br_netfilter"
    for dep in ("bridge", "stp", "llc"):
        assert dep in plan.load and plan.load.index(dep) < plan.load.index("br_netfilter")
    assert "br_netfilter" in plan.allowed
    assert plan.persist_content is not None and "br_netfilter" in plan.persist_content


@pytest.mark.parametrize("name", ["../../../bin/sh", "ip_tables;reboot", "-r", "no_such_module"])
def test_allow_rejects_bad_names(host: FakeHost, name: str) -> None:
    with pytest.raises(InputError):
        plan_fix(host.report(), host.root, FixOptions(allow=(name,)))


def test_apply_refuses_names_outside_the_plan(host: FakeHost) -> None:
    plan = plan_fix(host.report(), host.root)
    forged = dataclasses.replace(plan, load=(*plan.load, "br_netfilter"))
    loader = FakeLoader(host)
    with pytest.raises(ActionError, match="refusing br_netfilter"):
        apply_fix(forged, host.index, host.root, loader)
    assert loader.calls == []


def test_nftables_profile(host: FakeHost) -> None:
    plan = plan_fix(host.report("istio-sidecar-nftables"), host.root)
    assert plan.ok
    assert plan.load[0] == "nfnetlink"
    assert {"nf_tables", "nft_chain_nat", "nft_redir", "nft_ct"} <= set(plan.load)
    assert not any(m.startswith(("ip_tables", "xt_")) for m in plan.load)


def test_plan_carries_the_backend_member_and_serialises_its_value(host: FakeHost) -> None:
    plan = plan_fix(host.report(backend=Backend.NFT), host.root)
    assert plan.backend is Backend.NFT
    data = plan.to_dict()
    assert data["backend"] == "nft" and type(data["backend"]) is str
    assert plan.persist_content is not None
    assert "backend nft" in plan.persist_content  # the header of the persisted file
    unknown = dataclasses.replace(plan, backend=None)
    assert unknown.to_dict()["backend"] == "?"


def test_errors_keep_their_cause(host: FakeHost, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InputError) as bad_name:
        plan_fix(host.report(), host.root, FixOptions(allow=("ip_tables;reboot",)))
    assert isinstance(bad_name.value.__cause__, ActionError)

    def rofs(src: str, dst: str) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(persist.os, "replace", rofs)
    with pytest.raises(ActionError) as failed:
        apply_fix(plan_fix(host.report(), host.root), host.index, host.root, FakeLoader(host))
    assert failed.value.__cause__ is not None
    assert str(failed.value).count("nothing was persisted") == 1
