"""Every printed fix pasted into a real shell (dash, in a temporary root) at 60, 100 and 200
columns, and the files it writes checked byte for byte (issue 14: a wrapped `printf | tee` once
wrote an empty modules-load.d file)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli.paste import command_blocks, make_root
from tests.conftest import CASE, DATA

WIDTHS = (60, 100, 200)
CONF = "/etc/modules-load.d/meshready.conf"
FOUNDING = (
    "--lsmod",
    str(CASE / "lsmod.txt"),
    "--kernel-release",
    "5.15.0-100.96.32.el8uek.aarch64",
)
ISTIO_LOG = str(CASE / "istio-init.log")


def _expected_from_report(data: dict[str, Any]) -> tuple[bytes, str]:
    direct = [m for m in data["modules"] if m["direct"]]
    conf = "".join(
        f"{m['name']}\n" for m in direct if m["state"] in ("loaded", "loadable", "unknown")
    )
    load = [m["name"] for m in direct if m["state"] in ("loadable", "unknown")]
    return conf.encode(), "modprobe -a " + " ".join(load)


def _fits(block: str, width: int) -> None:
    for line in block.splitlines():
        # only a single word longer than the terminal may exceed it
        assert len(line) <= width or " " not in line.strip(), (width, line)


@pytest.mark.parametrize("width", WIDTHS)
def test_check_next_steps_paste_into_sh(
    width: int, tmp_path: Path, run_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    text = run_cli("check", *FOUNDING)
    assert text.code == 1
    data = json.loads(run_cli("check", *FOUNDING, "-o", "json").out)
    blocks = command_blocks(text.out)
    assert len(blocks) == 1, text.out
    _fits(blocks[0], width)
    root = make_root(tmp_path)
    done = root.run(blocks[0])
    assert done.returncode == 0, done.stderr
    conf, modprobe = _expected_from_report(data)
    assert root.file(CONF) == conf
    assert root.calls() == [modprobe]


def test_check_fix_script_is_one_runnable_script(
    tmp_path: Path, run_cli: Callable[..., Any]
) -> None:
    script = run_cli("check", *FOUNDING, "--fix-script").out
    assert script.startswith("#!/bin/sh\n") and "set -eu" in script and "sudo" not in script
    data = json.loads(run_cli("check", *FOUNDING, "-o", "json").out)
    root = make_root(tmp_path)
    done = root.run(script)
    assert done.returncode == 0, done.stderr
    conf, modprobe = _expected_from_report(data)
    assert root.file(CONF) == conf and root.calls() == [modprobe]


@pytest.mark.parametrize("width", WIDTHS)
def test_diagnose_fix_paste_into_sh(
    width: int, tmp_path: Path, run_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    text = run_cli("diagnose", ISTIO_LOG)
    assert text.code == 1
    finding = json.loads(run_cli("diagnose", ISTIO_LOG, "-o", "json").out)["findings"][0]
    node_steps = [s for s in finding["fix"]["steps"] if s["where"] == "node"]
    cluster_steps = [s for s in finding["fix"]["steps"] if s["where"] == "cluster"]
    blocks = command_blocks(text.out)
    # the node's fix, the kubectl step, the meshready route: each a block, each pasted
    assert len(blocks) == 3, text.out
    for block in blocks:
        _fits(block, width)
    node_root = make_root(tmp_path / "node")
    done = node_root.run(blocks[0])
    assert done.returncode == 0, done.stderr
    assert node_root.file(CONF) == finding["fix"]["modules_load_conf"].encode()
    # the modprobe step as the engine wrote it, words joined: exactly what the shim saw
    modprobe = " ".join(node_steps[0]["run"].replace("\\\n", " ").split()).removeprefix("sudo ")
    assert modprobe.startswith("modprobe -a ") and node_root.calls() == [modprobe]
    assert len(node_steps) == 2  # modprobe and the heredoc: nothing else ran on the "node"

    # The kubectl step needs the pod: it refuses to run without it, runs with it.
    work = make_root(tmp_path / "workstation")
    refused = work.run(blocks[1])
    assert refused.returncode != 0 and "parameter not set" in refused.stderr
    assert work.calls() == []
    done = work.run(blocks[1], env={"NAMESPACE": "apps", "POD": "web-1"})
    assert done.returncode == 0, done.stderr
    assert work.calls() == ["kubectl delete pod --namespace apps web-1"]
    assert len(cluster_steps) == 1

    meshready = make_root(tmp_path / "meshready")
    done = meshready.run(blocks[2])
    assert done.returncode == 0, done.stderr
    assert [c.split()[:2] for c in meshready.calls()] == [
        ["meshready", "check"],
        ["meshready", "fix"],
        ["meshready", "install"],
    ]


def test_diagnose_fix_script_runs_the_node_steps(
    tmp_path: Path, run_cli: Callable[..., Any]
) -> None:
    script = run_cli("diagnose", ISTIO_LOG, "--fix-script").out
    finding = json.loads(run_cli("diagnose", ISTIO_LOG, "-o", "json").out)["findings"][0]
    assert script.startswith("#!/bin/sh\n") and "kubectl delete" not in script.split("set -eu")[1]
    root = make_root(tmp_path)
    done = root.run(script)
    assert done.returncode == 0, done.stderr
    assert root.file(CONF) == finding["fix"]["modules_load_conf"].encode()


@pytest.mark.parametrize("width", WIDTHS)
def test_render_bootstrap_is_the_same_at_every_width_and_writes_the_file(
    width: int, tmp_path: Path, run_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    conf = run_cli("render", "bootstrap", "--provider", "modules-load").out
    script = run_cli("render", "bootstrap", "--provider", "oke").out
    monkeypatch.setenv("COLUMNS", "200")
    assert script == run_cli("render", "bootstrap", "--provider", "oke").out
    root = make_root(tmp_path)
    done = root.run(script)
    assert done.returncode == 0, done.stderr
    assert root.file(CONF) == conf.encode()  # byte for byte what modules-load prints
    calls = root.calls()
    assert calls[0].startswith("modprobe -a -b ip_tables") and calls[-1] == "oke-init ran"


def test_command_blocks_finds_heredocs_whole() -> None:
    text = "head:\n\ncat > /x <<'EOF'\na\nEOF\n\nafter\n"
    assert command_blocks(text) == ["cat > /x <<'EOF'\na\nEOF\n"]
    assert DATA.is_dir()
