"""The manifests: one source of truth, least privilege, valid for Kubernetes 1.25 to the newest schema."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions, major_minor

from meshready.cluster.manifests import (
    GENERATED_HEADER,
    ImagePullPolicy,
    ManifestOptions,
    PodProbeMode,
    kustomize_files,
    parse_toleration,
    render_objects,
    to_yaml,
    write_kustomize,
)
from meshready.errors import InputError
from meshready.knowledge.requests import Backend

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def _versions() -> list[str]:
    found = sorted(
        {major_minor(v) for v in all_versions()}, key=lambda v: tuple(map(int, v.split(".")))
    )
    return found


VERSIONS = _versions()


def _kinds(objects: list[dict[str, Any]]) -> list[str]:
    return [o["kind"] for o in objects]


def _ds(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "DaemonSet")


def test_schema_versions_cover_125_to_newest() -> None:
    assert VERSIONS[0] == "1.25", VERSIONS
    latest = major_minor(kubernetes_validate.latest_version())
    assert VERSIONS[-1] == latest
    assert len(VERSIONS) >= 13  # 1.25 .. 1.37 at the time of writing


VARIANTS = {
    "defaults": ManifestOptions(),
    "custom": ManifestOptions(
        namespace="mesh-system",
        image="registry.example.com/meshready:1.2.3",
        image_pull_policy=ImagePullPolicy.ALWAYS,
        profile="istio-ambient",
        backend=Backend.NFT,
        persist=False,
        taint_key="example.com/mesh-not-ready",
        taint_effect="NoExecute",
        probe_mode=PodProbeMode.OFF,
        node_selector={"node-pool": "mesh", "kubernetes.io/arch": "arm64"},
        tolerations=(parse_toleration("dedicated=mesh:NoSchedule"), parse_toleration("gpu")),
        interval_seconds=60,
    ),
    "kube-system": ManifestOptions(namespace="kube-system"),
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_object_validates_strictly(version: str, variant: str) -> None:
    for obj in render_objects(VARIANTS[variant]):
        # strict: unknown fields are errors too
        kubernetes_validate.validate(obj, version, strict=True)


def test_the_validator_would_catch_a_mistake() -> None:
    ds = copy.deepcopy(_ds(render_objects()))
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilitiess"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, VERSIONS[-1], strict=True)
    ds = copy.deepcopy(_ds(render_objects()))
    ds["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "9808"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ds, VERSIONS[0], strict=True)


def test_objects_and_order() -> None:
    assert _kinds(render_objects()) == [
        "Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
        "RoleBinding", "DaemonSet",
    ]  # fmt: skip
    assert _kinds(render_objects(ManifestOptions(admission_policy=True)))[-2:] == [
        "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
    ]  # fmt: skip
    # A system namespace is used, never rendered (so never created or deleted).
    assert _kinds(render_objects(ManifestOptions(namespace="kube-system")))[0] == "ServiceAccount"


def test_cluster_role_is_exactly_what_the_agent_needs() -> None:
    role = next(o for o in render_objects() if o["kind"] == "ClusterRole")
    grants = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert grants == {
        ("", "nodes", "get"), ("", "nodes", "list"), ("", "nodes", "watch"),
        ("", "nodes", "patch"), ("", "nodes/status", "patch"),
    }  # fmt: skip
    # Events only in the agent's own namespace: a Role, not the ClusterRole.
    ns_role = next(o for o in render_objects() if o["kind"] == "Role")
    assert ns_role["metadata"]["namespace"] == "default"  # node events are accepted only there
    assert ns_role["rules"] == [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    ns_binding = next(o for o in render_objects() if o["kind"] == "RoleBinding")
    assert ns_binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "meshready-agent",
    }  # fmt: skip
    assert all(
        "resourceNames" not in rule and "nonResourceURLs" not in rule for rule in role["rules"]
    )
    binding = next(o for o in render_objects() if o["kind"] == "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "meshready-agent", "namespace": "meshready"}
    ]


def test_daemonset_least_privilege() -> None:
    ds = _ds(render_objects())
    pod = ds["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (init,) = pod["initContainers"]
    for c in (container, init):
        sc = c["securityContext"]
        assert sc["privileged"] is False
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # SYS_MODULE only in the init container, which runs and exits; the agent never loads.
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["SYS_MODULE"]}
    assert container["securityContext"]["capabilities"] == {
        "drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"],
    }  # fmt: skip
    assert "--loader=none" in container["args"] and "--init" in init["args"]
    assert "--loader=python" in init["args"] and "--persist" in init["args"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(forbidden)
    text = to_yaml(render_objects())
    assert "privileged: true" not in text and "SYS_ADMIN" not in text
    # Host paths: /lib/modules read-only; modules-load.d writable only for persistence.
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    host = {n: v["hostPath"]["path"] for n, v in volumes.items() if "hostPath" in v}
    assert host == {"host-modules": "/lib/modules", "host-modules-load": "/etc/modules-load.d"}
    assert mounts["host-modules"]["readOnly"] is True
    assert mounts["host-modules"]["mountPath"] == "/host/lib/modules"
    assert mounts["host-modules-load"]["mountPath"] == "/host/etc/modules-load.d"
    assert mounts["host-modules-load"]["readOnly"] is True  # the agent reads it
    init_mounts = {m["name"]: m for m in init["volumeMounts"]}
    assert "readOnly" not in init_mounts["host-modules-load"]  # the init container writes it
    assert init_mounts["host-modules"]["readOnly"] is True
    # Without persistence and without the probe, even less.
    lean = _ds(render_objects(ManifestOptions(persist=False, probe_mode=PodProbeMode.OFF)))
    lean_pod = lean["spec"]["template"]["spec"]
    assert [v["hostPath"]["path"] for v in lean_pod["volumes"] if "hostPath" in v] == [
        "/lib/modules"
    ]
    assert "add" not in lean_pod["containers"][0]["securityContext"]["capabilities"]
    assert "--no-persist" in lean_pod["initContainers"][0]["args"]


def test_daemonset_scheduling_and_rollout() -> None:
    ds = _ds(render_objects())
    spec = ds["spec"]
    pod = spec["template"]["spec"]
    assert pod["priorityClassName"] == "system-node-critical"
    assert pod["tolerations"] == [{"operator": "Exists"}]  # every taint, the startup one included
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert spec["updateStrategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"},
    }  # fmt: skip
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = pod["containers"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert container["args"] == [
        "--host-root=/host", "--loader=none", "--fix-record=/run/meshready/fix.json",
        "--probe-mode=inplace", "--taint-key=meshready.io/not-ready:NoSchedule",
        "--interval=300", "--metrics-addr=0.0.0.0:9808",
    ]  # fmt: skip
    (init,) = pod["initContainers"]
    assert init["command"] == ["meshready"]
    assert init["args"] == [
        "agent", "--init", "--no-cluster", "--host-root=/host", "--loader=python", "--persist",
        "--probe-mode=off", "--metrics-addr=off", "--fix-record=/run/meshready/fix.json",
    ]  # fmt: skip


def test_options_reach_the_objects() -> None:
    objects = render_objects(VARIANTS["custom"])
    assert all(
        o["metadata"].get("namespace") in (None, "mesh-system")
        or (o["kind"] in ("Role", "RoleBinding") and o["metadata"]["namespace"] == "default")
        for o in objects
    )
    ds = _ds(objects)
    pod = ds["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example.com/meshready:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    assert "--profile=istio-ambient" in container["args"]
    assert "--backend=nft" in container["args"]
    assert "--taint-key=example.com/mesh-not-ready:NoExecute" in container["args"]
    assert "--interval=60" in container["args"]
    assert pod["nodeSelector"] == {
        "kubernetes.io/os": "linux", "node-pool": "mesh", "kubernetes.io/arch": "arm64",
    }  # fmt: skip
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "mesh", "effect": "NoSchedule"},
        {"key": "gpu", "operator": "Exists"},
    ]
    ns = objects[0]
    assert ns["kind"] == "Namespace" and ns["metadata"]["name"] == "mesh-system"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    no_taint = _ds(render_objects(ManifestOptions(taint_key=None)))
    assert "--no-taint" in no_taint["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.mark.parametrize(
    ("options", "option"),
    [
        (ManifestOptions(namespace="Bad_NS"), "--namespace"),
        (ManifestOptions(image="a b"), "--image"),
        (ManifestOptions(profile="nope"), "--profile"),
        (ManifestOptions(profile="istio-sidecar", backend=Backend.NFTABLES), "--backend"),
        (ManifestOptions(taint_key="bad key"), "--taint-key"),
        (ManifestOptions(taint_effect="Sometimes"), "--taint-key"),
        (ManifestOptions(probe_mode="netns"), "--probe-mode"),
        (ManifestOptions(node_selector={"a": "b c"}), "--node-selector"),
        (ManifestOptions(namespace="ns\n"), "--namespace"),  # `$` would accept the newline
        (ManifestOptions(taint_key="meshready.io/x\n"), "--taint-key"),
        (ManifestOptions(node_selector={"a": "b\n"}), "--node-selector"),
    ],
)
def test_bad_options_are_input_errors(options: ManifestOptions, option: str) -> None:
    with pytest.raises(InputError) as err:
        render_objects(options)
    assert err.value.source == option


def test_toleration_syntax() -> None:
    assert parse_toleration("*") == {"operator": "Exists"}
    assert parse_toleration("k") == {"key": "k", "operator": "Exists"}
    assert parse_toleration("k:NoExecute") == {
        "key": "k",
        "operator": "Exists",
        "effect": "NoExecute",
    }
    assert parse_toleration("k=v") == {"key": "k", "operator": "Equal", "value": "v"}
    for bad in ("", "k:Never", "=v"):
        with pytest.raises(InputError):
            parse_toleration(bad)


def test_yaml_is_multi_document_and_round_trips() -> None:
    text = to_yaml(render_objects())
    assert text.startswith("---\n") and text.count("\n---\n") == 6
    assert list(yaml.safe_load_all(text)) == render_objects()


# ---- deploy/ is what the renderer prints


def _kustomize_build(directory: Path) -> list[dict[str, Any]]:
    """What `kustomize build` gives for a base of plain resources (no transformers here)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert set(kustomization) == {"apiVersion", "kind", "resources"}, "transformers would change it"
    out: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        out.extend(yaml.safe_load_all((directory / name).read_text()))
    return out


def test_deploy_directory_is_generated_and_current() -> None:
    expected = kustomize_files()
    present = {p.name for p in DEPLOY.glob("*.yaml")}
    assert present == set(expected), (
        "deploy/ is stale: run `meshready render manifests --output-dir deploy`"
    )
    for name, text in expected.items():
        assert (DEPLOY / name).read_text() == text, (
            f"deploy/{name} differs from the renderer: run "
            "`meshready render manifests --output-dir deploy`"
        )
    assert _kustomize_build(DEPLOY) == render_objects()


def test_write_kustomize_replaces_stale_generated_files(tmp_path: Path) -> None:
    (tmp_path / "old.yaml").write_text(GENERATED_HEADER + "kind: Old\n")
    (tmp_path / "mine.yaml").write_text("kind: Mine\n")
    write_kustomize(tmp_path, ManifestOptions(namespace="kube-system"))
    names = {p.name for p in tmp_path.glob("*.yaml")}
    assert "old.yaml" not in names and "mine.yaml" in names and "namespace.yaml" not in names
    assert _kustomize_build(tmp_path) == render_objects(ManifestOptions(namespace="kube-system"))


def test_generated_header_points_at_the_source() -> None:
    assert re.search(r"src/meshready/cluster/manifests\.py", GENERATED_HEADER)


def test_agent_args_are_values_the_agent_accepts() -> None:
    """The DaemonSet's --loader and --probe-mode values are the agent's own (agent/work.py)."""
    from meshready.agent.work import AgentLoader, AgentProbeMode
    from meshready.cluster.manifests import agent_args, init_args

    assert [m.value for m in PodProbeMode] == ["inplace", "off"]  # never netns
    for mode in PodProbeMode:
        options = ManifestOptions(probe_mode=mode)
        args = [*init_args(options), *agent_args(options)]
        loaders = [a.removeprefix("--loader=") for a in args if a.startswith("--loader=")]
        modes = [a.removeprefix("--probe-mode=") for a in args if a.startswith("--probe-mode=")]
        assert [AgentLoader(v) for v in loaders] == [AgentLoader.PYTHON, AgentLoader.NONE]
        assert [AgentProbeMode(v) for v in modes] == [AgentProbeMode.OFF, AgentProbeMode(mode)]
