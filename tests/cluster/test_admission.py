"""The ValidatingAdmissionPolicy's CEL, run by a CEL runtime (cel-python) against admission
requests as the API server builds them: the agent's own node, another node, foreign keys.

The policy's objects are validated against every 1.30+ schema kubernetes-validate ships (the
test apiserver is 1.20, which has no admissionregistration.k8s.io/v1 policies).
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
import pytest

from meshready.cluster.admission import NODE_NAME_CLAIM, agent_username
from meshready.cluster.manifests import ManifestOptions, admission_objects, render_objects

NS = "meshready"
KEY = "meshready.io/not-ready"
NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": "node-a",
        "labels": {"kubernetes.io/hostname": "node-a", "topology.kubernetes.io/zone": "z1"},
        "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
    },
    "spec": {
        "podCIDR": "10.0.1.0/24",
        "taints": [
            {"key": "example.com/dedicated", "value": "db", "effect": "NoSchedule"},
            {"key": KEY, "value": "true", "effect": "NoSchedule"},
        ],
    },
    "status": {
        "addresses": [{"type": "InternalIP", "address": "10.1.0.5"}],
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady"},
        ],
        "nodeInfo": {"bootID": "b1"},
    },
}


def _policy() -> dict[str, Any]:
    return admission_objects(ManifestOptions(namespace=NS).validated())[0]


class Policy:
    """The policy evaluated as the API server does: matchConditions, variables, validations."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.env = celpy.Environment()
        self.match = [self._compile(m["expression"]) for m in spec["matchConditions"]]
        self.variables = [(v["name"], self._compile(v["expression"])) for v in spec["variables"]]
        self.validations = [
            (self._compile(v["expression"]), v["message"]) for v in spec["validations"]
        ]

    def _compile(self, expr: str) -> Any:
        return self.env.program(self.env.compile(expr))

    def admit(self, request: dict[str, Any], obj: Any, old: Any) -> list[str]:
        """The messages of failed validations ([] = allowed); not matched: allowed."""
        activation: dict[str, Any] = {
            "request": celpy.json_to_cel(request),
            "object": celpy.json_to_cel(obj),
            "oldObject": celpy.json_to_cel(old),
        }
        if not all(bool(p.evaluate(activation)) for p in self.match):
            return []
        variables: dict[str, Any] = {}
        for name, program in self.variables:
            activation["variables"] = celpy.json_to_cel(variables)
            variables[name] = program.evaluate(activation)
        activation["variables"] = celpy.celtypes.MapType(
            {celpy.celtypes.StringType(k): v for k, v in variables.items()}
        )
        failed = []
        for program, message in self.validations:
            result = program.evaluate(activation)
            if isinstance(result, celpy.CELEvalError):  # a broken expression is a test failure
                raise AssertionError(f"CEL error in {message!r}: {result}")
            if not bool(result):
                failed.append(message)
        return failed


def request(
    resource: str,
    *,
    sub: str = "",
    node: str | None = "node-a",
    user: str | None = None,
    operation: str = "UPDATE",
    namespace: str = "",
) -> dict[str, Any]:
    info: dict[str, Any] = {"username": user or agent_username(NS), "groups": []}
    if node is not None:
        info["extra"] = {NODE_NAME_CLAIM: [node], "authentication.kubernetes.io/pod-name": ["p"]}
    return {
        "operation": operation,
        "resource": {"group": "", "version": "v1", "resource": resource},
        "subResource": sub,
        "namespace": namespace,
        "userInfo": info,
    }


@pytest.fixture(scope="module")
def policy() -> Policy:
    return Policy(_policy()["spec"])


def changed(**edits: Any) -> dict[str, Any]:
    node = copy.deepcopy(NODE)
    for path, value in edits.items():
        target = node
        parts = path.split("__")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        if value is None:
            target.pop(parts[-1], None)
        else:
            target[parts[-1]] = value
    return node


def test_the_agent_may_publish_on_its_own_node(policy: Policy) -> None:
    labels = {**NODE["metadata"]["labels"], "meshready.io/ready": "true"}  # type: ignore[index]
    notes = {**NODE["metadata"]["annotations"], "meshready.io/report": "{}"}  # type: ignore[index]
    new = changed(metadata__labels=labels, metadata__annotations=notes)
    assert policy.admit(request("nodes"), new, NODE) == []
    # the startup taint removed, the other kept
    others = [NODE["spec"]["taints"][0]]  # type: ignore[index]
    assert policy.admit(request("nodes"), changed(spec__taints=others), NODE) == []
    # the last taint removed: spec.taints disappears
    only_ours = changed(spec__taints=[NODE["spec"]["taints"][1]])  # type: ignore[index]
    assert policy.admit(request("nodes"), changed(spec__taints=None), only_ours) == []
    # its condition added, then changed; the Ready condition untouched
    ours = {"type": "MeshInterceptionReady", "status": "True", "reason": "ModulesReady"}
    with_ours = changed(status__conditions=[*NODE["status"]["conditions"], ours])  # type: ignore[index]
    assert policy.admit(request("nodes", sub="status"), with_ours, NODE) == []
    flipped = copy.deepcopy(with_ours)
    flipped["status"]["conditions"][1]["status"] = "False"
    assert policy.admit(request("nodes", sub="status"), flipped, with_ours) == []
    # an Event about its node in its namespace
    event = {"involvedObject": {"kind": "Node", "name": "node-a"}, "reason": "X"}
    req = request("events", operation="CREATE", namespace=NS)
    assert policy.admit(req, event, None) == []


def test_another_node_is_refused(policy: Policy) -> None:
    labels = {**NODE["metadata"]["labels"], "meshready.io/ready": "true"}  # type: ignore[index]
    new = changed(metadata__labels=labels)
    assert "the agent may change only the Node it runs on" in policy.admit(
        request("nodes", node="node-b"), new, NODE
    )
    event = {"involvedObject": {"kind": "Node", "name": "node-b"}}
    failed = policy.admit(request("events", operation="CREATE", namespace=NS), event, None)
    assert failed == ["the agent may record Events only about its own Node"]
    event = {"involvedObject": {"kind": "Pod", "name": "node-a"}}
    assert policy.admit(request("events", operation="CREATE", namespace=NS), event, None)
    # a token without the node-name claim (before 1.30, or not pod-bound) can do nothing
    assert policy.admit(request("nodes", node=None), new, NODE)


@pytest.mark.parametrize(
    ("what", "edits", "sub"),
    [
        ("foreign label", {"metadata__labels": {"kubernetes.io/hostname": "evil"}}, ""),
        ("foreign label added", {"metadata__labels": {**NODE["metadata"]["labels"], "x": "1"}}, ""),  # type: ignore[index]
        ("foreign label removed", {"metadata__labels": {"kubernetes.io/hostname": "node-a"}}, ""),
        (
            "foreign annotation",
            {"metadata__annotations": {"node.alpha.kubernetes.io/ttl": "9"}},
            "",
        ),
        (
            "taint added",
            {"spec__taints": [*NODE["spec"]["taints"], {"key": "x", "effect": "NoExecute"}]},
            "",
        ),  # type: ignore[index]
        ("foreign taint removed", {"spec__taints": [NODE["spec"]["taints"][1]]}, ""),  # type: ignore[index]
        ("unschedulable", {"spec__unschedulable": True}, ""),
        ("pod CIDR", {"spec__podCIDR": "10.9.9.0/24"}, ""),
        (
            "Ready condition",
            {"status__conditions": [{"type": "Ready", "status": "False", "reason": "X"}]},
            "status",
        ),
        (
            "addresses",
            {"status__addresses": [{"type": "InternalIP", "address": "6.6.6.6"}]},
            "status",
        ),
    ],
)
def test_foreign_keys_are_refused(
    policy: Policy, what: str, edits: dict[str, Any], sub: str
) -> None:
    failed = policy.admit(request("nodes", sub=sub), changed(**edits), NODE)
    assert failed, what
    assert all(m.startswith("the agent may") for m in failed), failed


def test_other_users_are_not_matched(policy: Policy) -> None:
    new = changed(spec__unschedulable=True)
    assert policy.admit(request("nodes", user="system:node:node-b", node=None), new, NODE) == []


def test_policy_objects_validate_against_1_30_and_newer_schemas() -> None:
    import kubernetes_validate
    from kubernetes_validate.utils import all_versions, major_minor

    versions = sorted(
        {
            major_minor(v)
            for v in all_versions()
            if tuple(map(int, major_minor(v).split("."))) >= (1, 30)
        }
    )
    assert versions, "kubernetes-validate ships no 1.30+ schemas"
    objects = render_objects(ManifestOptions(admission_policy=True))
    kinds = {o["kind"] for o in objects}
    assert {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"} <= kinds
    for version in versions:
        for obj in objects:
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_policy_names_the_configured_taint_and_namespace() -> None:
    objects = admission_objects(
        ManifestOptions(namespace="ops", taint_key="example.com/boot").validated()
    )
    text = repr(objects)
    assert "'example.com/boot'" in text and "system:serviceaccount:ops:meshready-agent" in text
