"""kubectl conventions and one install (issue 14): every command loads, exit codes documented,
label selectors, durations, completion, node/NAME arguments, the check pod's spec, the local check
naming its machine, arch from a release, the krew manifest."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshready.cli import registry
from meshready.cli.kube import parse_duration
from meshready.cli.machine import arch_from_release
from meshready.cli.targets import node_names
from meshready.cluster.node_pod import node_pod, parse_output
from meshready.cluster.selector import parse_selector, selector_text
from meshready.errors import InputError
from tests.conftest import CASE, REPO


@pytest.mark.parametrize("name", sorted(registry.COMMANDS))
def test_every_command_loads_and_has_help(name: str, run_cli: Callable[..., Any]) -> None:
    # One install: nothing is optional, so no command can die of an import error.
    assert isinstance(registry.load(name), object)
    result = run_cli(name, "--help")
    assert result.code == 0, result.err


def test_the_kubernetes_client_is_a_default_dependency() -> None:
    text = (REPO / "pyproject.toml").read_text()
    deps = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    for package in ("lightkube>=1.0.1", "prometheus-client", "pyyaml"):
        assert package in deps, package
    assert "cluster = []" in text  # the old extra still installs, adding nothing


def test_exit_codes_are_documented_in_help_and_readme(run_cli: Callable[..., Any]) -> None:
    help_text = run_cli("--help").out
    readme = (REPO / "README.md").read_text()
    for code in ("0", "1", "2", "3"):
        assert re.search(rf"^\s+{code}\s+\S", help_text, re.M), code
        assert re.search(rf"^\| {code} \|", readme, re.M), code
    assert "internal error" in help_text and "internal error" in readme


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("a=b", "a=b"),
        ("a==b,c!=d", "a=b,c!=d"),
        ("env in (prod, dev),!canary,tier", "env in (dev,prod),!canary,tier"),
        ("node-role.kubernetes.io/worker", "node-role.kubernetes.io/worker"),
        ("zone notin (a)", "zone notin (a)"),
    ],
)
def test_label_selectors_in_kubectl_syntax(text: str, sent: str) -> None:
    assert selector_text(parse_selector(text)) == sent


@pytest.mark.parametrize("text", ["a=b=c", "=b", "a in (x", "a in ()", "a=-x", "", "a b"])
def test_bad_label_selectors_are_input_errors(text: str) -> None:
    with pytest.raises(InputError) as err:
        parse_selector(text)
    assert err.value.exit_code == 2 and "label selector" in str(err.value)


def test_request_timeout_durations() -> None:
    assert parse_duration("15s") == 15.0 and parse_duration("2m") == 120.0
    assert parse_duration("500ms") == 0.5 and parse_duration("7") == 7.0
    assert parse_duration("0") is None  # kubectl's "no timeout"
    with pytest.raises(InputError):
        parse_duration("soon")


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(shell: str, run_cli: Callable[..., Any]) -> None:
    result = run_cli("completion", shell)
    assert result.code == 0 and "_MESHREADY_COMPLETE" in result.out


def test_completion_completes_commands() -> None:
    env = {"_MESHREADY_COMPLETE": "bash_complete", "COMP_WORDS": "meshready ch", "COMP_CWORD": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "meshready.cli.main"],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "plain,check" in done.stdout.splitlines()


def test_node_arguments() -> None:
    assert node_names(["node/a", "nodes/b.example", "no/a"]) == ("a", "b.example")
    for bad in ("pod/a", "node/", "node/Upper", "node/a_b"):
        with pytest.raises(InputError):
            node_names([bad])


@pytest.mark.parametrize(
    ("release", "arch"),
    [
        ("5.15.0-100.96.32.el8uek.aarch64", "aarch64"),
        ("5.4.17-2136.307.3.1.el8uek.x86_64", "x86_64"),
        ("4.18.0-477.10.1.el8_8.x86_64", "x86_64"),
        ("6.1.0-28-cloud-amd64", "x86_64"),
        ("6.1.0-28-arm64", "aarch64"),
        ("5.15.0-1.el8uek", None),
    ],
)
def test_arch_from_release(release: str, arch: str | None) -> None:
    assert arch_from_release(release) == arch


def test_check_pod_spec_is_read_only_and_capability_free() -> None:
    pod = node_pod("n1", "check", image="img:1", namespace="ns", args=["--host-root=/host"])
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert spec["nodeName"] == "n1" and spec["automountServiceAccountToken"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert all(m.get("readOnly") for m in container["volumeMounts"] if m["mountPath"] == "/host")
    assert "labels" in pod["metadata"] and "app.kubernetes.io/name" in pod["metadata"]["labels"]
    # never the agent's selector labels: `status` must not count it as an agent
    assert pod["metadata"]["labels"]["app.kubernetes.io/name"] != "meshready-agent"


def test_check_pod_output_is_found_among_stderr_lines() -> None:
    data, messages = parse_output('meshready: warning: a\n{\n  "schema": "x"\n}\ntrailing\n')
    assert data == {"schema": "x"} and messages == ("meshready: warning: a", "trailing")
    assert parse_output("meshready: error: boom\n") == (None, ("meshready: error: boom",))


def test_local_check_names_the_machine_and_warns_off_a_node(
    run_cli: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli("check").out.startswith("this machine (")
    # (whether this machine is a node depends on what runs here: a host root decides it)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = run_cli("check", "--host-root", str(tmp_path))
    assert result.out.startswith(f"the host root at {tmp_path}")
    assert (
        "not a Kubernetes node" in result.err and "kubectl meshready check node/NAME" in result.err
    )
    (tmp_path / "var/lib/kubelet").mkdir(parents=True)
    (tmp_path / "var/lib/kubelet/config.yaml").write_text("kind: KubeletConfiguration\n")
    node = run_cli("check", "--host-root", str(tmp_path))
    assert "not a Kubernetes node" not in node.err
    offline = run_cli(
        "check", "--lsmod", str(CASE / "lsmod.txt"), "--kernel-release",
        "5.15.0-100.96.32.el8uek.aarch64",
    )  # fmt: skip
    assert offline.out.startswith("offline data (")
    assert "(aarch64, offline)" in offline.out
    assert "not a Kubernetes node" not in offline.err


def test_offline_check_explains_once_and_ends_with_next_steps(run_cli: Callable[..., Any]) -> None:
    out = run_cli(
        "check", "--lsmod", str(CASE / "lsmod.txt"), "--kernel-release",
        "5.15.0-100.96.32.el8uek.aarch64",
    ).out  # fmt: skip
    paragraphs = [ln for ln in out.splitlines() if ln.startswith("[")]
    assert len(paragraphs) == len(set(paragraphs)) <= 3  # each explanation once, numbered
    assert out.count("whether this kernel has it as a module is unknown") <= 2
    table = out.split("next steps:", 1)[0].splitlines()
    row = next(ln for ln in table if ln.startswith("xt_REDIRECT "))
    assert "-j REDIRECT" in row and "profile:" not in row  # what the rules use, not a file
    tail = out.split("next steps:", 1)[1]
    assert "sudo modprobe -a ip_tables" in tail
    assert "kubectl meshready check node/NAME" in tail
    assert "render bootstrap --provider" in tail


def test_node_check_options_reject_local_inputs(run_cli: Callable[..., Any]) -> None:
    result = run_cli("check", "node/a", "--lsmod", str(CASE / "lsmod.txt"))
    assert result.code == 2 and "--lsmod: cannot be combined with node/NAME" in result.err
    rules = run_cli(
        "check", "node/a", "--rules", "x.rules", "--kubeconfig", str(CASE / "README.md")
    )
    assert rules.code == 2 and "rule files are on this machine" in rules.err


def test_krew_manifest() -> None:
    manifest = yaml.safe_load((REPO / "deploy/krew/meshready.yaml").read_text())
    assert manifest["apiVersion"] == "krew.googlecontainertools.github.com/v1alpha2"
    assert manifest["kind"] == "Plugin" and manifest["metadata"]["name"] == "meshready"
    spec = manifest["spec"]
    assert spec["version"].lstrip("v") == __import__("meshready").__version__
    for platform in spec["platforms"]:
        assert platform["bin"] and re.fullmatch(r"[0-9a-f]{64}|PLACEHOLDER", platform["sha256"])
        assert platform["selector"]["matchLabels"]["os"] in ("linux", "darwin")
