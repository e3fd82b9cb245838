"""JSON contracts: every ``-o json`` carries a ``schema`` version, uses snake_case keys, and
validates against the JSON Schema shipped in the package (src/meshready/schemas). The cluster
commands' outputs are validated the same way in tests/apiserver/test_kubectl_forms.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from meshready import schemas
from tests.conftest import CASE, DEBIAN_61_AMD64, REPO

SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


def validate(data: Any) -> str:
    """Validate DATA against the schema it names; return that schema's name."""
    assert isinstance(data, dict) and "schema" in data, data
    name = data["schema"].split("/")[1]
    schema = schemas.load(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(data, schema, cls=jsonschema.Draft202012Validator)
    for nested in ("report",):  # a report inside fix / agent output is a report.json object
        if isinstance(data.get(nested), dict):
            inner = schemas.load("report")
            jsonschema.validate(data[nested], inner, cls=jsonschema.Draft202012Validator)
    return name


def _walk_properties(node: Any) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        found += list((node.get("properties") or {}).keys())
        for value in node.values():
            found += _walk_properties(value)
    elif isinstance(node, list):
        for value in node:
            found += _walk_properties(value)
    return found


def test_every_schema_is_valid_and_snake_case() -> None:
    names = schemas.names()
    assert {"report", "needs", "profiles", "fix", "unfix", "probe", "diagnosis"} <= set(names)
    assert {"diagnose-cluster", "status", "node-check", "agent-check"} <= set(names)
    for name in names:
        schema = schemas.load(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["properties"]["schema"] == {"const": f"meshready.io/{name}/v1"}
        assert schema["additionalProperties"] is False, name  # no undeclared top-level key
        bad = [p for p in _walk_properties(schema) if not SNAKE.match(p)]
        assert not bad, (name, bad)


def test_every_schema_id_the_code_prints_is_shipped() -> None:
    ids = set()
    for path in (REPO / "src/meshready").rglob("*.py"):
        ids |= set(re.findall(r'"meshready\.io/([a-z-]+)/v1"', path.read_text()))
    ids.discard("node-report")  # the Node annotation, a Kubernetes-style contract (docs/agent.md)
    ids.discard("fix-record")  # a file between the agent's init step and the agent, not an output
    assert ids <= set(schemas.names()), ids - set(schemas.names())
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"schemas/*.json"' in pyproject  # shipped as package data


def _json(run_cli: Callable[..., Any], *args: str) -> dict[str, Any]:
    result = run_cli(*args)
    assert result.code in (0, 1), result.err
    data = json.loads(result.out)
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["check", "-o", "json"], "report"),
        (
            ["check", "-o", "json", "--lsmod", str(CASE / "lsmod.txt"), "--kernel-release",
             "5.15.0-100.96.32.el8uek.aarch64"],
            "report",
        ),
        (["needs", "-o", "json", "--modules-dir", str(DEBIAN_61_AMD64)], "needs"),
        (["profiles", "-o", "json"], "profiles"),
        (["fix", "--dry-run", "-o", "json"], "fix"),
        (["diagnose", "-o", "json", str(CASE / "istio-init.log")], "diagnosis"),
        (["diagnose", "-o", "json", str(REPO / "tests/data/logs/clean-istio-1.17-success.log")],
         "diagnosis"),
    ],
)  # fmt: skip
def test_local_outputs_validate(args: list[str], name: str, run_cli: Callable[..., Any]) -> None:
    assert validate(_json(run_cli, *args)) == name


def test_agent_once_output_validates() -> None:
    # a process of its own: the agent wires faulthandler to the real stderr
    argv = [sys.executable, "-m", "meshready.cli.main", "agent", "--no-cluster", "--once",
            "--loader", "none", "--probe-mode", "off", "--metrics-addr", "off", "-o", "json"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode in (0, 1), done.stderr
    data = json.loads(done.stdout)
    assert validate(data) == "agent-check" and data["report"]["schema"] == "meshready.io/report/v1"


def test_check_json_names_the_machine(run_cli: Callable[..., Any]) -> None:
    data = _json(run_cli, "check", "-o", "json")
    assert data["machine"]["how"] == "live" and data["machine"]["kubernetes_node"] in (True, False)
    offline = _json(
        run_cli, "check", "-o", "json", "--lsmod", str(CASE / "lsmod.txt"),
        "--kernel-release", "5.15.0-100.96.32.el8uek.aarch64",
    )  # fmt: skip
    assert offline["machine"]["how"] == "offline" and offline["kernel"]["arch"] == "aarch64"


def test_unfix_output_validates(run_cli: Callable[..., Any], tmp_path: Path) -> None:
    assert validate(_json(run_cli, "unfix", "--host-root", str(tmp_path), "-o", "json")) == "unfix"


@pytest.mark.netns
def test_probe_output_validates(run_cli: Callable[..., Any]) -> None:
    data = _json(run_cli, "probe", "--mode", "inplace", "-o", "json")
    assert validate(data) == "probe"


def test_a_report_read_back_from_a_check_pod_is_the_same_report(
    run_cli: Callable[..., Any],
) -> None:
    """`check node/NAME` renders what the pod printed: reading it back loses nothing."""
    from meshready.assess.report import report_from_dict

    args = (
        "--lsmod",
        str(CASE / "lsmod.txt"),
        "--kernel-release",
        "5.15.0-100.96.32.el8uek.aarch64",
    )
    data = _json(run_cli, "check", "-o", "json", *args)
    data.pop("machine")
    assert json.loads(json.dumps(report_from_dict(data).to_dict())) == data
