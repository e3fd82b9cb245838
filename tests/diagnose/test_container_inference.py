"""A log that says which init container wrote it stands for that mesh's rules, even unnamed."""

from __future__ import annotations

from meshready.diagnose.engine import diagnose_text
from tests.conftest import CASE


def test_founding_log_alone_names_every_sidecar_module() -> None:
    # istio-init's "/tmp/iptables-rules-<time>.txt" marks the log as istio-init's.
    diagnosis = diagnose_text((CASE / "istio-init.log").read_text(), "istio-init.log")
    top = diagnosis.findings[0]
    assert top.cause == "legacy-table-missing"
    assert top.modules[:2] == ("ip_tables", "iptable_nat")
    assert {"xt_REDIRECT", "xt_owner", "iptable_raw", "xt_CT"} <= set(top.modules)
    assert "modprobe -a ip_tables iptable_nat" in " ".join(top.fix.commands)


def test_without_a_mark_only_the_failed_table_is_named() -> None:
    log = "iptables-restore: unable to initialize table 'nat'\nexit status 2\n"
    top = diagnose_text(log, "bare.log").findings[0]
    assert top.modules == ("ip_tables", "iptable_nat")
