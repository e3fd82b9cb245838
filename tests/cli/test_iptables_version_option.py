"""`--iptables-version` and `needs --include`: the iptables-nft model per iptables version."""

from __future__ import annotations

import json

from tests.conftest import DEBIAN_61_AMD64


def _needs(run_cli, *extra: str):  # type: ignore[no-untyped-def]
    args = ["needs", "--profile", "istio-ambient", "--backend", "nft"]
    return run_cli(*args, "--modules-dir", str(DEBIAN_61_AMD64), *extra)


def test_needs_include_required_leaves_recommended_out(run_cli) -> None:  # type: ignore[no-untyped-def]
    everything = _needs(run_cli).out.split()
    required = _needs(run_cli, "--include", "required").out.split()
    assert "xt_mark" in everything and "xt_mark" not in required
    assert set(required) < set(everything)
    old = _needs(run_cli, "--include", "required", "--iptables-version", "1.8.7").out.split()
    assert "xt_mark" in old


def test_needs_json_says_which_iptables_was_assumed(run_cli) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(_needs(run_cli, "-o", "json").out)
    assert data["iptables"]["version"] == "1.8.10"
    assert data["iptables"]["measured_as"] == "1.8.9"
    assert data["iptables"]["source"].startswith("profile istio-ambient")
    mark = next(m for m in data["modules"] if m["name"] == "xt_mark")
    assert mark["need"] == "recommended" and "revision 0 not supported" in mark["warning"]
    assert "xt_mark" in data["recommended"] and "xt_mark" not in data["required"]
    given = json.loads(_needs(run_cli, "-o", "json", "--iptables-version", "v1.8.11").out)
    assert given["iptables"] == {
        "version": "1.8.11",
        "source": "--iptables-version",
        "measured_as": "1.8.11",
    }


def test_check_is_ready_without_recommended_modules(run_cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    required = _needs(run_cli, "--include", "required").out.split()
    lsmod = tmp_path / "lsmod.txt"
    lsmod.write_text("Module Size Used by\n" + "".join(f"{m} 16384 0\n" for m in required))
    args = ["check", "--profile", "istio-ambient", "--backend", "nft", "-o", "json"]
    args += ["--kernel-release", DEBIAN_61_AMD64.name, "--modules-dir", str(DEBIAN_61_AMD64)]
    ready = run_cli(*args, "--lsmod", str(lsmod))
    data = json.loads(ready.out)
    assert ready.code == 0, data["summary"]
    assert data["ready"] and data["missing"] == [] and data["recommended"] == ["xt_mark"]
    assert data["iptables"]["version"] == "1.8.10"
    # the same node with the mesh image's iptables 1.8.7: xt_mark is required
    old = run_cli(*args, "--lsmod", str(lsmod), "--iptables-version", "1.8.7")
    data = json.loads(old.out)
    assert old.code == 1 and data["missing"] == ["xt_mark"] and data["recommended"] == []


def test_bad_iptables_version_is_a_one_line_error(run_cli) -> None:  # type: ignore[no-untyped-def]
    result = _needs(run_cli, "--iptables-version", "1.8")
    assert result.code == 2
    assert result.err.startswith("meshready: error: --iptables-version: ")
    assert len(result.err.strip().splitlines()) == 1
