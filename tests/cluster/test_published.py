"""What the agent publishes, and reading it back from Node objects (the fleet view's input)."""

from __future__ import annotations

import json
from pathlib import Path

from lightkube.resources.core_v1 import Node

from meshready.actions.fix import assess_live
from meshready.assess.plan import needs_from_options
from meshready.cluster.names import ANNOTATION_REPORT, CONDITION_TYPE, LABEL_BACKEND, LABEL_READY
from meshready.cluster.node import condition_removal_patch, taint_removal_patch
from meshready.cluster.published import (
    REPORT_SCHEMA,
    ProbeSummary,
    Publication,
    Reason,
    compact_report,
    cut_message,
    decode_report,
    encode_report,
    read_node_state,
)
from tests.agent.fakes import make_node, needed_modules


def _report(tmp_path: Path, loaded: bool) -> object:
    node = make_node(tmp_path)
    if loaded:
        node.load(*needed_modules(node))
    report, _ = assess_live(needs_from_options("istio-sidecar", (), None), node.root)
    return report


def test_compact_report_is_small_stable_and_has_no_timestamps(tmp_path: Path) -> None:
    report = _report(tmp_path, loaded=False)
    data = compact_report(
        report,  # type: ignore[arg-type]
        ready=False,
        reason=Reason.LOAD_FAILED.value,
        load_failed={"fix": "cannot load xt_owner: permission denied"},
        persisted=None,
        probe=ProbeSummary("inplace", False, redirected=False, seconds=0.1234, error="refused"),
        boot_id="b-1",
    )
    assert data["schema"] == REPORT_SCHEMA
    assert data["kernel"] == "6.1.0-56-cloud-amd64" and data["profile"] == "istio-sidecar"
    assert data["modules"]["loadable"][:2] == ["x_tables", "ip_tables"]
    assert set(data["modules"]) == {"loadable"}  # only states that occur
    # no duration in the probe: it changes on every check
    assert data["probe"] == {"mode": "inplace", "ok": False, "redirected": False,
                             "error": "refused"}  # fmt: skip
    text = encode_report(data)
    assert len(text) < 1500
    assert text.startswith('{"schema":"meshready.io/node-report/v1","ready":false,')  # compact
    assert decode_report(text) == data
    again = compact_report(report, ready=False, reason="LoadFailed",  # type: ignore[arg-type]
                           load_failed={"fix": "cannot load xt_owner: permission denied"},
                           probe=ProbeSummary("inplace", False, redirected=False, seconds=0.1234,
                                              error="refused"), boot_id="b-1")  # fmt: skip
    assert encode_report(again) == text  # byte-identical: no write for an unchanged node


def test_publication_labels_and_condition_words() -> None:
    for ready, status, word in (
        (True, "True", "true"),
        (False, "False", "false"),
        (None, "Unknown", "unknown"),
    ):
        pub = Publication(ready, "X", "m", "nft", {"schema": REPORT_SCHEMA})
        assert pub.condition_status == status
        assert pub.labels() == {LABEL_READY: word, LABEL_BACKEND: "nft"}
    assert Publication(None, "X", "m", None, {}).labels() == {LABEL_READY: "unknown"}
    assert cut_message("a\n  b   c") == "a b c"
    long = cut_message("x" * 5000)
    assert len(long) == 1024 and long.endswith("...")


def test_decode_report_refuses_what_is_not_a_report() -> None:
    assert decode_report(None) is None
    assert decode_report("") is None
    assert decode_report("{not json") is None
    assert decode_report("[1, 2]") is None
    assert decode_report('{"schema": "something/else"}') is None
    assert decode_report('{"schema": "meshready.io/node-report/v2", "x": 1}') == {
        "schema": "meshready.io/node-report/v2", "x": 1,
    }  # fmt: skip


def _node(**parts: object) -> Node:
    return Node.from_dict({"apiVersion": "v1", "kind": "Node", **parts})


def test_read_node_state_of_a_published_node() -> None:
    report = {"schema": REPORT_SCHEMA, "ready": False, "bootID": "old",
              "modules": {"loaded": ["x_tables"], "absent": ["xt_owner"]}}  # fmt: skip
    node = _node(
        metadata={
            "name": "n1",
            "labels": {LABEL_READY: "false", LABEL_BACKEND: "legacy", "team": "a"},
            "annotations": {ANNOTATION_REPORT: json.dumps(report), "other": "x"},
        },
        spec={"taints": [
            {"key": "meshready.io/not-ready", "effect": "NoSchedule"},
            {"key": "example.com/custom-gate", "effect": "NoSchedule"},
            {"key": "dedicated", "value": "db", "effect": "NoExecute"},
        ]},
        status={
            "conditions": [
                {"type": "Ready", "status": "True"},
                {"type": CONDITION_TYPE, "status": "False", "reason": "ModulesMissing",
                 "message": "not ready", "lastHeartbeatTime": "2026-01-02T03:04:05Z",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"},
            ],
            "nodeInfo": {"bootID": "new", "kernelVersion": "6.1.0", "machineID": "",
                         "systemUUID": "", "osImage": "", "containerRuntimeVersion": "",
                         "kubeletVersion": "", "kubeProxyVersion": "", "operatingSystem": "",
                         "architecture": ""},
        },
    )  # fmt: skip
    state = read_node_state(node, taint_keys=("example.com/custom-gate",))
    assert state.name == "n1" and state.published and state.ready is False
    assert state.condition is not None and state.condition.reason == "ModulesMissing"
    assert state.condition.last_heartbeat is not None
    assert state.labels == {LABEL_READY: "false", LABEL_BACKEND: "legacy"}
    assert set(state.annotations) == {ANNOTATION_REPORT}
    assert state.modules("absent") == ["xt_owner"] and state.modules("unknown") == []
    assert [t.key for t in state.taints] == ["meshready.io/not-ready", "example.com/custom-gate"]
    assert state.has_taint("meshready.io/not-ready")
    assert state.boot_id == "new" and state.kernel == "6.1.0"
    assert state.stale  # published before the last boot


def test_read_node_state_of_an_untouched_node() -> None:
    state = read_node_state(_node(metadata={"name": "bare"}))
    assert not state.published and state.ready is None and state.report is None
    assert state.taints == () and not state.stale


def test_guarded_patches() -> None:
    node = _node(
        metadata={"name": "n"},
        spec={"taints": [
            {"key": "a", "effect": "NoSchedule", "timeAdded": "2026-01-01T00:00:00Z"},
            {"key": "meshready.io/not-ready", "effect": "NoSchedule"},
            {"key": "meshready.io/not-ready", "effect": "NoExecute"},
        ]},
    )  # fmt: skip
    patch = taint_removal_patch(node, "meshready.io/not-ready", "NoSchedule")
    assert patch is not None
    test, replace = patch
    assert test["op"] == "test" and test["path"] == "/spec/taints" and len(test["value"]) == 3
    assert test["value"][0]["timeAdded"] == "2026-01-01T00:00:00Z"  # exactly as the server has it
    assert replace == {"op": "replace", "path": "/spec/taints", "value": [
        {"key": "a", "effect": "NoSchedule", "timeAdded": "2026-01-01T00:00:00Z"},
        {"key": "meshready.io/not-ready", "effect": "NoExecute"},
    ]}  # fmt: skip
    any_effect = taint_removal_patch(node, "meshready.io/not-ready")
    assert any_effect is not None and [t["key"] for t in any_effect[1]["value"]] == ["a"]
    assert taint_removal_patch(node, "absent") is None
    assert condition_removal_patch() == {
        "status": {"conditions": [{"type": CONDITION_TYPE, "$patch": "delete"}]}
    }
