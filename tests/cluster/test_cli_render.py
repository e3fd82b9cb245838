"""`meshready render manifests`: the same objects as the library, options parsed like kubectl's."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from meshready.cluster.manifests import (
    ManifestOptions,
    PodProbeMode,
    kustomize_files,
    policy_kustomize_files,
    render_objects,
    to_yaml,
)


def test_defaults_print_the_library_objects(run_cli: Callable[..., Any]) -> None:
    result = run_cli("render", "manifests")
    assert result.code == 0, result.err
    assert result.out == to_yaml(render_objects())


def test_options(run_cli: Callable[..., Any]) -> None:
    result = run_cli(
        "render", "manifests", "-n", "mesh", "--image", "r.example/mr:1", "--profile", "linkerd",
        "--no-persist", "--taint-key", "example.com/gate:NoExecute", "--node-selector", "pool=mesh",
        "--toleration", "dedicated=mesh:NoSchedule", "--toleration", "gpu", "--probe-mode", "off",
        "--interval", "60",
    )  # fmt: skip
    assert result.code == 0, result.err
    docs = list(yaml.safe_load_all(result.out))
    assert docs == render_objects(
        ManifestOptions(
            namespace="mesh", image="r.example/mr:1", profile="linkerd", persist=False,
            taint_key="example.com/gate", taint_effect="NoExecute", probe_mode=PodProbeMode.OFF,
            node_selector={"pool": "mesh"},
            tolerations=({"key": "dedicated", "operator": "Equal", "value": "mesh",
                          "effect": "NoSchedule"}, {"key": "gpu", "operator": "Exists"}),
            interval_seconds=60,
        )
    )  # fmt: skip
    no_taint = run_cli("render", "manifests", "--no-taint")
    assert "--no-taint" in no_taint.out


def test_bad_options_exit_2_with_one_line(run_cli: Callable[..., Any]) -> None:
    for args in (
        ("-n", "Bad_Name"),
        ("--toleration", "k:Sometimes"),
        ("--node-selector", "novalue"),
        ("--profile", "istio-sidecar", "--backend", "nftables"),
        ("--probe-mode", "netns"),
    ):
        result = run_cli("render", "manifests", *args)
        assert result.code == 2, (args, result.err)
        assert "rror" in result.err and "Traceback" not in result.err


def test_output_dir_writes_the_kustomize_base(run_cli: Callable[..., Any], tmp_path: Path) -> None:
    result = run_cli("render", "manifests", "--output-dir", str(tmp_path / "base"))
    assert result.code == 0, result.err
    files = {p.name: p.read_text() for p in (tmp_path / "base").iterdir() if p.is_file()}
    assert files == kustomize_files()
    policy = {p.name: p.read_text() for p in (tmp_path / "base/admission-policy").iterdir()}
    assert policy == policy_kustomize_files()
