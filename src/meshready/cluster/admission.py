"""One agent, one Node: a ValidatingAdmissionPolicy (Kubernetes 1.30+) for the agent's account.

RBAC can say "patch nodes" but not "patch *your* node": root on one node, with the agent's token,
could otherwise taint, relabel or readdress every node. From Kubernetes 1.30 a ServiceAccount
token bound to a pod carries the name of the pod's node (``authentication.kubernetes.io/node-name``
in ``request.userInfo.extra``; KEP-4193, beta and on by default in 1.30), and
ValidatingAdmissionPolicy is GA (admissionregistration.k8s.io/v1). This policy lets the agent's
ServiceAccount:

- update only the Node its token names, and only meshready's own fields there: ``meshready.io/``
  labels and annotations, removing (never adding) the startup taint, and the
  ``MeshInterceptionReady`` condition; every other label, annotation, taint, condition, spec field
  and status address must stay as it was;
- create Events only about that Node (RBAC, a Role in ``default``, limits where: the API
  server takes Events about a Node only in ``default``).

Expressions avoid CEL optionals and map/list literals in conditionals so that they type-check on
every 1.30+ server; they are tested with a CEL runtime against admission requests
(tests/cluster/test_admission.py) and the objects against the 1.30+ schemas.

On clusters older than 1.30 (no node-name claim, or no v1 policy API) this cannot be enforced: a
token taken from one node can still write every Node's labels, taints and status (docs/agent.md).
"""

from __future__ import annotations

from typing import Any

from meshready.cluster.names import AGENT_NAME, CONDITION_TYPE, PREFIX

POLICY_NAME = AGENT_NAME
NODE_NAME_CLAIM = "authentication.kubernetes.io/node-name"
MIN_VERSION = (1, 30)

# Spec and status fields the agent never changes: each must stay exactly as it was.
_SPEC_FIELDS = ("podCIDR", "podCIDRs", "providerID", "unschedulable", "configSource", "externalID")
_STATUS_FIELDS = ("addresses", "daemonEndpoints", "nodeInfo", "capacity", "allocatable", "phase")
_META_FIELDS = ("finalizers", "ownerReferences")


def _quote(text: str) -> str:
    """A CEL string literal (single quotes; the values here are label keys and names)."""
    if any(c in text for c in "'\\\n\r"):
        raise ValueError(f"cannot quote {text!r} for CEL")
    return f"'{text}'"


def _unchanged(path: str, field_name: str) -> str:
    new, old = f"object.{path}", f"oldObject.{path}"
    return (
        f"(has({new}.{field_name}) == has({old}.{field_name}) && "
        f"(!has({new}.{field_name}) || {new}.{field_name} == {old}.{field_name}))"
    )


def _only_prefixed_keys_change(kind: str) -> str:
    """Every key outside meshready.io/ keeps its value; none appears or disappears."""
    new, old = f"object.metadata.{kind}", f"oldObject.metadata.{kind}"
    prefix = _quote(PREFIX)
    kept = (
        f"(!has({new}) || {new}.all(k, k.startsWith({prefix}) || "
        f"(has({old}) && k in {old} && {old}[k] == {new}[k])))"
    )
    not_removed = (
        f"(!has({old}) || {old}.all(k, k.startsWith({prefix}) || (has({new}) && k in {new})))"
    )
    return f"{kept} && {not_removed}"


def _taints_rule(taint_key: str | None) -> str:
    new, old = "object.spec.taints", "oldObject.spec.taints"
    same = f"((!has({new}) && !has({old})) || (has({new}) && has({old}) && {new} == {old}))"
    if taint_key is None:
        return same
    key = _quote(taint_key)
    removed_all = f"(has({old}) && !has({new}) && {old}.all(t, t.key == {key}))"
    removed_ours = f"(has({old}) && has({new}) && {new} == {old}.filter(t, t.key != {key}))"
    return f"{same} || {removed_all} || {removed_ours}"


def _conditions_rule() -> str:
    new, old = "object.status.conditions", "oldObject.status.conditions"
    ours = _quote(CONDITION_TYPE)
    others_new = f"{new}.filter(c, c.type != {ours})"
    others_old = f"{old}.filter(c, c.type != {ours})"
    return (
        f"(!has({new}) && !has({old})) || "
        f"(has({new}) && !has({old}) && {new}.all(c, c.type == {ours})) || "
        f"(!has({new}) && has({old}) && {old}.all(c, c.type == {ours})) || "
        f"(has({new}) && has({old}) && {others_new} == {others_old})"
    )


def validations(taint_key: str | None) -> list[dict[str, Any]]:
    node = "request.resource.resource == 'nodes'"
    events = "request.resource.resource == 'events'"
    main = f"{node} && request.subResource == ''"
    status = f"{node} && request.subResource == 'status'"
    spec_same = " && ".join(_unchanged("spec", f) for f in _SPEC_FIELDS)
    meta_same = " && ".join(_unchanged("metadata", f) for f in _META_FIELDS)
    status_same = " && ".join(_unchanged("status", f) for f in _STATUS_FIELDS)
    return [
        {
            "expression": "variables.nodeName != ''",
            "message": "the agent's token names no node (needs a pod-bound ServiceAccount token "
            "with the node-name claim: Kubernetes 1.30+)",
            "reason": "Forbidden",
        },
        {
            "expression": f"!({node}) || object.metadata.name == variables.nodeName",
            "message": "the agent may change only the Node it runs on",
            "reason": "Forbidden",
        },
        {
            "expression": f"!({node}) || ({_only_prefixed_keys_change('labels')})",
            "message": f"the agent may change only {PREFIX} labels",
            "reason": "Forbidden",
        },
        {
            "expression": f"!({node}) || ({_only_prefixed_keys_change('annotations')})",
            "message": f"the agent may change only {PREFIX} annotations",
            "reason": "Forbidden",
        },
        {
            "expression": f"!({main}) || ({_taints_rule(taint_key)})",
            "message": "the agent may only remove its startup taint",
            "reason": "Forbidden",
        },
        {
            "expression": f"!({main}) || ({spec_same} && {meta_same})",
            "message": "the agent may not change the Node's spec other than its startup taint",
            "reason": "Forbidden",
        },
        {
            "expression": f"!({status}) || ({_conditions_rule()})",
            "message": f"the agent may change only the {CONDITION_TYPE} condition",
            "reason": "Forbidden",
        },
        {
            "expression": f"!({status}) || ({status_same})",
            "message": "the agent may not change the Node's addresses, endpoints or capacity",
            "reason": "Forbidden",
        },
        {
            # The namespace is RBAC's (a Role in the agent's namespace): `namespace` is a
            # reserved word in CEL, best not relied on as a field name.
            "expression": (
                f"!({events}) || (object.involvedObject.kind == 'Node' && "
                "object.involvedObject.name == variables.nodeName)"
            ),
            "message": "the agent may record Events only about its own Node",
            "reason": "Forbidden",
        },
    ]


def agent_username(namespace: str) -> str:
    return f"system:serviceaccount:{namespace}:{AGENT_NAME}"


def policy_objects(namespace: str, taint_key: str | None, labels: dict[str, str]) -> list[Any]:
    """The ValidatingAdmissionPolicy and its binding (cluster-scoped, in apply order)."""
    claim = _quote(NODE_NAME_CLAIM)
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": POLICY_NAME, "labels": dict(labels)},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["UPDATE"],
                        "resources": ["nodes", "nodes/status"],
                    },
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": ["events"],
                    },
                ]
            },
            "matchConditions": [
                {
                    "name": AGENT_NAME,
                    "expression": f"request.userInfo.username == {_quote(agent_username(namespace))}",
                }
            ],
            "variables": [
                {
                    "name": "nodeName",
                    "expression": (
                        f"has(request.userInfo.extra) && {claim} in request.userInfo.extra && "
                        f"size(request.userInfo.extra[{claim}]) == 1 ? "
                        f"request.userInfo.extra[{claim}][0] : ''"
                    ),
                }
            ],
            "validations": validations(taint_key),
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": POLICY_NAME, "labels": dict(labels)},
        "spec": {"policyName": POLICY_NAME, "validationActions": ["Deny"]},
    }
    return [policy, binding]
