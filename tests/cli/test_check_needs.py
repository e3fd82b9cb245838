"""The CLI as users run it: exit codes, JSON schema, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CASE, DEBIAN_61_AMD64, REPO, shared_dir


def test_check_on_this_machine_is_ready_with_everything_built_in(run_cli) -> None:  # type: ignore[no-untyped-def]
    # This machine's kernel has no module support and netfilter built in (see docs/testing.md).
    result = run_cli("check", "-o", "json")
    data = json.loads(result.out)
    assert result.code == 0, data["summary"]
    assert data["ready"] is True
    assert data["schema"] == "meshready.io/report/v1"
    assert data["modules"] and all(m["state"] == "builtin" for m in data["modules"])
    assert {"ip_tables", "iptable_nat", "xt_REDIRECT", "xt_owner"} <= {
        m["name"] for m in data["modules"]
    }


def test_check_human_table(run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli(
        "check", "--lsmod", str(CASE / "lsmod.txt"), "--kernel-release", "5.15.0-1.el8uek"
    )
    assert result.code == 1
    assert "NOT READY" in result.out and "ip_tables" in result.out


def test_needs_lines_and_json_contract(run_cli) -> None:  # type: ignore[no-untyped-def]
    rules = str(shared_dir() / "rules" / "sidecar-iptables" / "dns-uid-gid.v4.rules")
    lines = run_cli("needs", "--rules", rules, "--modules-dir", str(DEBIAN_61_AMD64))
    assert lines.code == 0
    order = lines.out.split()
    assert order.index("x_tables") < order.index("ip_tables") < order.index("iptable_nat")
    result = run_cli("needs", "--rules", rules, "--modules-dir", str(DEBIAN_61_AMD64), "-o", "json")
    data = json.loads(result.out)
    assert data["kernel_release"] == "6.1.0-56-cloud-amd64"
    assert data["load_order"] == order
    assert set(data["direct"]) == {
        "ip_tables",
        "iptable_nat",
        "iptable_raw",
        "xt_CT",
        "xt_REDIRECT",
        "xt_multiport",
        "xt_owner",
        "xt_tcpudp",
    }
    assert data["unresolved"] == []
    owner = next(m for m in data["modules"] if m["name"] == "xt_owner")
    assert owner["direct"] and owner["requested_by"] == ["ipt_owner"] and not owner["builtin"]


def test_profiles_list(run_cli) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("profiles", "-o", "json")
    data = json.loads(result.out)
    assert data["schema"] == "meshready.io/profiles/v1"
    names = {p["name"] for p in data["profiles"]}
    assert {"istio-sidecar", "istio-ambient", "istio-sidecar-nftables", "linkerd"} <= names


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["check", "--rules", "/nonexistent.rules"], "/nonexistent.rules: no such file"),
        (["check", "--profile", "nope"], "unknown profile 'nope'"),
        (["check", "--lsmod", "LSMOD"], "--kernel-release"),
        (["check", "--lsmod", "BAD_LSMOD", "--kernel-release", "5.15"], "BAD_LSMOD:2:"),
        (["check", "--rules", "BAD_RULES"], "BAD_RULES:2:"),
        (["needs", "--rules", "BAD_RULES", "--modules-dir", "/nonexistent"], "BAD_RULES:2:"),
        (["needs", "--modules-dir", "/tmp"], "no modules.dep here"),
        (
            ["check", "--profile", "istio-sidecar-nftables", "--backend", "legacy"],
            "runs on nftables",
        ),
        (["check", "--bogus"], "No such option"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    run_cli,
    tmp_path: Path,
    args: list[str],
    fragment: str,  # type: ignore[no-untyped-def]
) -> None:
    bad_lsmod = tmp_path / "lsmod.txt"
    bad_lsmod.write_text("Module Size Used by\nxt_owner lots 1\n")
    bad_rules = tmp_path / "bad.rules"
    bad_rules.write_text("*nat\n-A OUTPUT -m\nCOMMIT\n")
    subst = {
        "LSMOD": str(CASE / "lsmod.txt"),
        "BAD_LSMOD": str(bad_lsmod),
        "BAD_RULES": str(bad_rules),
    }
    argv = [subst.get(a, a) for a in args]
    result = run_cli(*argv)
    assert result.code == 2
    err = result.err.strip()
    assert fragment.replace("BAD_LSMOD", str(bad_lsmod)).replace("BAD_RULES", str(bad_rules)) in err
    assert "Traceback" not in err
    if "No such option" not in fragment:
        assert err.count("\n") == 0 and err.startswith("meshready: error: ")


def test_console_scripts_and_kubectl_plugin_name() -> None:
    bindir = Path(sys.executable).parent
    for name in ("meshready", "kubectl-meshready"):
        proc = subprocess.run(
            [str(bindir / name), "--help"], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stderr
        assert "check" in proc.stdout
    proc = subprocess.run(
        [str(bindir / "kubectl-meshready"), "nope"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2 and "kubectl meshready" in proc.stderr
    assert (REPO / "pyproject.toml").is_file()


def test_malformed_index_and_config_name_file_and_line(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    moddir = tmp_path / "6.1.0-x"
    moddir.mkdir()
    (moddir / "modules.dep").write_text("kernel/a.ko:\nnot a dep line\n")
    result = run_cli("needs", "--modules-dir", str(moddir))
    assert result.code == 2
    assert result.err.strip() == (
        f"meshready: error: {moddir}/modules.dep:2: expected 'path.ko: deps...', "
        "got 'not a dep line'"
    )
    config = tmp_path / "config"
    config.write_text("CONFIG_MODULES=y\ngarbage\n")
    result = run_cli(
        "check",
        "--lsmod",
        str(CASE / "lsmod.txt"),
        "--kernel-release",
        "5.15",
        "--kernel-config",
        str(config),
    )
    assert result.code == 2 and f"{config}:2: not a kernel config line" in result.err
